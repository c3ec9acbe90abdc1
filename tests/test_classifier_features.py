"""Features: stable hashing, windowing, structure signals, robustness to any text."""

from __future__ import annotations

import itertools
import math
import random
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from classifier import artifacts
from classifier.dataset import load_rows, row_text
from classifier.features import DENSE_FEATURE_NAMES, NATIVE_AVAILABLE, FeatureConfig, Featurizer
from classifier.lexicon import LEXICON
from classifier.scorer import QueryScorer
from classifier.text import CONTEXT_CHARS_PER_TURN, focus_final_item, messages_to_text
from tests.test_classifier_text import long_prompts


@pytest.fixture(scope="module")
def featurizer() -> Featurizer:
    return Featurizer(FeatureConfig(buckets_log2=16))


def dense_of(featurizer: Featurizer, text: str) -> dict[str, float]:
    return dict(zip(DENSE_FEATURE_NAMES, featurizer.transform_one(text)[1], strict=True))


def test_indices_are_stable_across_processes(featurizer: Featurizer) -> None:
    # Python's hash() is salted per process; the features must not be.
    code = (
        "from classifier.features import FeatureConfig, Featurizer;"
        "print(Featurizer(FeatureConfig(buckets_log2=16)).transform_one('Prove that 2 is prime')[0].tolist())"
    )
    outputs = {
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
        for _ in range(2)
    }
    assert len(outputs) == 1
    assert outputs.pop().strip() == str(featurizer.transform_one("Prove that 2 is prime")[0].tolist())


def test_indices_are_within_the_bucket_range(featurizer: Featurizer) -> None:
    indices, _ = featurizer.transform_one("Some text with ünïcödé, 数字 and code: def f(x): return x**2")
    assert indices.shape[0] > 0
    assert indices.min() >= 0
    assert indices.max() < featurizer.config.n_buckets


def test_a_word_gets_the_same_bucket_wherever_it_occurs(featurizer: Featurizer) -> None:
    alone, _ = featurizer.transform_one("mortgage")
    in_sentence, _ = featurizer.transform_one("what is a reverse mortgage exactly?")
    # Every n-gram of the padded word " mortgage " also occurs in the sentence (position-free hashing).
    assert set(alone.tolist()) <= set(in_sentence.tolist())


def test_case_does_not_change_the_features(featurizer: Featurizer) -> None:
    lower, _ = featurizer.transform_one("is this safe")
    upper, _ = featurizer.transform_one("IS THIS SAFE")
    assert lower.tolist() == upper.tolist()


def test_counts_n_grams_as_configured() -> None:
    always = Featurizer(FeatureConfig(buckets_log2=16, char_ngrams=(3,), word_ngrams=(1, 2), char_min_non_ascii=0.0))
    indices, _ = always.transform_one("ab cd")
    # " ab cd " has 7 bytes -> 5 byte trigrams; 2 words; 1 word pair.
    assert indices.shape[0] == 5 + 2 + 1


def test_byte_n_grams_only_for_mostly_non_ascii_text() -> None:
    featurizer = Featurizer(
        FeatureConfig(buckets_log2=16, char_ngrams=(3,), word_ngrams=(1, 2), char_min_non_ascii=0.5)
    )
    # ASCII text: the 2 words and 1 word pair only.
    assert featurizer.transform_one("ab cd")[0].shape[0] == 2 + 1
    # One accented letter in 6 bytes is below half: still words only.
    assert featurizer.transform_one("ab cé")[0].shape[0] == 2 + 1
    # " 税金 申告 " is 15 bytes, 12 of them non-ASCII: 13 byte trigrams, 2 words, 1 pair.
    assert featurizer.transform_one("税金 申告")[0].shape[0] == 13 + 2 + 1


@pytest.mark.parametrize("text", ["", "   ", "\n\n\t"])
def test_empty_text_has_no_words_and_is_flagged(featurizer: Featurizer, text: str) -> None:
    indices, dense = featurizer.transform_one(text)
    values = dict(zip(DENSE_FEATURE_NAMES, dense, strict=True))
    assert values["empty"] == 1.0
    assert all(np.isfinite(dense))
    # No word features, and no byte n-grams either: whitespace is ASCII.
    assert indices.shape[0] == 0


