"""Few-shot framed asks: the team's own items placed after worked examples in common prompt frames.

Product backends often template their asks: an instruction, a few solved examples, then the real
item. The worked examples are already answered, so they do not make the ask harder or easier; each
row keeps the labels of its final item (taken from that item's own annotation). The frames cover
labelled pairs (Q:/A:, Question:/Answer:, Input:/Output:), numbered examples, unlabelled multiple
choice blocks ending in an answer line, code tasks with tests and a solution, and few-shot examples
sent as earlier chat turns. The solved examples below were written for this file.
"""

from __future__ import annotations

import random

from authored import Row

_SRC = "templates_fewshot"
# How many framed rows to make; the items are a seeded sample of the other rows.
N_ROWS = 360

# (question, answer): short solved general-knowledge, arithmetic and language examples.
_SOLVED: list[tuple[str, str]] = [
    ("What is the capital of Canada?", "Ottawa"),
    ("How many legs does a spider have?", "Eight"),
    ("What is 12 times 11?", "132"),
    ("Which is larger, 0.7 or 0.65?", "0.7"),
    ("What is the plural of 'mouse'?", "mice"),
    ("Name the metal that is liquid at room temperature.", "Mercury"),
    ("What is the opposite of 'ancient'?", "modern"),
    ("How many minutes are in three hours?", "180"),
    ("Which ocean lies between Africa and Australia?", "The Indian Ocean"),
    ("What do bees collect from flowers to make honey?", "Nectar"),
    ("What is 15% of 200?", "30"),
    ("Spell 'necessary' backwards.", "yrassecen"),
    ("Which instrument has 88 keys?", "The piano"),
    ("What is the freezing point of water in Celsius?", "0 degrees"),
    ("Who wrote 'Romeo and Juliet'?", "William Shakespeare"),
    ("What is the square root of 81?", "9"),
    ("Translate 'thank you' into Spanish.", "gracias"),
    ("Which gas do humans exhale more of than they inhale?", "Carbon dioxide"),
    ("How many sides does a hexagon have?", "Six"),
    ("What is the past tense of 'swim'?", "swam"),
    ("If a train leaves at 14:20 and the trip takes 45 minutes, when does it arrive?", "15:05"),
    ("Which continent is Kenya in?", "Africa"),
    ("What is 7 cubed?", "343"),
    ("Is 91 a prime number?", "No, 91 = 7 x 13"),
    ("What colour do you get by mixing blue and yellow paint?", "Green"),
    ("Rewrite in the passive voice: 'The cat chased the mouse.'", "The mouse was chased by the cat."),
    ("What is the main language spoken in Brazil?", "Portuguese"),
    ("How many grams are in 2.5 kilograms?", "2500"),
    ("Which planet has the most prominent rings?", "Saturn"),
    ("Give a synonym for 'rapid'.", "fast"),
    ("What is the next number: 2, 4, 8, 16, ...?", "32"),
    ("Which organ do fish use to breathe?", "Gills"),
    ("What is half of 3/4?", "3/8"),
    ("In which year did the Second World War end?", "1945"),
    ("Correct the sentence: 'She don't like apples.'", "She doesn't like apples."),
    ("How many days are in a leap year?", "366"),
]
# (question, options, answer letter): solved multiple-choice examples.
_SOLVED_CHOICE: list[tuple[str, tuple[str, ...], str]] = [
    ("Which of these is a source of light?", ("a mirror", "the Sun", "the Moon's shadow", "a window"), "B"),
    ("What do plants need to make their food?", ("sunlight", "sand", "salt", "plastic"), "A"),
    ("Which unit measures mass?", ("metre", "second", "kilogram", "litre"), "C"),
    ("Which animal is a reptile?", ("frog", "lizard", "salmon", "sparrow"), "B"),
    ("Which tool is best for looking at very small cells?", ("telescope", "microscope", "barometer", "compass"), "B"),
    ("What happens to water when it is heated to 100 °C at sea level?", ("it freezes", "it boils", "it turns to sand", "nothing"), "B"),
    ("Which material conducts electricity best?", ("rubber", "wood", "copper", "glass"), "C"),
    ("Which season follows spring in the northern hemisphere?", ("winter", "autumn", "summer", "monsoon"), "C"),
    ("Which of these is a renewable resource?", ("coal", "sunlight", "oil", "natural gas"), "B"),
    ("A ball rolls more slowly on grass than on a floor mainly because of", ("gravity", "friction", "magnetism", "light"), "B"),
    ("Which part of the plant takes in water from the soil?", ("leaves", "flowers", "roots", "fruit"), "C"),
    ("What keeps the planets in orbit around the Sun?", ("wind", "gravity", "magnetism", "sound"), "B"),
    ("Which word is a noun?", ("quickly", "happy", "table", "run"), "C"),
    ("Which number is even?", ("13", "27", "44", "51"), "C"),
]
# (task, test, solution): solved Python examples for the code frame.
_SOLVED_CODE: list[tuple[str, str, str]] = [
    ("Write a function to return the sum of a list.", "assert list_sum([1, 2, 3]) == 6",
     "def list_sum(items):\n    return sum(items)"),
    ("Write a function to square every number in a list.", "assert squares([1, 2, 3]) == [1, 4, 9]",
     "def squares(nums):\n    return [n * n for n in nums]"),
    ("Write a function to check whether a number is even.", "assert is_even(4) is True",
     "def is_even(n):\n    return n % 2 == 0"),
    ("Write a function to reverse a string.", "assert reverse_text('abc') == 'cba'",
     "def reverse_text(s):\n    return s[::-1]"),
    ("Write a function to count the words in a sentence.", "assert word_count('a b c') == 3",
     "def word_count(s):\n    return len(s.split())"),
    ("Write a function to return the largest element of a list.", "assert largest([3, 9, 2]) == 9",
     "def largest(items):\n    return max(items)"),
    ("Write a function to convert minutes to seconds.", "assert to_seconds(2) == 120",
     "def to_seconds(minutes):\n    return minutes * 60"),
    ("Write a function to join a list of words with spaces.", "assert join_words(['a', 'b']) == 'a b'",
     "def join_words(words):\n    return ' '.join(words)"),
]
_PREAMBLES = [
    "", "Answer the following questions.", "Here are some examples, then answer the last one.",
    "The following are questions with answers.", "Follow the format of the examples.",
    "You are a helpful assistant. Answer like in the examples below.",
]
_CHOICE_PREAMBLES = [
    "", "The following are multiple choice questions (with answers).",
    "Choose the correct option. Reply with the letter.", "Pick the best answer for each question.",
]
_CODE_PREAMBLES = ["", "Solve each programming task in Python.", "Complete the tasks like the examples."]
_PAIR_LABELS = [("Q:", "A:"), ("Question:", "Answer:"), ("Input:", "Output:"), ("Problem:", "Solution:")]


