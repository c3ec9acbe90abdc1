"""Turn a chat conversation into the one string the scorer reads."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from classifier.native import native_requested

# Earlier turns only add context (a follow-up such as "and for 2024?" is as hard as the thread it is
# in), so each is cut short; the last user turn is what is being asked and is kept whole.
CONTEXT_CHARS_PER_TURN = 300
CONTEXT_TURNS = 3
CONTEXT_SEPARATOR = "\n\n"


def content_text(content: Any) -> str:
    """The text of one message's `content`: a string, or OpenAI's list of typed parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = [
            part.get("text", "")
            for part in content
            if isinstance(part, Mapping) and part.get("type") == "text" and isinstance(part.get("text"), str)
        ]
        return "\n".join(texts)
    return ""


def split_messages(messages: Sequence[Mapping[str, Any]]) -> tuple[str, str]:
    """Return (last user turn, earlier context). Without a user turn the last message counts as the ask."""
    ask_index = -1
    for index in range(len(messages) - 1, -1, -1):
        if messages[index].get("role") == "user":
            ask_index = index
            break
    if ask_index < 0:
        if not messages:
            return "", ""
        ask_index = len(messages) - 1
    ask = content_text(messages[ask_index].get("content"))
    earlier = messages[max(0, ask_index - CONTEXT_TURNS) : ask_index]
    context_parts = []
    for message in earlier:
        text = content_text(message.get("content")).strip()
        if text:
            context_parts.append(text[:CONTEXT_CHARS_PER_TURN])
    # A system prompt set apart from the recent turns still says what the assistant is for.
    if ask_index - CONTEXT_TURNS > 0 and messages[0].get("role") == "system":
        system = content_text(messages[0].get("content")).strip()
        if system:
            context_parts.insert(0, system[:CONTEXT_CHARS_PER_TURN])
    return ask, CONTEXT_SEPARATOR.join(context_parts)


def messages_to_text(messages: Sequence[Mapping[str, Any]]) -> str:
    """The last user turn, preceded by short excerpts of up to three earlier turns."""
    if len(messages) == 1:  # the common single-turn request, whatever its role: the ask alone
        return content_text(messages[0].get("content"))
    ask, context = split_messages(messages)
    if not context:
        return ask
    return context + CONTEXT_SEPARATOR + ask


# Few-shot prompts (product backends template them: worked examples, then the real item) repeat a
# frame of line-start labels such as "Question:"/"Answer:", "Q:"/"A:", "Input:"/"Output:" or
# "Example 2:". The worked examples are already solved, so they say nothing about how hard the real
# item is; the scorer reads the instructions before the first example and the final item.
# Labels start upper-case, which keeps code ("else:", "try:") and most prose out; digits are folded
# so "Example 1:" and "Example 2:" are one label. Anchoring on a literal newline keeps the scan fast.
_LABEL_RE = re.compile(r"\n[#*> \t]{0,4}+([A-Z][A-Za-z0-9 ,'_()-]{0,80}+:)(?=\s|$)")
_FOLD_DIGITS = bytes.maketrans(b"0123456789", b"##########")
# Shorter texts are never few-shot prompts worth unpacking, and skipping them keeps typical asks cheap.
FEW_SHOT_MIN_CHARS = 200
PREAMBLE_CHARS = 300
# How much of a prompt's end is searched for the frame (examples further back are not counted).
FEW_SHOT_SCAN_CHARS = 2048
# Two solved examples and the real item.
MIN_FEW_SHOT_BLOCKS = 3
# The first word (up to 16 characters) of each block's first line and of its last line.
_BLOCK_HEAD_RE = re.compile(r"\n\n\s*([^ \n]{1,16})")
# Possessive parts: a line that is not a block's last is given up at once, no backtracking. Taking the
# line's own newline is safe (the next line is blank, so no match can start there) and faster than
# looking ahead at two.
_BLOCK_TAIL_RE = re.compile(r"\n[ \t]*+([^ \n]{1,16}+)[^\n]*+\n(?=\n)")


@dataclass(frozen=True, slots=True)
class FocusedText:
    """What is scored of a prompt: `text`, and how many worked examples preceded its final item."""

    text: str
    examples: int


def _focus_final_item_python(text: str) -> FocusedText:
    """The instructions plus the final item of a few-shot prompt; any other text unchanged.

    Two ways a prompt shows it is few-shot, tried in order:
    - labelled lines: at least two distinct line-start labels each occur at least twice (a question
      label and an answer label of a repeated frame); the label seen first opens each example;
    - repeated blocks: at least three blank-line separated blocks start, or end, with the same marker
      (a label such as "Answer:", an option letter, a tag such as "[DONE]", a doctest prompt).
    The final item starts at the last opening label or marked block (or after the last closed one).
    Only the last FEW_SHOT_SCAN_CHARS characters are searched, so examples before them are not counted.
    """
    # Three finds stop at the third newline, where counting them all would read the whole text.
    second = text.find("\n", text.find("\n") + 1)
    if len(text) < FEW_SHOT_MIN_CHARS or second < 0 or text.find("\n", second + 1) < 0:
        return FocusedText(text, 0)
    # Only the end is searched, which bounds the cost whatever the length: the final item and the
    # examples just before it are there, and the instructions are read from the start below.
    offset = max(len(text) - FEW_SHOT_SCAN_CHARS, 0)
    region = text[offset:]
    # Cheap checks first: the label frame needs four labels (colons), the block frame three blocks
    # (two blank lines; two finds stop at the second, where counting would read the whole region).
    found = (_by_labels(region, cut=offset > 0) if region.count(":") >= 4 else None) or (
        _by_blocks(region) if region.find("\n\n", region.find("\n\n") + 2) >= 0 else None
    )
    if found is None:
        return FocusedText(text, 0)
    first, last, examples = found[0] + offset, found[1] + offset, found[2]
    preamble = text[:first].strip()
    final = text[last:]
    focused = preamble[:PREAMBLE_CHARS] + "\n" + final if preamble else final
    return FocusedText(focused, examples)


