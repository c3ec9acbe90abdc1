"""Deterministic answers of simulated models.

Each model family speaks in its own voice and quotes the key words of the last user message, so
answers differ visibly per model; a prompt carrying numbered candidate answers (an aggregation
request) gets an answer that names and merges them. The same (seed, model, messages) always gives
the same text. Token counts come from `split_tokens`, a rough stand-in for a real tokenizer
(a word piece of up to six characters, or one punctuation mark, with its leading space).
"""

from __future__ import annotations

import hashlib
import random
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import orjson

_TOKEN = re.compile(r"\s*(?:\w{1,6}|[^\w\s])|\s+")
_WORD = re.compile(r"[A-Za-z][A-Za-z0-9'-]{3,}")
# "[1]", "Candidate 1:", "Response #2", "### Answer 3", or a plain "1." / "2)" at a line start.
_CANDIDATE_MARKER = re.compile(
    r"^[ \t]*(?:#{1,6}[ \t]*)?(?:\*\*)?(?:"
    r"\[(?P<bracket>\d{1,2})\]"
    r"|(?:candidate|response|answer|proposal|model)(?:[ \t]+answer)?[ \t]*#?(?P<label>\d{1,2})"
    r"|(?P<plain>\d{1,2})[.)][ \t]"
    r")(?:\*\*)?[ \t]*[:.)\-]?",
    re.IGNORECASE | re.MULTILINE,
)
_MIN_PLAIN_CANDIDATE_TOKENS = 12  # a short numbered list in a question is not a set of answers
_PER_MESSAGE_OVERHEAD = 4  # roughly what OpenAI's chat format adds per message
_REPLY_PRIMING = 3
_STOPWORD_TEXT = """about above after again also answer answers because been before being below between both
    candidate candidates could does doing each explain following from have having here into just
    merge more most much only other over please provided question questions really response
    responses same should single some such synthesise synthesize than that their them then there
    these they this those through under very what when where which while will with would write your
    critically combined better given using model models"""
_STOPWORDS = frozenset(_STOPWORD_TEXT.split())


def split_tokens(text: str) -> list[str]:
    """Split `text` into tokens; joining them gives `text` back."""
    return _TOKEN.findall(text)


def count_tokens(text: str) -> int:
    """How many tokens `text` is, by the simulator's tokenizer."""
    return len(_TOKEN.findall(text))


def message_text(message: dict[str, Any]) -> str:
    """The text of a chat message whose content is a string or a list of OpenAI content parts."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            part["text"] for part in content if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    return ""


def prompt_tokens(messages: list[dict[str, Any]]) -> int:
    """Prompt token count: each message's text plus a fixed per-message overhead."""
    body = sum(count_tokens(message_text(m)) + _PER_MESSAGE_OVERHEAD for m in messages)
    return body + _REPLY_PRIMING


@dataclass(frozen=True)
class _Voice:
    openers: tuple[str, ...]
    sentences: tuple[str, ...]  # templates over the key words {a}, {b}, {c}


_VOICES: dict[str, _Voice] = {
    "mini": _Voice(
        ("Quick answer.", "In short:", "Briefly:"),
        (
            "The main thing about {a} is that it depends on {b}.",
            "Most of the time {a} works fine; check {b} first.",
            "If {b} is unclear, start from {a} and keep it simple.",
            "That covers {a} for the usual case.",
            "Skip {c} unless you need it.",
            "{a} and {b} are related, nothing more complicated.",
        ),
    ),
    "atlas": _Voice(
        ("Let me lay this out in a structured way.", "A structured view, point by point."),
        (
            "- First principle: {a} is defined by how it relates to {b}.",
            "- Second, the evidence on {b} points in one direction when {c} is held fixed.",
            "- Third, a careful reading of {a} separates the mechanism from the outcome.",
            "- In practice, {c} is where {a} succeeds or fails.",
            "- The trade-off: more {b} buys precision at the cost of speed.",
            "- Historically, views on {a} shifted once {b} could be measured.",
            "- Summary: {a} rests on {b}, and {c} decides the details.",
        ),
    ),
    "borealis": _Voice(
        ("Short answer first, then the caveats.", "Here is a cautious answer, with the caveats."),
        (
            "The claim about {a} holds, but only under assumptions about {b}.",
            "A common mistake is to treat {b} as settled; it is not, especially around {c}.",
            "I would verify {a} independently before relying on it.",
            "Be careful: {c} can reverse the conclusion about {a}.",
            "The honest answer on {b} is that the sources disagree.",
            "Edge cases around {a} deserve a second look.",
            "If {c} is uncertain, say so rather than guess about {b}.",
        ),
    ),
    "cypress": _Voice(
        ("Let me think this through step by step, with an example.", "Practically speaking:"),
        (
            "Step by step: begin with {a}, then work out {b}.",
            "For example, imagine {a} in a small project where {c} matters.",
            "A concrete way to test {b} is to change one thing at a time.",
            "Concretely, {c} is the knob to turn when {a} misbehaves.",
            "Once {a} is clear, {b} usually follows.",
            "A quick check: does {b} still hold when {c} doubles?",
            "In real use, people learn {a} fastest by trying {b} on a toy case.",
        ),
    ),
    "maestro": _Voice(
        ("Here is a considered answer.", "A balanced answer."),
        (
            "Taken together, {a} and {b} explain most of the picture.",
            "The strongest reading of {a} keeps the caveat about {c}.",
            "Where the reasoning on {b} is solid, I keep it; where it is thin, I say so.",
            "The practical upshot for {a}: start small and check {c}.",
            "Nothing essential about {b} is lost by keeping the answer short.",
            "One point needs care: {c} changes how {a} should be read.",
        ),
    ),
    "judge": _Voice(
        ("Assessment follows.", "Evaluation:"),
        (
            "The answers are compared on accuracy about {a}, completeness on {b} and clarity.",
            "The decisive difference concerns {c}.",
            "Both answers address {a}; only one handles {b} with care.",
            "Minor issues on {c} do not change the verdict.",
        ),
    ),
}


