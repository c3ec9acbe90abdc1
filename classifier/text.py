"""Turn a chat conversation into the one string the scorer reads."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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
