"""Generated reasoning items: letter counting, calendar arithmetic, number crunching, fill-in-the-blank.

Why these are labelled hard: small models tokenise words (so they miscount letters), do not run a
calendar (weekday and day-count questions), and slip on long multiplication. Short asks such as
"what's 15% of 80" stay easy even though they are maths.
"""

from __future__ import annotations

import datetime as dt
import random

from authored import Row
from slots import pick, sample, single

_WORDS = [
    "strawberry", "mississippi", "bookkeeper", "committee", "embarrassment", "parallel", "occurrence",
    "assassination", "possession", "millennium", "accommodation", "onomatopoeia", "banana", "cinnamon",
    "raspberry", "referee", "nevertheless", "successfully", "bubblegum", "tennessee", "aardvark",
    "hippopotamus", "abracadabra", "peppermint", "coffee", "balloon", "entrepreneur", "questionnaire",
    "unnecessarily", "kayak", "mammal", "shellfish", "interrupted", "pineapple", "sassafras",
]
_COUNT_FRAMES = [
    "How many times does the letter '{c}' appear in '{w}'?",
    "how many {c}'s are in {w}",
    "count the letter {c} in the word {w}",
    "Quick one: number of '{c}' characters in \"{w}\"?",
    "in the word {w}, how many {c} are there? answer with a number",
    "Wie oft kommt der Buchstabe '{c}' in '{w}' vor?",
    "Combien de '{c}' y a-t-il dans le mot « {w} » ?",
    "¿Cuántas veces aparece la letra '{c}' en '{w}'?",
]
_STRING_FRAMES = [
    ("Spell '{w}' backwards, letter by letter.", "reverse"),
    ("what is the 6th letter of {w}", "index"),
    ("Sort the letters of '{w}' alphabetically.", "sort"),
    ("How many letters does '{w}' have? and how many distinct ones?", "length"),
]


def _letter_rows(rng: random.Random) -> list[Row]:
    rows = []
    for word in _WORDS:
        for frame in sample(rng, _COUNT_FRAMES, 2):
            letter = pick(rng, sorted(set(word)))
            lang = "de" if "Buchstabe" in frame else "fr" if "Combien" in frame else "es" if "¿" in frame else "en"
            rows.append(single(frame.format(c=letter, w=word), "reasoning", "letter-counting", lang, 1, 0,
                               "templates_reasoning"))
        frame, _ = pick(rng, _STRING_FRAMES)
        rows.append(single(frame.format(w=word), "reasoning", "string-puzzle", "en", 1, 0, "templates_reasoning"))
    return rows


_WEEKDAY_FRAMES = [
    "What day of the week was {d:%B} {d.day}, {d.year}?",
    "which weekday is {d:%Y-%m-%d}",
    "was {d.day} {d:%B} {d.year} a weekend day?",
    "An welchem Wochentag war der {d.day}.{d.month}.{d.year}?",
]
_SPAN_FRAMES = [
    "How many days are there between {a:%B} {a.day}, {a.year} and {b:%B} {b.day}, {b.year}?",
    "days from {a:%d/%m/%Y} to {b:%d/%m/%Y}? count exactly",
    "If a contract starts on {a:%B} {a.day}, {a.year} and lasts {n} days, on what date does it end?",
    "My visa was issued {a:%d %B %Y} and is valid for {n} days counting the issue day. Last valid day?",
    "what date is {n} days after {a:%Y-%m-%d}?",
]


def _random_date(rng: random.Random) -> dt.date:
    return dt.date(1850, 1, 1) + dt.timedelta(days=rng.randrange(365 * 190))


def _calendar_rows(rng: random.Random) -> list[Row]:
    rows = []
    for i in range(36):
        day = _random_date(rng)
        frame = _WEEKDAY_FRAMES[i % len(_WEEKDAY_FRAMES)]
        lang = "de" if frame.startswith("An ") else "en"
        rows.append(single(frame.format(d=day), "reasoning", "calendar", lang, 1, 0,
                           "templates_reasoning"))
    for i in range(30):
        start = _random_date(rng)
        n = rng.randrange(40, 900)
        frame = _SPAN_FRAMES[i % len(_SPAN_FRAMES)]
        rows.append(single(frame.format(a=start, b=start + dt.timedelta(days=n), n=n), "reasoning", "calendar",
                           "en", 1, 0, "templates_reasoning"))
    return rows


_EASY_ARITHMETIC = [
    "what's {a} + {b}", "{a} minus {b}?", "what is {p}% of {b}", "{a} x {s}", "what's {b} divided by {s}",
    "how much is {a} plus {b} plus {s}", "double {a}", "is {a} bigger than {b}?", "round {a}.{s}7 to the nearest whole number",
    "wieviel ist {a} + {b}", "combien font {a} plus {b}", "cuánto es {a} menos {s}", "quanto fa {a} per {s}",
    "{p} procent van {b}?", "{a}加{b}等于多少",
]
_HARD_ARITHMETIC = [
    "What is {x} × {y}? Give the exact result.",
    "compute {x}*{y} exactly, no approximation",
    "What's {x} squared times {s}?",
    "Divide {x}{y} by {s}{s} and give the answer to 4 decimal places.",
    "What's the remainder when {x}{y} is divided by {z}?",
    "Is {x}{s} divisible by 7? by 11? by 13? show the checks",
    "What is the sum of all the digits of {x} × {y}?",
    "prime factorisation of {x}{s}, please",
    "What is 2 to the power of {e}, exactly?",
    "Berechne {x} · {y} exakt.",
    "Calcule {x} × {y} sans calculatrice et vérifie le résultat.",
]


