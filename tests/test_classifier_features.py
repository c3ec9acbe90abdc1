"""Features: stable hashing, windowing, structure signals, robustness to any text."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from classifier.features import DENSE_FEATURE_NAMES, FeatureConfig, Featurizer
from classifier.text import CONTEXT_CHARS_PER_TURN, messages_to_text


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
    featurizer = Featurizer(FeatureConfig(buckets_log2=16, char_ngrams=(3,), word_ngrams=(1, 2)))
    indices, _ = featurizer.transform_one("ab cd")
    # " ab cd " has 7 bytes -> 5 byte trigrams; 2 words; 1 word pair.
    assert indices.shape[0] == 5 + 2 + 1


@pytest.mark.parametrize("text", ["", "   ", "\n\n\t"])
def test_empty_text_has_no_words_and_is_flagged(featurizer: Featurizer, text: str) -> None:
    indices, dense = featurizer.transform_one(text)
    values = dict(zip(DENSE_FEATURE_NAMES, dense, strict=True))
    assert values["empty"] == 1.0
    assert all(np.isfinite(dense))
    # Only the byte n-grams of the padded whitespace, no word features.
    padded = len(text) + 2
    assert indices.shape[0] == sum(max(0, padded - k + 1) for k in featurizer.config.char_ngrams)


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