def test_long_text_reads_only_the_head_and_tail_window() -> None:
    featurizer = Featurizer(FeatureConfig(buckets_log2=16, head_chars=100, tail_chars=200))
    middle_a = "alpha " * 2000
    middle_b = "omega " * 2000
    head, tail = "Q" * 100, "the actual question: is it safe?".rjust(200)
    a, dense_a = featurizer.transform_one(head + middle_a + tail)
    b, _ = featurizer.transform_one(head + middle_b + tail)
    assert a.tolist() == b.tolist()
    assert featurizer.window(head + middle_a + tail) == head + "\n" + tail
    # The length signal still sees the whole prompt.
    assert dense_a[DENSE_FEATURE_NAMES.index("log_chars")] == pytest.approx(np.log1p(len(head + middle_a + tail)))


def test_structure_signals(featurizer: Featurizer) -> None:
    code = dense_of(featurizer, "```python\ndef f(x):\n    return {x: [x]}\n```")
    prose = dense_of(featurizer, "tell me about the weather in spring")
    assert code["code_symbols"] > prose["code_symbols"]
    assert code["lexicon_code"] > prose["lexicon_code"]

    maths = dense_of(featurizer, "Solve 3x^2 + 2x - 7 = 0 and prove the roots are real")
    assert maths["math_symbols"] > 0 and maths["digits"] > 0 and maths["lexicon_math"] > 0

    multi = dense_of(featurizer, "Please:\n1. list the risks\n2. compare options\n3) recommend one?")
    assert multi["list_items"] == pytest.approx(np.log1p(3))
    assert multi["questions"] == pytest.approx(np.log1p(1))

    choice = dense_of(featurizer, "Which is a mammal?\nA) shark\nB) whale\nC) trout\nAnswer:")
    assert choice["choices"] == pytest.approx(np.log1p(3))


def test_lexicon_matches_whole_words_and_phrases(featurizer: Featurizer) -> None:
    assert dense_of(featurizer, "I have chest pain")["lexicon_stakes"] == pytest.approx(np.log1p(1))
    assert dense_of(featurizer, "what dose, and is the Dosage right?")["lexicon_stakes"] == pytest.approx(np.log1p(2))
    assert dense_of(featurizer, "doses of fun at the taxidermist")["lexicon_stakes"] == 0.0


def test_non_english_text(featurizer: Featurizer) -> None:
    values = dense_of(featurizer, "税金の申告方法を教えてください")
    assert values["non_ascii_share"] > 0.9
    indices, _ = featurizer.transform_one("税金の申告方法を教えてください")
    assert indices.shape[0] > 10


def test_messages_to_text_keeps_the_last_user_turn_whole_and_context_short() -> None:
    long_answer = "x" * 5000
    messages = [
        {"role": "system", "content": "You are a tax assistant."},
        {"role": "user", "content": "How are capital gains taxed?"},
        {"role": "assistant", "content": long_answer},
        {"role": "user", "content": "and for 2024?"},
    ]
    text = messages_to_text(messages)
    assert text.endswith("and for 2024?")
    assert "How are capital gains taxed?" in text
    assert "x" * CONTEXT_CHARS_PER_TURN in text and "x" * (CONTEXT_CHARS_PER_TURN + 1) not in text


def test_messages_to_text_reads_content_parts_and_odd_shapes() -> None:
    parts = [{"role": "user", "content": [{"type": "text", "text": "hello"}, {"type": "image_url"}]}]
    assert messages_to_text(parts) == "hello"
    assert messages_to_text([]) == ""
    assert messages_to_text([{"role": "assistant", "content": None}]) == ""


def test_byte_counts(featurizer: Featurizer) -> None:
    values = dense_of(featurizer, "x = {a; b} + 12?\n\nwhy? é")
    assert values["log_lines"] == pytest.approx(np.log1p(2))
    assert values["questions"] == pytest.approx(np.log1p(2))
    assert values["digits"] == pytest.approx(np.log1p(2))
    assert values["math_symbols"] == pytest.approx(np.log1p(2))  # = +
    assert values["code_symbols"] == pytest.approx(np.log1p(3))  # { ; }


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(max_size=300), min_size=1, max_size=8))
def test_batch_features_equal_single_features(texts: list[str]) -> None:
    featurizer = Featurizer(FeatureConfig(buckets_log2=12, head_chars=50, tail_chars=80))
    indices, owner, dense = featurizer.transform_batch(texts)
    for row, text in enumerate(texts):
        single_indices, single_dense = featurizer.transform_one(text)
        assert sorted(indices[owner == row].tolist()) == sorted(single_indices.tolist())
        assert dense[row] == pytest.approx(np.array(single_dense))


