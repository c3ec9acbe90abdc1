"""The C few-shot detection (classifier/_native_focus.c) gives exactly what the Python reference gives.

The shipped weights were trained on `_focus_final_item_python`, so any difference is a bug: every test
here compares the two, on real prompts, on the bench's long prompts and on generated layouts that
exercise each regex, whitespace class and slicing corner.
"""

from __future__ import annotations

import importlib.util
import json
import random
import subprocess
import sys
import time
import tracemalloc
import types
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import classifier
from bench.bench_classifier import prompts_of_length
from classifier import text as text_module
from classifier.dataset import load_rows, row_text
from classifier.text import FocusedText, _focus_final_item_python, _load_native, focus_final_item
from tests.test_classifier_text import labelled_prompt

ROOT = Path(__file__).resolve().parent.parent
ROUTERBENCH_DEV = Path("/work/shared/data/routerbench-dev.jsonl")

native_built = pytest.mark.skipif(
    focus_final_item is _focus_final_item_python, reason="classifier._native_focus is not built"
)


def assert_same(text: str) -> FocusedText:
    expected = _focus_final_item_python(text)
    got = focus_final_item(text)
    assert type(got) is FocusedText
    assert (got.text, got.examples) == (expected.text, expected.examples), repr(text[-400:])
    # The same canonical string kind (ASCII, Latin-1, UCS-2, UCS-4), which equality alone does not show.
    assert sys.getsizeof(got.text) == sys.getsizeof(expected.text)
    return got


def training_texts() -> list[str]:
    return [row_text(row) for row in load_rows(ROOT / "training_data")]


@native_built
def test_training_rows_and_the_bench_prompts() -> None:
    texts = training_texts()
    rng = random.Random(7)
    prompts = [p for length in (200, 1000, 4000, 10000) for p in prompts_of_length(texts, length, 400, rng)]
    few_shot = sum(assert_same(text).examples > 0 for text in texts + prompts)
    assert few_shot > 1000  # the frames are exercised, not only the early exits


@native_built
@pytest.mark.skipif(not ROUTERBENCH_DEV.exists(), reason="no routerbench-dev.jsonl")
def test_routerbench_dev_texts() -> None:
    with ROUTERBENCH_DEV.open() as lines:
        texts = [json.loads(line)["text"] for line in lines if line.strip()]
    assert sum(assert_same(text).examples > 0 for text in texts) > 50


@native_built
def test_the_few_shot_fixtures() -> None:
    blocks = [f"Example {n}:\nInput: {n} apples and {n} pears in a basket\nOutput: {2 * n} fruit" for n in (1, 2, 3)]
    shots = [f"Which number is {n} doubled, in the usual sense?\nA. {n}\nB. {2 * n}\nAnswer: B" for n in range(3)]
    fixtures = [
        labelled_prompt("Which gas do plants absorb?", shots=4),
        "\n\n".join([*blocks, "Example 4:\nInput: 3 cars and a bus\nOutput:"]),
        "\n\n".join(["Pick one.", *shots, "Which gas do plants absorb?\nA. O2\nB. CO2"]),
        labelled_prompt("Is 7 prime?").replace("Answer like the examples.", "Read this. " * 100),
        labelled_prompt("Which gas do plants absorb?", shots=60),
        "def f(x):\n    if x:\n        return 1\n    else:\n        return 2\n" * 10,
        "\n\n".join(f"The paragraph {n} talks about the weather at some length, as people do." for n in range(8)),
        "Notes:\n" + "a line of notes that goes on\n" * 20 + "Summary: please write one",
    ]
    # Of the 60 shots, those in the scanned end are counted.
    assert [assert_same(text).examples for text in fixtures] == [4, 3, 3, 3, 27, 0, 0, 0]


@native_built
@pytest.mark.parametrize(
    "text",
    [
        "",
        "short ask",
        "x" * 5000,
        "a\nb\nc" + "d" * 195,  # 200 characters, three newlines: past the early exit
        "a\nb\nc" + "d" * 194,  # 199: not
        "\n" * 3000,
        "\n\n" * 1500 + "\t",
        " \n" * 2000,
        ":" * 3000 + "\n\n\n",
        "\n\n\U0001f600" * 1200,
        "\n\ud800\n\n\udfff\n" * 100,
        ("Question: " + "\ud83d" * 3 + "\nAnswer: 4\n\n") * 40,
        ("\n\n  B. one\n" * 5) + "x" * 200,  # the marker is indented: find() gives -1, sliced from the end
        ("Q:\u3000x\nA:\u00a0y\n\n" * 30) + "Q: last\nA:",
        "A" * 81 + ":\n" + ("Q: x\nA: y\n" * 30),
        ("\nQuestion 1: a\nAnswer 1: b" * 200) + "\nQuestion 2: c\nAnswer 2:",
        ("Intro\n\n" + "\n\n".join(["x" * 17 + " tail\nA"] * 5)) * 3,
        ("ab\n\n\t\n\ncd\n\n\r\n\n" * 40),
        ("Q" + "x" * 80 + ":\nA: y\n\n") * 5 + "x" * 100,  # the longest label
        ("Some text\nQ" + "x" * 81 + ":\nA: y\n\n") * 5,  # one too long: a single repeated label
        ("### Q: x\n### A: y\n\n" * 5) + ("#### Q: x\n#### A: y\n\n" * 6),  # prefixes of four, and five
        ("\n\n" + "x" * 15 + "1. item\nmore\n") * 5 + "x" * 200,  # a 16-character marker
        ("\n\n" + "x" * 16 + "1. item\nmore\n") * 5 + "x" * 200,  # 17: cut to a word of letters
        ("Intro text that runs on for a while.\n\n" + "Which one?\n\t[DONE] yes\n\n" * 5) * 3,  # tab before a tail
    ],
)
def test_corner_cases(text: str) -> None:
    assert_same(text)


