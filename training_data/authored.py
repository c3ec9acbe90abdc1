"""Parser for the hand-authored content files in ``content/*.txt``.

Format (one item per line, kept terse so that thousands of items stay readable):

- ``@ <domain> <task_type> <language>`` starts a block; it applies to the items below it.
- ``S: text`` / ``U: text`` / ``A: text`` add a system / user / assistant turn to the context of
  the next item (for multi-turn rows). A blank line clears the context.
- ``<d><s> text`` is an item: ``d`` is the difficulty label and ``s`` the stakes label (0 or 1),
  ``text`` the user's ask. A literal ``\\n`` in any text stands for a line break.
- Lines starting with ``#`` are comments.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

CONTENT_DIR = Path(__file__).resolve().parent / "content"


@dataclass(frozen=True)
class Row:
    """One labelled query before variation, deduplication and id assignment."""

    messages: tuple[tuple[str, str], ...]
    domain: str
    task_type: str
    language: str
    difficulty: int
    stakes: int
    source: str

    @property
    def last_user_text(self) -> str:
        return self.messages[-1][1]

    def with_last_user_text(self, text: str) -> Row:
        """A copy whose final user turn is replaced (used by the variation step)."""
        turns = (*self.messages[:-1], ("user", text))
        return Row(turns, self.domain, self.task_type, self.language, self.difficulty, self.stakes, self.source)


_ROLE_PREFIXES = {"S:": "system", "U:": "user", "A:": "assistant"}


def _unescape(text: str) -> str:
    return text.replace("\\n", "\n").strip()


def parse_content(text: str, source: str) -> list[Row]:
    """Parse one content file's text into rows; raises ValueError on a malformed line."""
    rows: list[Row] = []
    header: tuple[str, str, str] | None = None
    context: list[tuple[str, str]] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            context = []
            continue
        if line.startswith("#"):
            continue
        where = f"{source}:{number}"
        if line.startswith("@ "):
            parts = line[2:].split()
            if len(parts) != 3:
                raise ValueError(f"{where}: header needs domain, task_type and language")
            header = (parts[0], parts[1], parts[2])
            context = []
            continue
        role = _ROLE_PREFIXES.get(line[:2])
        if role is not None:
            context.append((role, _unescape(line[2:])))
            continue
        labels, _, body = line.partition(" ")
        if len(labels) != 2 or any(c not in "01" for c in labels) or not body.strip():
            raise ValueError(f"{where}: expected '<difficulty><stakes> text', got {line[:40]!r}")
        if header is None:
            raise ValueError(f"{where}: item before any '@' header")
        turns = (*context, ("user", _unescape(body)))
        rows.append(Row(turns, header[0], header[1], header[2], int(labels[0]), int(labels[1]), source))
        context = []
    return rows


def load_authored(directory: Path = CONTENT_DIR) -> list[Row]:
    """All rows from every content file, in sorted file order (deterministic)."""
    rows: list[Row] = []
    for path in sorted(directory.glob("*.txt")):
        rows.extend(parse_content(path.read_text(encoding="utf-8"), path.name))
    return rows