def _voice_for(family: str) -> _Voice:
    voice = _VOICES.get(family)
    if voice is not None:
        return voice
    names = sorted(_VOICES)
    return _VOICES[names[_stable_int(family) % len(names)]]


def _stable_int(*parts: str | bytes) -> int:
    digest = hashlib.blake2b(digest_size=8)
    for part in parts:
        digest.update(part.encode() if isinstance(part, str) else part)
        digest.update(b"\0")
    return int.from_bytes(digest.digest(), "big")


def find_candidates(texts: list[str]) -> tuple[str, list[str]]:
    """The numbered candidate answers in `texts`, and the text around them (the question).

    Returns ("all text", []) when fewer than two candidates, numbered from 1, are present.
    """
    for position, text in enumerate(texts):
        markers = list(_CANDIDATE_MARKER.finditer(text))
        numbered = _consecutive_from_one(markers)
        if len(numbered) < 2:
            continue
        segments = [
            text[marker.end() : (numbered[i + 1].start() if i + 1 < len(numbered) else len(text))].strip()
            for i, marker in enumerate(numbered)
        ]
        if numbered[0].group("plain") and min(map(count_tokens, segments)) < _MIN_PLAIN_CANDIDATE_TOKENS:
            continue
        rest = [*texts[:position], *texts[position + 1 :], text[: numbered[0].start()]]
        return "\n".join(rest), segments
    return "\n".join(texts), []


def _consecutive_from_one(markers: list[re.Match[str]]) -> list[re.Match[str]]:
    run: list[re.Match[str]] = []
    for marker in markers:
        number = int(marker.group("bracket") or marker.group("label") or marker.group("plain"))
        if number == len(run) + 1:
            run.append(marker)
    return run


def key_words(text: str, limit: int = 3) -> list[str]:
    """The longest distinct content words of `text`, in order of appearance."""
    seen: dict[str, int] = {}
    for index, match in enumerate(_WORD.finditer(text)):
        word = match.group().lower().strip("'-")
        if word not in _STOPWORDS and word not in seen:
            seen[word] = index
    longest = sorted(seen, key=lambda w: (-len(w), seen[w]))[:limit]
    return sorted(longest, key=lambda w: seen[w])


def _snippet(text: str, words: int = 9) -> str:
    parts = text.split()
    return " ".join(parts[:words]) + (" ..." if len(parts) > words else "")


def compose_answer(
    seed: int, model: str, family: str, output_tokens: int | tuple[int, int], messages: list[dict[str, Any]]
) -> tuple[str, ...]:
    """The model's answer to `messages`, as tokens: deterministic for the arguments."""
    key = orjson.dumps(messages, option=orjson.OPT_SORT_KEYS)
    return _compose_cached(seed, model, family, output_tokens, key)


@lru_cache(maxsize=4096)
def _compose_cached(
    seed: int, model: str, family: str, output_tokens: int | tuple[int, int], messages_json: bytes
) -> tuple[str, ...]:
    messages: list[dict[str, Any]] = orjson.loads(messages_json)
    rng = random.Random(_stable_int(str(seed), model, messages_json))
    low, high = (output_tokens, output_tokens) if isinstance(output_tokens, int) else output_tokens
    target = rng.randint(low, high)

    user_texts = [message_text(m) for m in messages if m.get("role") == "user"]
    other_texts = [message_text(m) for m in messages if m.get("role") != "user"]
    question, candidates = find_candidates(other_texts + user_texts[-1:])
    words = key_words(user_texts[-1] if user_texts and not candidates else question) or ["your question"]
    slots = (words + words + words)[:3]
    voice = _voice_for(family)

    parts = [rng.choice(voice.openers)]
    if candidates:
        parts.append(f"I weighed {len(candidates)} candidate answers and merged them into one.")
        parts.extend(f'Candidate {i} says: "{_snippet(c)}"' for i, c in enumerate(candidates, 1))
        keep, extra = rng.sample(range(1, len(candidates) + 1), 2)
        parts.append(f"Combining them, I keep the core of candidate {keep} and add what candidate {extra} covers.")
    parts.append("On " + ", ".join(dict.fromkeys(slots)) + ":")
    text = " ".join(parts)
    length = count_tokens(text)
    pool: list[str] = []
    while length < target:
        if not pool:  # go through every sentence of the voice before repeating one
            pool = list(voice.sentences)
            rng.shuffle(pool)
        a, b, c = rng.sample(slots, 3)
        sentence = " " + pool.pop().format(a=a, b=b, c=c)
        text += sentence
        length += count_tokens(sentence)  # a space-led piece never merges with the token before it
    if any("VERDICT:" in t for t in other_texts):
        # Asked to judge (shadow evaluation): end with the machine-readable line the prompt asks for.
        text += "\nVERDICT: " + rng.choices(("A", "B", "TIE"), weights=(3, 4, 3))[0]
    return tuple(split_tokens(text))
