"""Surface variation of English asks: typos, casing, terse or chatty wrappers.

None of these changes what is being asked, so labels are kept. Applied only to English rows (the
other languages were written with their own register) and only to the final user turn.
"""

from __future__ import annotations

import random

from authored import Row
from slots import pick

_PREFIXES = ["hey, ", "quick question: ", "pls help - ", "Hi! I was wondering: ", "ok so ", "Urgent: ",
             "for work - ", "asking for a friend: ", "hello, ", "Question. ", "sorry if this is dumb but ",
             "Good afternoon. ", "hi there, ", "need help: ", "yo ", "Dear assistant, "]
_SUFFIXES = [" thanks!", " thx", " ty in advance", " Please be concise.", " Answer in one line.",
             " just answer, no lecture", " (please explain your reasoning)", " Thank you so much!", " asap",
             " - can you help?", " I need this for tomorrow.", " keep it simple pls", " Cheers.", " ??"]
_WRAPPERS = [
    "I've been going back and forth on this for a while and would really appreciate a clear answer."
    "\n\n{t}\n\nThanks for taking the time!",
    "Context: I'm not an expert, so please don't assume too much background.\n{t}",
    "{t}\n\n(Sorry for the long message, I just want to get this right.)",
]


def _typo(rng: random.Random, text: str) -> str:
    words = text.split(" ")
    candidates = [i for i, w in enumerate(words) if len(w) > 4 and w.isalpha()]
    if not candidates:
        return text
    i = pick(rng, candidates)
    word = words[i]
    j = rng.randrange(1, len(word) - 2)
    kind = rng.randrange(3)
    if kind == 0:
        word = word[:j] + word[j + 1] + word[j] + word[j + 2 :]
    elif kind == 1:
        word = word[:j] + word[j + 1 :]
    else:
        word = word[:j] + word[j] + word[j:]
    words[i] = word
    return " ".join(words)


def vary(rng: random.Random, row: Row) -> Row:
    """Return the row, possibly with a surface variation of its final user turn."""
    if row.language != "en":
        return row
    text = row.last_user_text
    roll = rng.random()
    if roll < 0.12:
        text = _typo(rng, _typo(rng, text) if rng.random() < 0.4 else text)
    elif roll < 0.24 and "\n" not in text:
        text = text.lower().rstrip(".?!")
    elif roll < 0.36:
        text = pick(rng, _PREFIXES) + text[0].lower() + text[1:] if text[:2].isalpha() else text
    elif roll < 0.46:
        text = text + pick(rng, _SUFFIXES)
    elif roll < 0.49 and len(text) < 400:
        text = pick(rng, _WRAPPERS).format(t=text)
    return row if text == row.last_user_text else row.with_last_user_text(text)
