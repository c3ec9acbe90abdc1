"""Few-shot prompts are scored by their instructions and final item, not their worked examples."""

from __future__ import annotations

import random
import re
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from classifier.dataset import load_rows, row_text
from classifier.features import DENSE_FEATURE_NAMES, FeatureConfig, Featurizer
from classifier.text import PREAMBLE_CHARS, focus_final_item, messages_to_text, split_messages


def labelled_prompt(final: str, shots: int = 3) -> str:
    examples = "".join(
        f"Question: What is {n} plus {n}, written out in digits please?\nAnswer: {2 * n}\n\n" for n in range(shots)
    )
    return "Answer like the examples.\n\n" + examples + f"Question: {final}\nAnswer:"


def test_labelled_frame_keeps_instructions_and_final_item() -> None:
    focused = focus_final_item(labelled_prompt("Which gas do plants absorb?", shots=4))
    assert focused.text == "Answer like the examples.\nQuestion: Which gas do plants absorb?\nAnswer:"
    assert focused.examples == 4


def test_numbered_labels_are_one_label() -> None:
    blocks = [f"Example {n}:\nInput: {n} apples and {n} pears in a basket\nOutput: {2 * n} fruit" for n in range(1, 4)]
    focused = focus_final_item("\n\n".join([*blocks, "Example 4:\nInput: 3 cars and a bus\nOutput:"]))
    assert focused.text == "Example 4:\nInput: 3 cars and a bus\nOutput:"
    assert focused.examples == 3


def test_unlabelled_blocks_ending_in_an_answer_line() -> None:
    shots = [f"Which number is {n} doubled, in the usual sense?\nA. {n}\nB. {2 * n}\nAnswer: B" for n in range(3)]
    focused = focus_final_item("\n\n".join(["Pick one.", *shots, "Which gas do plants absorb?\nA. O2\nB. CO2"]))
    assert focused.text == "Pick one.\nWhich gas do plants absorb?\nA. O2\nB. CO2"
    assert focused.examples == 3


def test_long_instructions_are_cut() -> None:
    text = labelled_prompt("Is 7 prime?").replace("Answer like the examples.", "Read this. " * 100)
    focused = focus_final_item(text)
    assert focused.text.endswith("\nQuestion: Is 7 prime?\nAnswer:")
    assert len(focused.text) == PREAMBLE_CHARS + len("\nQuestion: Is 7 prime?\nAnswer:")


def test_ordinary_text_is_unchanged() -> None:
    code = "def f(x):\n    if x:\n        return 1\n    else:\n        return 2\n" * 10
    prose = "\n\n".join(f"The paragraph {n} talks about the weather at some length, as people do." for n in range(8))
    one_label = "Notes:\n" + "a line of notes that goes on\n" * 20 + "Summary: please write one"
    for text in (code, prose, one_label, "short ask", ""):
        assert focus_final_item(text).text == text
        assert focus_final_item(text).examples == 0


def test_features_ignore_the_worked_examples() -> None:
    featurizer = Featurizer(FeatureConfig(buckets_log2=16))
    few_shot = labelled_prompt("Which gas do plants absorb?", shots=5)
    other_examples = few_shot.replace("plus", "minus")
    a, dense_a = featurizer.transform_one(few_shot)
    b, _ = featurizer.transform_one(other_examples)
    assert a.tolist() == b.tolist()
    assert dense_a[DENSE_FEATURE_NAMES.index("few_shot_examples")] == np.log1p(5)
    # The batch path focuses the same way.
    indices, owner, dense = featurizer.transform_batch([few_shot, "plain ask"])
    assert sorted(indices[owner == 0].tolist()) == sorted(a.tolist())
    assert np.allclose(dense[0], dense_a)


def test_fill_in_the_blank_slots_are_counted_but_identifiers_are_not() -> None:
    featurizer = Featurizer(FeatureConfig(buckets_log2=16))
    blanks = DENSE_FEATURE_NAMES.index("blanks")
    assert featurizer.transform_one("Ann thanked Bo because _ had helped.")[1][blanks] == np.log1p(1)
    assert featurizer.transform_one("def __init__(self, my_name): pass")[1][blanks] == 0.0


def test_only_the_end_is_searched_but_the_instructions_are_kept() -> None:
    text = labelled_prompt("Which gas do plants absorb?", shots=60)
    focused = focus_final_item(text)
    assert focused.text == text[:PREAMBLE_CHARS] + "\nQuestion: Which gas do plants absorb?\nAnswer:"
    assert focused.text.startswith("Answer like the examples.")
    assert 0 < focused.examples < 60


# The detection as first written (revision 2): Counter, a regex substitution and a full newline count.
# The optimised `focus_final_item` must agree with it exactly, since the shipped weights were trained
# on its output.
_REF_LABEL_RE = re.compile(r"\n[#*> \t]{0,4}+([A-Z][A-Za-z0-9 ,'_()-]{0,80}+:)(?=\s|$)")
_REF_BLOCK_HEAD_RE = re.compile(r"\n\n\s*([^ \n]{1,16})")
_REF_BLOCK_TAIL_RE = re.compile(r"\n[ \t]*+((?>[^ \n]{1,16}))[^\n]*+(?=\n\n)")


def reference_focus(text: str) -> tuple[str, int]:
    if len(text) < 200 or text.count("\n") < 3:
        return text, 0
    offset = max(len(text) - 2048, 0)
    region = text[offset:]
    found = (_reference_labels(region, offset > 0) if region.count(":") >= 4 else None) or (
        _reference_blocks(region) if region.count("\n\n") >= 2 else None
    )
    if found is None:
        return text, 0
    preamble = text[: found[0] + offset].strip()
    final = text[found[1] + offset :]
    return (preamble[:PREAMBLE_CHARS] + "\n" + final if preamble else final), found[2]