@native_built
def test_a_huge_text_is_read_only_at_its_end() -> None:
    end = labelled_prompt("Which gas do plants absorb?", shots=20)
    for filler in ("words and more words ", "\u00e9\u00e8 ", "\u6570\u5b57 ", "\U0001f600 "):
        assert_same(filler * 200_000 + "\n\n" + end)


@native_built
def test_str_subclasses_and_other_types() -> None:
    class Text(str):
        pass

    for value in (Text(labelled_prompt("What?")), Text("short")):
        assert focus_final_item(value) == _focus_final_item_python(value)
    for wrong in (None, b"bytes\n\n\n" * 100, 42):
        with pytest.raises(TypeError):
            focus_final_item(wrong)  # type: ignore[arg-type]


def classes_texts(char: str) -> list[str]:
    """Texts whose result depends on how `char` is classed: `\\s` and str.strip() (Unicode whitespace),
    str.isalpha(), and the ASCII-only classes of the regexes."""
    filler = "Answer in one word, as the examples do.\n"
    return [
        filler * 5 + f"Q:{char}x\nA:{char}y\n\n" * 3 + "Q: z\nA:",  # the lookahead (?=\s|$)
        filler * 5 + f"\n\n{char}B. one\n" * 4 + f"\n\n{char}",  # \s* of the block heads, and its backtracking
        filler * 5 + f"\n\nx{char} one\n" * 4,  # str.isalpha() of a marker, and [^ \n]
        f"{char}{char}Intro{char}\n" * 8 + f"\n\n{char}\nB. one\nAnswer: B\n" * 4,  # str.strip() of the preamble
        filler * 5 + f"\n{char}Label{char}:\nx\n" * 4 + "\nOther:\ny\n" * 3,  # [#*> \t] and the label class
    ]


@native_built
def test_every_character_class_agrees() -> None:
    rng = random.Random(11)
    chars = [chr(c) for c in range(0x3100)] + [chr(rng.randrange(0x3100, 0x110000)) for _ in range(3000)]
    chars += [c for c in map(chr, range(0x110000)) if c.isspace()]
    for char in chars:
        for text in classes_texts(char):
            assert_same(text)


# Pieces that make the regexes match, fail, backtrack and overlap: line-start labels (numbered, after
# markdown or quote prefixes), option letters, tags, blank lines, Unicode whitespace and letters,
# digits of other scripts, CJK, emoji and lone surrogates.
_BREAKS = ["\n", "\n", "\n\n", "\n\n\n", " ", "  ", "\t", "\r", ":", ",", "'", "-", "(", ")"]
_LABELS = ["Question:", "Answer:", "Q:", "A:", "Example 1:", "Example 12:", "Input:", "Output:", "Step 3 (final):"]
_WORDS = ["A)", "(B)", "B.", "[DONE]", ">>>", "#", "## ", "*", "> ", "x" * 17, "word", "It's", "Yes,", "ab", "1.", "2."]
_WORDS += ["I", "x" * 15, "Q" + "x" * 39, "1" * 15 + "A", "\u00c9cole:"]
_UNICODE = ["\u00a0", "\u2003", "\u3000", "\u0085", "\x1c", "\u00e9t\u00e9", "\u0661\u0662", "\uff11", "\u6570\u5b57"]
_UNICODE += ["\U0001f600", "\ud800", "\udfff"]
_PIECES = _BREAKS + _LABELS + _WORDS + _UNICODE


@native_built
@settings(max_examples=2500, deadline=None)
@given(st.lists(st.sampled_from(_PIECES), min_size=30, max_size=900))
def test_generated_layouts(pieces: list[str]) -> None:
    assert_same("".join(pieces))


_LINE = st.tuples(
    st.sampled_from(["", "", "> ", "## ", "\t", "  ", "\u00a0", "**"]),
    st.sampled_from(["", *_LABELS, *_WORDS, *_UNICODE]),
    st.sampled_from(["", " what is 2 + 2?", " 4", "\t1", " \u00e9\u6570", ": ok", "   ", "\r", " \U0001f600"]),
    st.sampled_from(["\n", "\n", "\n\n", "\n\n\n", " \n\n", "\n\u3000\n", "\n \n"]),
)