def _lang_of(frame: str) -> str:
    for marker, lang in (("wieviel", "de"), ("Berechne", "de"), ("combien", "fr"), ("Calcule", "fr"),
                         ("cuánto", "es"), ("quanto", "it"), ("procent", "nl"), ("等于", "zh")):
        if marker in frame:
            return lang
    return "en"


def _arithmetic_rows(rng: random.Random) -> list[Row]:
    rows = []
    for i in range(len(_EASY_ARITHMETIC) * 4):
        frame = _EASY_ARITHMETIC[i % len(_EASY_ARITHMETIC)]
        text = frame.format(a=rng.randrange(11, 400), b=rng.randrange(20, 900), s=rng.randrange(2, 13),
                            p=pick(rng, [5, 10, 15, 20, 25, 30, 50, 75]))
        rows.append(single(text, "maths", "arithmetic", _lang_of(frame), 0, 0, "templates_reasoning"))
    for i in range(len(_HARD_ARITHMETIC) * 4):
        frame = _HARD_ARITHMETIC[i % len(_HARD_ARITHMETIC)]
        text = frame.format(x=rng.randrange(1013, 98765), y=rng.randrange(1201, 9999), s=rng.randrange(3, 97),
                            z=rng.randrange(13, 97), e=rng.randrange(31, 70))
        rows.append(single(text, "maths", "arithmetic", _lang_of(frame), 1, 0, "templates_reasoning"))
    return rows


# Fill-in-the-blank schemas: (sentence with {a}, {b} and _, answer-flipping pair of words).
_SCHEMAS = [
    "{a} couldn't give {b} a ride home because _ car was {w}.|in the shop|already full",
    "{a} asked {b} to check the essay, since _ was {w} at grammar.|terrible|excellent",
    "{a} won the argument against {b} because _ had {w} evidence.|stronger|weaker",
    "{a} handed {b} the map because _ {w} the way.|knew|didn't know",
    "{a} invited {b} to dinner, but _ had to decline because of a {w}.|prior commitment|sudden cold",
    "{a} called {b} to apologise because _ had {w} the meeting.|forgotten|organised",
    "{a} paid {b} back the money because _ had {w} it last month.|borrowed|lent",
    "{a} stayed late to help {b}, since _ was {w} with the project.|behind|finished early",
    "The jar wouldn't open for {a}, so {b} tried, because _ had {w} hands.|stronger|weaker",
    "{a} recommended the dentist to {b} because _ had {w} experience there.|a great|a painful",
    "{a} lost the race to {b} because _ had trained {w}.|less|harder",
    "{a} couldn't hear {b} over the music because _ voice was so {w}.|quiet|loud",
    "{a} gave {b} a jacket because _ was {w}.|shivering|too warm",
    "When {a} met {b} at the airport, _ was {w} after the long flight.|exhausted|waiting patiently",
    "{a} taught {b} to swim because _ was {w} of the water.|afraid|fond",
    "{a} trusted {b} with the keys since _ was {w}.|reliable|leaving town",
    "{a} always lets {b} choose the restaurant because _ is a {w} eater.|picky|relaxed",
    "The plant on {a}'s desk thrived while {b}'s died, since _ {w} watered it.|regularly|never",
    "{a} was jealous of {b} because _ had {w} the promotion.|missed out on|received",
    "{a} had to wake {b} up because _ alarm had {w}.|failed|gone off for nothing",
]
_NAMES = ["Aisha", "Bruno", "Chen", "Daria", "Emeka", "Fatima", "Gustavo", "Hiro", "Ines", "Jamal", "Katya",
          "Liam", "Mei", "Nikhil", "Olga", "Pablo", "Quinn", "Rosa", "Sven", "Tunde", "Uma", "Victor", "Wen",
          "Ximena", "Yusuf", "Zara", "Marek", "Noor", "Elif", "Kofi"]
_OPTION_FRAMES = [
    "{s} Option 1: {a}. Option 2: {b}.",
    "Fill in the blank: {s}\n1) {a}\n2) {b}",
    "{s} Who does _ refer to, {a} or {b}?",
    "Which name goes in the blank? \"{s}\" ({a} / {b})",
    "{s}\n{a}\n{b}",
    "Sentence: {s}\nOption A: {a}\nOption B: {b}",
]


def _blank_rows(rng: random.Random) -> list[Row]:
    rows = []
    for schema in _SCHEMAS:
        sentence, first, second = schema.split("|")
        for word in (first, second):
            a, b = sample(rng, _NAMES, 2)
            text = pick(rng, _OPTION_FRAMES).format(s=sentence.format(a=a, b=b, w=word), a=a, b=b)
            rows.append(single(text, "commonsense", "fill-in-the-blank", "en", 1, 0, "templates_reasoning"))
    return rows


def build(rng: random.Random) -> list[Row]:
    """All generated reasoning and arithmetic rows."""
    return _letter_rows(rng) + _calendar_rows(rng) + _arithmetic_rows(rng) + _blank_rows(rng)