# A straightforward reference of the features, byte by byte in plain Python: the optimised numpy code
# must give the shipped weights exactly the features they were trained on (same buckets in the same
# order, same dense signals), hence the same scores.
_M64 = (1 << 64) - 1
_REF_BASE, _REF_MIX, _REF_PAIR = 0x100000001B3, 0x9E3779B97F4A7C15, 0xD6E8FEB86659FD93
_REF_SALT_CHAR, _REF_SALT_WORD = 0x51ED270B27D3A1C5, 0x2545F4914F6CDD1D
_REF_SEPARATORS = frozenset(b" \t\n\r\x0b\x0c!\"#$%&'()*+,-./:;<=>?@[\\]^`{|}~")
_REF_CLASSES = (b"\n", bytes(range(128, 256)), b"0123456789", b"=+*/^<>%", b"{};`_[]#|\\", b"?")
_REF_LINE_START = re.compile(r"\n[ \t]*(?:(\d{1,2}[.)]|[-*•])|([A-Ea-e][).:]))[ \t]")


def _ref_hash(segment: bytes) -> int:
    value, power = 0, 1
    for byte in segment:
        value = (value + (byte + 1) * power) & _M64
        power = (power * _REF_BASE) & _M64
    return value


def _ref_words(encoded: bytes) -> list[bytes]:
    words, current = [], bytearray()
    for byte in encoded:
        if byte in _REF_SEPARATORS:
            if current:
                words.append(bytes(current))
            current = bytearray()
        else:
            current.append(byte)
    return words  # the padding ends every word


def _ref_word_hashes(config: FeatureConfig, encoded: bytes) -> list[int]:
    words = [_ref_hash(word) for word in _ref_words(encoded)]
    hashes = [word ^ (_REF_SALT_WORD + 1) for word in words] if 1 in config.word_ngrams else []
    if 2 in config.word_ngrams:
        hashes += [((a * _REF_PAIR + b) & _M64) ^ (_REF_SALT_WORD + 2) for a, b in itertools.pairwise(words)]
    return hashes


def reference_features(config: FeatureConfig, text: str) -> tuple[list[int], list[float]]:
    def bucket(value: int) -> int:
        return ((value * _REF_MIX) & _M64) >> (64 - config.buckets_log2)

    focused = focus_final_item(text)  # checked against its own reference in test_classifier_text.py
    window = focused.text
    if len(window) > config.head_chars + config.tail_chars:
        window = window[: config.head_chars] + "\n" + window[-config.tail_chars :]
    lower = bytes.maketrans(bytes(range(65, 91)), bytes(range(97, 123)))
    encoded = (" " + window + " ").encode("utf-8").translate(lower)
    classes = [sum(byte in members for byte in encoded) for members in _REF_CLASSES]
    n_bytes = len(encoded) - 2
    # Byte n-grams only for texts mostly outside ASCII (or always, with a threshold of 0).
    with_chars = classes[1] >= config.char_min_non_ascii * n_bytes
    indices = [
        bucket(_ref_hash(encoded[i : i + n]) ^ (_REF_SALT_CHAR + n))
        for n in (config.char_ngrams if with_chars else ())
        for i in range(len(encoded) - n + 1)
    ]
    word_indices = [bucket(value) for value in _ref_word_hashes(config, encoded)]
    category: dict[int, int] = {}
    for number, name in enumerate(LEXICON, start=1):
        for entry in LEXICON[name]:
            entry_bytes = (" " + entry + " ").encode("utf-8").translate(lower)
            n_words = len(_ref_words(entry_bytes))
            if n_words in (1, 2) and n_words in config.word_ngrams:
                category[bucket(_ref_word_hashes(FeatureConfig(word_ngrams=(n_words,)), entry_bytes)[0])] = number
    lexicon_counts = [0] * len(LEXICON)
    for index in word_indices:
        if index in category:
            lexicon_counts[category[index] - 1] += 1
    line_starts = _REF_LINE_START.findall(window)
    blanks = sum(encoded.count(blank) for blank in (b" _ ", b" _.", b" _,", b" _?", b" _'", b" _\n"))
    dense = [
        len(focused.text),
        classes[0],
        *classes[2:6],
        sum(1 for item, _ in line_starts if item),
        sum(1 for item, choice in line_starts if choice and not item),
        focused.examples,
        blanks,
        *lexicon_counts,
    ]
    logged = [math.log1p(count) for count in dense]
    flags = [0.0 if _ref_words(encoded) else 1.0, classes[1] / n_bytes if n_bytes else 0.0]
    return indices + word_indices, [*logged[:2], *flags, *logged[2:]]