def _by_labels(text: str, cut: bool = False) -> tuple[int, int, int] | None:
    """(start of the first example, start of the final item, examples) from repeated line labels.

    The opening label is the first repeated one; in a `cut` text, which may start mid-example, it is
    the one whose last occurrence comes first (it opens the final item).
    """
    lined = "\n" + text
    raw = _LABEL_RE.findall(lined)
    n = len(raw)
    if n < 4:
        return None
    # Labels are ASCII and never contain a newline, so one bytes translation folds them all.
    folded = "\n".join(raw).encode("ascii").translate(_FOLD_DIGITS).split(b"\n")
    counts: dict[bytes, int] = {}
    for label in folded:
        counts[label] = counts.get(label, 0) + 1
    repeated = [label for label, count in counts.items() if count >= 2]  # first-seen order
    if len(repeated) < 2:
        return None
    # In reverse, the label whose last occurrence comes first is found latest.
    backwards = folded[::-1]
    opener = max(repeated, key=backwards.index) if cut else repeated[0]
    first_raw = raw[folded.index(opener)]
    last_raw = raw[n - 1 - backwards.index(opener)]
    # Offsets of "\n" + label in `lined` are those of the label in `text`.
    first = lined.find("\n" + first_raw)
    last = lined.rfind("\n" + last_raw)
    if first < 0 or last < 0:  # the label sits after a markdown or quote prefix
        first, last = lined.find(first_raw) - 1, lined.rfind(last_raw) - 1
    return max(first, 0), max(last, 0), counts[opener] - 1


def _is_marker(word: str) -> bool:
    """Whether a block's first word looks like a frame marker rather than prose.

    Markers are labels, option letters and tags ("Answer:", "B.", "(B)", "[DONE]", ">>>"); prose
    words (letters only, or with an apostrophe or a trailing comma) are not. Numbers are kept as
    written, so the parts of a numbered multi-part ask ("1.", "2.", "3.") never repeat.
    """
    return not (word.isalpha() and len(word) > 1) and "'" not in word and not word.endswith(",")


def _by_blocks(text: str) -> tuple[int, int, int] | None:
    """(start of the first example, start of the final item, examples) from repeated block markers."""
    padded = "\n\n" + text + "\n\n"
    # No head starts in the final run of spaces and newlines: ending the scan before it gives the same
    # matches (\s* would give that run back) without a quadratic scan of e.g. "\n" * 2048.
    found = _top_marker(_BLOCK_HEAD_RE.findall(padded, 0, len(padded.rstrip(" \n"))))
    if found is not None:
        marker, count = found
        # Offsets in `padded` are two past those in `text`, which skips the blank line itself.
        return padded.find("\n\n" + marker), padded.rfind("\n\n" + marker), count - 1
    found = _top_marker(_BLOCK_TAIL_RE.findall(padded))
    if found is None:
        return None
    marker, count = found
    # Blocks whose last line starts with the marker are solved examples; the item is what follows
    # the last of them, or that last block itself when nothing follows (an empty answer line).
    first_line = padded.find("\n" + marker)
    last_line = padded.rfind("\n" + marker)
    first = max(padded.rfind("\n\n", 0, first_line), 0)
    after = padded.find("\n\n", last_line)
    if after >= len(padded) - 2:
        return first, max(padded.rfind("\n\n", 0, last_line), 0), count - 1
    return first, after, count


def _top_marker(words: list[str]) -> tuple[str, int] | None:
    """The most frequent marker word seen at least MIN_FEW_SHOT_BLOCKS times (the first seen wins a
    tie), and its count."""
    if len(words) < MIN_FEW_SHOT_BLOCKS:
        return None
    best: tuple[str, int] | None = None
    for word, count in Counter(words).items():
        if count >= (best[1] + 1 if best else MIN_FEW_SHOT_BLOCKS) and _is_marker(word):
            best = word, count
    return best


def _load_native() -> Callable[[str], FocusedText] | None:
    """The C implementation of `_focus_final_item_python` (the same results), if it was built for this code
    and not switched off (MOA_ROUTER_NATIVE=0, read at import)."""
    if not native_requested():
        return None
    try:
        from classifier import _native_focus
    except ImportError:  # built without a C compiler: the Python implementation is used
        return None
    patterns = (_LABEL_RE.pattern, _BLOCK_HEAD_RE.pattern, _BLOCK_TAIL_RE.pattern)
    ours = (FEW_SHOT_MIN_CHARS, PREAMBLE_CHARS, FEW_SHOT_SCAN_CHARS, MIN_FEW_SHOT_BLOCKS, patterns)
    native = (
        _native_focus.FEW_SHOT_MIN_CHARS,
        _native_focus.PREAMBLE_CHARS,
        _native_focus.FEW_SHOT_SCAN_CHARS,
        _native_focus.MIN_FEW_SHOT_BLOCKS,
        _native_focus.PATTERNS,
    )
    # A stale build (these changed since) would give other results. The C sets FocusedText's two slots
    # itself, so it is used only while they are all there is to it.
    if native != ours or FocusedText.__slots__ != ("text", "examples"):
        return None
    _native_focus.bind(FocusedText)
    return _native_focus.focus_final_item


# The instructions plus the final item of a few-shot prompt; any other text unchanged (see
# `_focus_final_item_python`). The C extension, when built, gives the same FocusedText several times faster.
focus_final_item: Callable[[str], FocusedText] = _load_native() or _focus_final_item_python
