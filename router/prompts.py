"""The one aggregate-and-synthesise prompt, written once and used by every layer and the aggregator."""

from __future__ import annotations

from collections.abc import Sequence

from router.providers.base import Message

AGGREGATE_INSTRUCTIONS = """\
You are given a user's request and {count} candidate answers to it, written independently by \
different assistants. Read them as a careful reviewer: they may disagree, and any of them may be \
wrong, incomplete, or padded. Check each claim, calculation and piece of code against the request; \
keep what is correct and well supported, drop what is wrong or unsupported, and fill gaps that all \
of them left. Then write one answer to the user's request that is better than any single candidate: \
accurate, complete and directly useful. Do not mention the candidates or this review; answer as if \
you were answering the request yourself, in the language and format the user asked for.

Candidate answers:
{candidates}"""


def format_candidates(answers: Sequence[str]) -> str:
    return "\n\n".join(f"[{number}] {answer.strip()}" for number, answer in enumerate(answers, start=1))


def with_candidates(messages: Sequence[Message], answers: Sequence[str]) -> list[Message]:
    """The conversation with the candidates placed in a leading system message. Used for the aggregator
    and, in multi-layer mixtures, for every agent of the next layer."""
    instructions = AGGREGATE_INSTRUCTIONS.format(count=len(answers), candidates=format_candidates(answers))
    return [{"role": "system", "content": instructions}, *messages]