def reference_probabilities(scorer: QueryScorer, text: str, single: bool) -> tuple[float, float]:
    """Both calibrated scores from the saved arrays and the reference features, in plain formulas.

    The hashed weights are summed as the scorer sums them, which decides the rounding (about 1e-6
    apart): one query in float32 on the numpy path (a matrix product), in float64 in the C extension
    and for a batch (bincount); `single` is the float32 sum.
    """
    indices, dense = reference_features(scorer.feature_config(), text)
    arrays = scorer.arrays()
    standardised = (np.clip(dense, arrays["dense_low"], arrays["dense_high"]) - arrays["dense_mean"]) / arrays[
        "dense_scale"
    ]
    logits = arrays["intercept"] + standardised @ arrays["dense_weights"]
    if indices:
        gathered = arrays["hashed_weights"][indices]
        if single:
            summed = (np.ones(len(indices), dtype=np.float32) @ gathered).astype(np.float64)
        else:
            summed = gathered.astype(np.float64).sum(axis=0)
        logits = logits + summed / math.sqrt(len(indices))
    difficulty, stakes = scorer.platt_
    return difficulty.apply_one(float(logits[0])), stakes.apply_one(float(logits[1]))


SEED_DIR = Path(__file__).resolve().parent.parent / "classifier" / "artifacts" / "seed"
SEED_ROWS = Path(__file__).resolve().parent.parent / "training_data" / "seed.jsonl"


@pytest.mark.parametrize(
    "config",
    [
        FeatureConfig(),
        FeatureConfig(buckets_log2=12, char_ngrams=(3, 5), word_ngrams=(2,), head_chars=40, char_min_non_ascii=0.0),
        FeatureConfig(buckets_log2=12, char_ngrams=(4,), char_min_non_ascii=0.01),
    ],
)
def test_features_equal_the_reference(config: FeatureConfig) -> None:
    featurizer = Featurizer(config)
    texts = [row_text(row) for row in load_rows(SEED_ROWS)][::4]
    odd = [
        "",
        " ",
        "_",
        "a _ b",
        "1. x\n2) y\n A) z\n- w",
        "é" * 700,
        "Café au lait, s'il vous plaît: où?",
        "Ünïcödé 数字\n\n?" * 40,
    ]
    for text in texts + long_prompts(texts, random.Random(5), 60) + odd:
        indices, dense = featurizer.transform_one(text)
        assert (indices.tolist(), dense) == reference_features(config, text)


_ANY_TEXT = st.lists(
    st.one_of(
        st.text(st.characters(blacklist_categories=("Cs",)), max_size=30),
        st.sampled_from(["\n", "\n\n", " ", "_", " _ ", "é", "数字", "1. ", "\nA) ", "Q: x\nA: y\n\n", "\x00", "?"]),
    ),
    max_size=60,
).map("".join)


@settings(max_examples=100, deadline=None)
@given(_ANY_TEXT)
def test_features_equal_the_reference_on_any_text(text: str) -> None:
    for config in (
        FeatureConfig(buckets_log2=12),
        FeatureConfig(buckets_log2=12, char_ngrams=(2, 4), word_ngrams=(1,), char_min_non_ascii=0.0),
        FeatureConfig(buckets_log2=12, word_ngrams=(2,), head_chars=30, tail_chars=40, char_min_non_ascii=0.3),
    ):
        indices, dense = Featurizer(config).transform_one(text)
        assert (indices.tolist(), dense) == reference_features(config, text)


def test_shipped_scores_equal_the_reference() -> None:
    scorer = artifacts.load(SEED_DIR).scorer
    texts = [row_text(row) for row in load_rows(SEED_ROWS)]
    prompts = texts[::3] + long_prompts(texts, random.Random(7), 150)
    for native in {scorer.native, False}:  # the C extension's path when it is built, and numpy's
        scorer.set_native(native)
        single = np.array([[s.difficulty, s.stakes] for s in map(scorer.score_text, prompts)])
        expected_single = np.array([reference_probabilities(scorer, text, single=not native) for text in prompts])
        assert np.abs(single - expected_single).max() < 1e-9
    expected_batch = np.array([reference_probabilities(scorer, text, single=False) for text in prompts])
    for native in (False, True) if NATIVE_AVAILABLE else (False,):  # batches: per text in C, or numpy's
        scorer.set_native(native)
        assert np.abs(scorer.predict_proba(prompts) - expected_batch).max() < 1e-9


def test_config_round_trips_and_older_versions_hash_byte_n_grams_always() -> None:
    config = FeatureConfig(char_min_non_ascii=0.25)
    assert FeatureConfig.from_json(config.to_json()) == config
    older = config.to_json()
    del older["char_min_non_ascii"]  # versions saved before the setting existed
    assert FeatureConfig.from_json(older).char_min_non_ascii == 0.0