def _choice_block(question: str, options: tuple[str, ...], answer: str, style: int) -> str:
    letters = "ABCD"
    if style == 0:
        lines = [f"{letters[i]}. {option}" for i, option in enumerate(options)]
    else:
        lines = [f"({letters[i]}) {option}" for i, option in enumerate(options)]
    return f"{question}\n" + "\n".join(lines) + f"\nAnswer: {answer}"


def _with_preamble(preamble: str, body: str) -> str:
    return f"{preamble}\n\n{body}" if preamble else body


def _labelled(rng: random.Random, item: str) -> str:
    ask, reply = rng.choice(_PAIR_LABELS)
    shots = rng.sample(_SOLVED, rng.randint(3, 5))
    blocks = [f"{ask} {q}\n{reply} {a}" for q, a in shots] + [f"{ask} {item}\n{reply}"]
    return _with_preamble(rng.choice(_PREAMBLES), "\n\n".join(blocks))


def _numbered(rng: random.Random, item: str) -> str:
    shots = rng.sample(_SOLVED, rng.randint(3, 5))
    blocks = [f"Example {n}:\n{q}\nAnswer: {a}" for n, (q, a) in enumerate(shots, start=1)]
    blocks.append(f"Example {len(shots) + 1}:\n{item}\nAnswer:")
    return _with_preamble(rng.choice(_PREAMBLES), "\n\n".join(blocks))


def _choices(rng: random.Random, item: str) -> str:
    style = rng.randrange(2)
    shots = rng.sample(_SOLVED_CHOICE, rng.randint(3, 5))
    blocks = [_choice_block(q, options, a, style) for q, options, a in shots] + [f"{item}\nAnswer:"]
    return _with_preamble(rng.choice(_CHOICE_PREAMBLES), "\n\n".join(blocks))


def _code(rng: random.Random, item: str) -> str:
    shots = rng.sample(_SOLVED_CODE, rng.randint(3, 4))
    blocks = [f"Task: {task}\nTests:\n{test}\nSolution:\n{code}" for task, test, code in shots]
    blocks.append(f"Task: {item}\nSolution:")
    return _with_preamble(rng.choice(_CODE_PREAMBLES), "\n\n".join(blocks))


def _chat_turns(rng: random.Random, item: str) -> tuple[tuple[str, str], ...]:
    """Few-shot examples sent as earlier user/assistant turns."""
    turns: list[tuple[str, str]] = [("system", rng.choice(_PREAMBLES[1:]))]
    for q, a in rng.sample(_SOLVED, rng.randint(2, 3)):
        turns.extend((("user", q), ("assistant", a)))
    turns.append(("user", item))
    return tuple(turns)


def _eligible(row: Row) -> bool:
    """Single-turn English asks short enough to be one item of a templated prompt."""
    return len(row.messages) == 1 and row.language == "en" and 15 <= len(row.last_user_text) <= 400


def build(rng: random.Random, rows: list[Row]) -> list[Row]:
    """Framed copies of a seeded sample of `rows`, each labelled as its final item."""
    pool = [row for row in rows if _eligible(row)]
    items = rng.sample(pool, min(N_ROWS, len(pool)))
    framed: list[Row] = []
    for row in items:
        item = row.last_user_text
        kind = rng.randrange(5)
        if row.domain.startswith("coding") and rng.random() < 0.6:
            messages: tuple[tuple[str, str], ...] = (("user", _code(rng, item)),)
        elif kind == 4:
            messages = _chat_turns(rng, item)
        else:
            text = (_labelled, _numbered, _choices, _labelled)[kind](rng, item)
            messages = (("user", text),)
        framed.append(Row(messages, row.domain, "few-shot", "en", row.difficulty, row.stakes, _SRC))
    return framed