def _reference_labels(text: str, cut: bool) -> tuple[int, int, int] | None:
    lined = "\n" + text
    raw = _REF_LABEL_RE.findall(lined)
    folded = [re.sub("[0-9]", "#", label) for label in raw]
    counts = Counter(folded)
    repeated = [label for label, count in counts.items() if count >= 2]
    if len(raw) < 4 or len(repeated) < 2:
        return None
    last_of = {label: max(i for i, f in enumerate(folded) if f == label) for label in repeated}
    opener = min(repeated, key=last_of.__getitem__) if cut else repeated[0]
    first_raw = raw[folded.index(opener)]
    last_raw = raw[last_of[opener]]
    first, last = lined.find("\n" + first_raw), lined.rfind("\n" + last_raw)
    if first < 0 or last < 0:
        first, last = lined.find(first_raw) - 1, lined.rfind(last_raw) - 1
    return max(first, 0), max(last, 0), counts[opener] - 1


def _reference_blocks(text: str) -> tuple[int, int, int] | None:
    padded = "\n\n" + text + "\n\n"
    for pattern in (_REF_BLOCK_HEAD_RE, _REF_BLOCK_TAIL_RE):
        counts = Counter(pattern.findall(padded))
        markers = [
            w
            for w, c in counts.items()
            if c >= 3 and not (w.isalpha() and len(w) > 1) and "'" not in w and not w.endswith(",")
        ]
        if not markers:
            continue
        marker = max(markers, key=counts.__getitem__)
        count = counts[marker]
        if pattern is _REF_BLOCK_HEAD_RE:
            return padded.find("\n\n" + marker), padded.rfind("\n\n" + marker), count - 1
        first_line, last_line = padded.find("\n" + marker), padded.rfind("\n" + marker)
        first = max(padded.rfind("\n\n", 0, first_line), 0)
        after = padded.find("\n\n", last_line)
        if after >= len(padded) - 2:
            return first, max(padded.rfind("\n\n", 0, last_line), 0), count - 1
        return first, after, count
    return None


def long_prompts(texts: list[str], rng: random.Random, count: int) -> list[str]:
    """Seed texts joined by blank lines (as in bench/bench_classifier.py), 200 to 9,000 characters."""
    prompts = []
    for _ in range(count):
        length = rng.choice((250, 1000, 2500, 4000, 9000))
        parts: list[str] = []
        while sum(map(len, parts)) < length:
            parts.append(rng.choice(texts))
        prompts.append("\n\n".join(parts)[:length])
    return prompts


def seed_texts() -> list[str]:
    return [row_text(row) for row in load_rows(SEED_DATA)]


SEED_DATA = Path(__file__).resolve().parent.parent / "training_data" / "seed.jsonl"


def test_focus_equals_the_reference_on_seed_and_long_prompts() -> None:
    texts = seed_texts()
    prompts = texts + long_prompts(texts, random.Random(3), 1500)
    assert sum(focus_final_item(p).examples > 0 for p in prompts) > 100  # the frames are exercised
    for prompt in prompts:
        focused = focus_final_item(prompt)
        assert (focused.text, focused.examples) == reference_focus(prompt)


_PIECES = ["\n", "\n\n", " ", "\t", "\r", "\xa0", "A", "ab", "Answer:", "Q:", "B.", "1", ":", "Example 1:", "'", ","]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(_PIECES), min_size=40, max_size=400))
def test_focus_equals_the_reference_on_odd_layouts(pieces: list[str]) -> None:
    text = "".join(pieces)
    focused = focus_final_item(text)
    assert (focused.text, focused.examples) == reference_focus(text)


# Framed lines: labels (numbered, after markdown or quote prefixes), option letters, long and
# non-Latin words, odd whitespace, blank lines; repeated, as worked examples are, and then followed by
# a final item, up to several thousand characters so long texts are cut to the scanned end.
_LINE_STARTS = ["", "", "> ", "## ", "\t", "  ", "\xa0"]
_LINE_HEADS = ["Question:", "Answer:", "Q:", "A:", "Example 1:", "Example 12:", "Input:", "Output:", "Answer 3:"]
_LINE_HEADS += ["B.", "(A)", "I", "Is", "", "x" * 17, "数字", "It's", "Yes,", "[DONE]", ">>>"]
_LINE_RESTS = ["", " what is 2 + 2?", " 4", "\t1", " é数", ": ok", " " * 3, "\r"]
_LINE_ENDS = ["\n", "\n", "\n\n", "\n\n\n", " \n\n", "\n\u3000\n"]
_framed_lines = st.lists(
    st.tuples(*(st.sampled_from(parts) for parts in (_LINE_STARTS, _LINE_HEADS, _LINE_RESTS, _LINE_ENDS))),
    max_size=30,
)


@settings(max_examples=400, deadline=None)
@given(_framed_lines, st.integers(1, 200), _framed_lines)
def test_focus_equals_the_reference_on_framed_lines(
    example: list[tuple[str, str, str, str]], repeats: int, final: list[tuple[str, str, str, str]]
) -> None:
    text = "".join(map("".join, example)) * repeats + "".join(map("".join, final))
    focused = focus_final_item(text)
    assert (focused.text, focused.examples) == reference_focus(text)


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(["user", "assistant", "system", None]),
    st.one_of(
        st.none(), st.text(max_size=50), st.lists(st.fixed_dictionaries({"type": st.just("text"), "text": st.text()}))
    ),
)
def test_a_single_message_is_the_ask(role: str | None, content: Any) -> None:
    message = {"role": role, "content": content}
    ask, context = split_messages([message])
    assert context == ""
    assert messages_to_text([message]) == ask