@native_built
@settings(max_examples=2500, deadline=None)
@given(
    st.lists(_LINE, min_size=1, max_size=12), st.integers(1, 120), st.lists(_LINE, max_size=8), st.text(max_size=300)
)
def test_generated_frames(
    example: list[tuple[str, ...]], repeats: int, final: list[tuple[str, ...]], intro: str
) -> None:
    # Worked examples repeat a frame, then comes the final item: up to several thousand characters, so
    # long ones are cut to the scanned end, sometimes mid-example.
    assert_same(intro + "".join(map("".join, example)) * repeats + "".join(map("".join, final)))


@native_built
def test_no_reference_leaks() -> None:
    texts = [labelled_prompt("What?"), "plain ask\n" * 50, "x" * 300, "\n\nB. a\n" * 60 + "\U0001f600"]
    for text in texts:
        before = sys.getrefcount(text), sys.getrefcount(FocusedText)
        for _ in range(1000):
            focus_final_item(text)
        assert (sys.getrefcount(text), sys.getrefcount(FocusedText)) == before
    tracemalloc.start()
    try:
        for text in texts:
            focus_final_item(text)
        start = tracemalloc.get_traced_memory()[0]
        for _ in range(5000):
            for text in texts:
                focus_final_item(text)
        assert tracemalloc.get_traced_memory()[0] - start < 10_000
    finally:
        tracemalloc.stop()


def test_the_extension_is_used_when_built() -> None:
    # A build that no longer matches text.py (constants, regexes) is not used, which would also skip the
    # comparisons above: fail instead, so the C is brought up to date.
    if importlib.util.find_spec("classifier._native_focus") is not None:
        assert focus_final_item is not _focus_final_item_python


def test_without_the_extension_the_python_implementation_is_used() -> None:
    code = (
        "import sys; sys.modules['classifier._native_focus'] = None\n"
        "from classifier import text\n"
        "assert text.focus_final_item is text._focus_final_item_python\n"
        "print(text.focus_final_item('Q: a\\nA: b\\n\\n' * 40 + 'Q: c\\nA:'))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "FocusedText(text='Q: c\\nA:', examples=40)"


def test_a_missing_or_stale_extension_is_not_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(classifier, "_native_focus", raising=False)
    monkeypatch.setitem(sys.modules, "classifier._native_focus", None)
    assert _load_native() is None
    stale = types.ModuleType("classifier._native_focus")
    for name in ("FEW_SHOT_MIN_CHARS", "PREAMBLE_CHARS", "FEW_SHOT_SCAN_CHARS", "MIN_FEW_SHOT_BLOCKS"):
        setattr(stale, name, getattr(text_module, name))
    stale.PATTERNS = (text_module._LABEL_RE.pattern, text_module._BLOCK_HEAD_RE.pattern, "")  # type: ignore[attr-defined]
    monkeypatch.setattr(classifier, "_native_focus", stale, raising=False)
    monkeypatch.setitem(sys.modules, "classifier._native_focus", stale)
    assert _load_native() is None
    stale.PATTERNS = (*stale.PATTERNS[:2], text_module._BLOCK_TAIL_RE.pattern)  # type: ignore[attr-defined]
    stale.bind = lambda cls: None  # type: ignore[attr-defined]
    stale.focus_final_item = _focus_final_item_python  # type: ignore[attr-defined]
    assert _load_native() is _focus_final_item_python  # everything matches: used
    stale.FEW_SHOT_SCAN_CHARS = 4096  # type: ignore[attr-defined]
    assert _load_native() is None


def test_a_long_final_run_of_blank_lines_is_not_a_quadratic_scan() -> None:
    # The block-head regex's greedy \s* once rescanned that run from every blank line (70 ms at 2,048
    # newlines). A scaling check, not a timing: eight times the newlines, at most ~8 times the work
    # (quadratic would be 64), best of five runs to keep the machine's noise out.
    def best_time(newlines: int) -> float:
        text = "x" * 200 + "\n" * newlines
        assert _focus_final_item_python(text) == FocusedText(text, 0)
        runs = []
        for _ in range(5):
            started = time.perf_counter()
            _focus_final_item_python(text)
            runs.append(time.perf_counter() - started)
        return min(runs)

    assert best_time(2048) < 25 * best_time(256)


@native_built
def test_bind_refuses_classes_whose_instances_need_their_own_constructor() -> None:
    from classifier import _native_focus

    class NotPlain(dict):  # type: ignore[type-arg]
        __slots__ = ("examples", "text")

    with pytest.raises(TypeError, match="direct subclass of object"):
        _native_focus.bind(NotPlain)
    assert focus_final_item("x") == FocusedText("x", 0)  # still bound to FocusedText
