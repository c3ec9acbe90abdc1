"""Labelled training rows: reading JSON lines, validating them, and the stable held-back split.

Row schema: {"id": str, "messages": [{"role", "content"}...], "domain": str, "task_type": str,
"language": str, "difficulty": 0|1, "stakes": 0|1} plus an optional "weight" (default 1) and an
optional "split_key" (rows sharing one land on the same side of the held-back split). A row may give
"prompt": str instead of "messages" (one user turn).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from classifier.text import messages_to_text

Row = dict[str, Any]


class DatasetError(ValueError):
    """A training file or row is not in the expected schema; the message names file and line."""


def jsonl_files(path: Path) -> list[Path]:
    """`path` itself if it is a file, else every *.jsonl directly under it (sorted, for a stable hash)."""
    path = Path(path)
    if path.is_file():
        return [path]
    if path.is_dir():
        files = sorted(child for child in path.glob("*.jsonl") if child.is_file())
        if files:
            return files
        raise DatasetError(f"{path}: no *.jsonl files")
    raise DatasetError(f"{path}: no such file or directory")


def iter_jsonl(file: Path) -> Iterator[tuple[int, Any]]:
    """(line number, parsed value) for each non-blank line; a line that is not UTF-8 or not JSON is a
    DatasetError naming it."""
    with Path(file).open("rb") as handle:
        for line_number, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8-sig" if line_number == 1 else "utf-8")  # a leading byte order mark is dropped
            except UnicodeDecodeError as exc:
                raise DatasetError(f"{file}:{line_number}: not UTF-8 ({exc.reason} at byte {exc.start})") from exc
            if not line.strip():
                continue
            try:
                yield line_number, json.loads(line)
            except json.JSONDecodeError as exc:
                raise DatasetError(f"{file}:{line_number}: invalid JSON ({exc.msg})") from exc


def load_rows(path: Path) -> list[Row]:
    """All rows of a JSON-lines file, or of every *.jsonl file in a directory; validated."""
    rows: list[Row] = []
    for file in jsonl_files(path):
        for line_number, row in iter_jsonl(file):
            problem = row_problem(row)
            if problem:
                raise DatasetError(f"{file}:{line_number}: {problem}")
            rows.append(row)
    return rows


def row_problem(row: Any) -> str | None:
    """Why a row cannot be used for training, or None when it can."""
    if not isinstance(row, dict):
        return "expected a JSON object"
    if "messages" in row:
        messages = row["messages"]
        if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
            return "'messages' must be a non-empty list of objects"
    elif not isinstance(row.get("prompt"), str):
        return "needs 'messages' (a list) or 'prompt' (a string)"
    for label in ("difficulty", "stakes"):
        if row.get(label) not in (0, 1) or isinstance(row.get(label), bool):
            return f"'{label}' must be 0 or 1, got {row.get(label)!r}"
    weight = row.get("weight", 1)
    if isinstance(weight, bool) or not isinstance(weight, int | float) or not weight >= 0:
        return f"'weight' must be a non-negative number, got {weight!r}"
    return None


def row_text(row: Mapping[str, Any]) -> str:
    """The text the scorer reads for a row (same flattening as a live request)."""
    if "messages" in row:
        return messages_to_text(row["messages"])
    return str(row.get("prompt", ""))


def row_key(row: Mapping[str, Any]) -> str:
    """A row's identity for the split: its split key, else its id, else its text."""
    for name in ("split_key", "id"):
        if row.get(name) is not None:
            return str(row[name])
    return row_text(row)


def is_held_back(row: Mapping[str, Any], fraction: float) -> bool:
    """Stable split: the same row lands on the same side whatever else is in the data set."""
    digest = hashlib.sha256(row_key(row).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


def split_rows(rows: Sequence[Row], held_back_fraction: float) -> tuple[list[Row], list[Row]]:
    """(training rows, held-back rows)."""
    train: list[Row] = []
    held: list[Row] = []
    for row in rows:
        (held if is_held_back(row, held_back_fraction) else train).append(row)
    return train, held


def data_sha256(rows: Iterable[Mapping[str, Any]]) -> str:
    """A hash of the rows' content, independent of key order and whitespace in the files."""
    digest = hashlib.sha256()
    for row in rows:
        digest.update(json.dumps(row, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))
        digest.update(b"\n")
    return digest.hexdigest()
