"""Turn a chat conversation into the one string the scorer reads."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

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
_LABEL_RE = re.compile(r"\n[#*> \t]{0,4}([A-Z][A-Za-z0-9 ,'_()-]{0,80}:)(?=\s)")
_DIGITS_RE = re.compile(r"[0-9]")
# Shorter texts are never few-shot prompts worth unpacking, and skipping them keeps typical asks cheap.
FEW_SHOT_MIN_CHARS = 200
PREAMBLE_CHARS = 300
# Two solved examples and the real item.
MIN_FEW_SHOT_BLOCKS = 3
# Markers that open or close a blank-line separated block: a label ("Answer:"), a tag ("[DONE]"),
# an option letter ("B.", "(B)") or a doctest prompt. Numbers are not markers: blank-line separated
# numbered parts are one multi-part ask, not examples.
_MARKER = r"(?:[A-Z][A-Za-z0-9 ,'_()-]{0,40}:|\[[A-Za-z_ ]{1,20}\]|\(?[A-Za-z][.)]|>>>)"
_BLOCK_HEAD_RE = re.compile(r"\n\n(" + _MARKER + r")(?=\s)")
_BLOCK_TAIL_RE = re.compile(r"\n(" + _MARKER + r")[^\n]*(?=\n\n)")


@dataclass(frozen=True, slots=True)
class FocusedText:
    """What is scored of a prompt: `text`, and how many worked examples preceded its final item."""

    text: str
    examples: int


def focus_final_item(text: str) -> FocusedText:
    """The instructions plus the final item of a few-shot prompt; any other text unchanged.

    Two ways a prompt shows it is few-shot, tried in order:
    - labelled lines: at least two distinct line-start labels each occur at least twice (a question
      label and an answer label of a repeated frame); the label seen first opens each example;
    - repeated blocks: at least three blank-line separated blocks start, or end, with the same marker
      (a label such as "Answer:", a tag such as "[DONE]", an option letter, a doctest prompt).
    The final item starts at the last opening label or marked block (or after the last closed one).
    """
    if len(text) < FEW_SHOT_MIN_CHARS or text.count("\n") < 3:
        return FocusedText(text, 0)
    found = _by_labels(text) or _by_blocks(text)
    if found is None:
        return FocusedText(text, 0)
    first, last, examples = found
    preamble = text[:first].strip()
    final = text[last:]
    focused = preamble[:PREAMBLE_CHARS] + "\n" + final if preamble else final
    return FocusedText(focused, examples)


def _by_labels(text: str) -> tuple[int, int, int] | None:
    """(start of the first example, start of the final item, examples) from repeated line labels."""
    lined = "\n" + text
    raw = _LABEL_RE.findall(lined)
    if len(raw) < 4:
        return None
    # Labels never contain a newline, so one substitution over the joined labels folds them all.
    folded = _DIGITS_RE.sub("#", "\n".join(raw)).split("\n")
    counts = Counter(folded)
    repeated = [label for label, count in counts.items() if count >= 2]
    if len(repeated) < 2:
        return None
    opener = repeated[0]  # Counter keeps first-seen order
    first_raw = raw[folded.index(opener)]
    last_raw = raw[len(folded) - 1 - folded[::-1].index(opener)]
    # Positions in `lined` are one past those in `text`; the label itself starts after the newline.
    return max(lined.find(first_raw) - 1, 0), max(lined.rfind(last_raw) - 1, 0), counts[opener] - 1


def _by_blocks(text: str) -> tuple[int, int, int] | None:
    """(start of the first example, start of the final item, examples) from repeated block markers."""
    for pattern in (_BLOCK_HEAD_RE, _BLOCK_TAIL_RE):
        markers = pattern.findall("\n\n" + text + "\n\n")
        if len(markers) < MIN_FEW_SHOT_BLOCKS:
            continue
        marker, count = Counter(markers).most_common(1)[0]
        if count < MIN_FEW_SHOT_BLOCKS:
            continue
        if pattern is _BLOCK_HEAD_RE:
            return text.find("\n\n" + marker) + 2, text.rfind("\n\n" + marker) + 2, count - 1
        # Blocks whose last line carries the marker are solved examples; the item is what follows
        # the last of them, or is that last block itself when nothing follows (an empty answer line).
        first_line = text.find("\n" + marker)
        last_line = text.rfind("\n" + marker)
        first = text.rfind("\n\n", 0, first_line) + 2 if first_line > 0 else 0
        after = text.find("\n\n", last_line)
        if after < 0:
            return first, text.rfind("\n\n", 0, last_line) + 2, count - 1
        return first, after + 2, count
    return None
