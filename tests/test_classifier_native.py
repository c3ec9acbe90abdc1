"""The C extension of the single-query path (classifier/_native_features.c) against the numpy reference:
identical buckets and dense signals, logits within float rounding, and the numpy fallback."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from classifier import byte_tables, features
from classifier.booster import fit_booster
from classifier.dataset import load_rows, row_text
from classifier.features import FeatureConfig, Featurizer
from classifier.fitting import feature_matrix
from classifier.registry import load_model
from classifier.scorer import QueryScorer
from classifier.text import focus_final_item

if TYPE_CHECKING:
    from classifier._native_features import NativeFeatures

pytest.importorskip("classifier._native_features", reason="the C extension is not built (setup.py build_ext)")

TRAINING_DATA = Path("training_data")
FIXTURE = Path(__file__).parent / "fixtures" / "classifier_rows.jsonl"
DEV_TEXTS = Path("/work/shared/data/routerbench-dev.jsonl")
# Hashed weights are summed in double in C and in float32 by numpy's BLAS: the logits differ by ~1e-6,
# relatively more for thousands of repeated n-grams. Summed in double too, only the order differs.
NUMPY_TOLERANCE = {"rtol": 2e-6, "atol": 1e-5}
DOUBLE_TOLERANCE = {"rtol": 1e-12, "atol": 1e-10}

# Pieces that exercise every rule: list items and option letters at line starts (and near misses),
# blanks, byte classes, Unicode digits (Nd, which \d matches) and non-decimal digits (which it does not),
# multi-byte text for the byte n-grams, and separators.
FRAGMENTS = [
    "\n",
    "\n1. ",
    "\n0) ",
    "\n10. ",
    "\n12) ",
    "\n123. ",
    "\n 7.\t",
    "\n\t\t-  ",
    "\n* ",
    "\n*x",
    "\n• ",
    "\n•x",
    "\n a) ",
    "\nB: ",
    "\nE. ",
    "\nF) ",
    "\nc)",
    "\n١. ",  # ARABIC-INDIC DIGIT ONE
    "\n٢٣) ",
    "\n𝟙. ",  # MATHEMATICAL DOUBLE-STRUCK DIGIT ONE: four UTF-8 bytes
    "\n². ",  # SUPERSCRIPT TWO: a digit, but not a decimal one
    " _ ",
    " _ _ ",
    " _.",
    " _,",
    " _?",
    " _'",
    " _\n",
    "__init__",
    "snake_case",
    "?",
    "{x: [y]}",
    "a = b * c / d ^ e < f > g % h",
    "Prove that 2 is prime",
    "THE Quick Brown",
    "日本語のテキストです",
    "Ünïcödé",
    "😀",
    "👩‍👩‍👧",
    "\t",
    "\r\n",
    "\x00",
    "\x7f",
    "  ",
]
texts_strategy = st.lists(
    st.one_of(st.sampled_from(FRAGMENTS), st.text(st.characters(exclude_categories=("Cs",)), max_size=12)),
    max_size=40,
).map("".join)


def native_transform(featurizer: Featurizer, text: str) -> tuple[np.ndarray, list[float]]:
    """transform_one's result from the C extension."""
    native = native_of(featurizer)
    focused = focus_final_item(text)
    buckets, dense = native.indices(featurizer.crop(focused.text), len(focused.text), focused.examples)
    return np.frombuffer(buckets, dtype=np.int64), dense


_NATIVE: dict[int, NativeFeatures] = {}


def native_of(featurizer: Featurizer) -> NativeFeatures:
    """The featurizer's C implementation, made once per featurizer (the featurizers are cached)."""
    if id(featurizer) not in _NATIVE:
        native = featurizer.native_features()
        assert native is not None
        _NATIVE[id(featurizer)] = native
    return _NATIVE[id(featurizer)]


def assert_same_features(featurizer: Featurizer, text: str) -> None:
    indices, dense = featurizer.transform_one(text)
    native_indices, native_dense = native_transform(featurizer, text)
    np.testing.assert_array_equal(native_indices, indices, err_msg=repr(text[:200]))
    assert native_dense == dense, repr(text[:200])


def logits_in_double(scorer: QueryScorer, text: str) -> tuple[float, float]:
    """logits_one's numpy path with the hashed rows summed in double, as the C extension sums them."""
    assert scorer.booster_ is None
    indices, dense = scorer.featurizer_.transform_one(text)
    clipped = np.clip(dense, scorer.dense_low_, scorer.dense_high_)
    z = scorer._bias + clipped @ scorer._dense_effective
    if indices.shape[0]:
        z += scorer.hashed_weights_[indices].astype(np.float64).sum(axis=0) / np.sqrt(indices.shape[0])
    return float(z[0]), float(z[1])


@cache
def training_texts() -> list[str]:
    return [row_text(row) for row in load_rows(TRAINING_DATA)]


@cache
def dev_texts() -> list[str]:
    if not DEV_TEXTS.exists():
        return []
    with DEV_TEXTS.open(encoding="utf-8") as lines:
        return [json.loads(line)["text"] for line in lines if line.strip()]


@cache
def featurizers() -> tuple[Featurizer, ...]:
    """The default settings, and others that hash byte n-grams of every text and crop short windows."""
    return (
        Featurizer(FeatureConfig(), native=True),
        Featurizer(
            FeatureConfig(buckets_log2=10, char_ngrams=(2, 5), word_ngrams=(2,), head_chars=20, tail_chars=30),
            native=True,
        ),
        Featurizer(FeatureConfig(char_ngrams=(1, 3), word_ngrams=(1,), char_min_non_ascii=0), native=True),
        Featurizer(FeatureConfig(buckets_log2=20, char_ngrams=(), char_min_non_ascii=0.1), native=True),
    )


@cache
def seed_scorer() -> QueryScorer:
    scorer = load_model(None).scorer
    assert scorer.native
    return scorer


@cache
def small_scorers() -> tuple[QueryScorer, QueryScorer]:
    """A small model fitted on the fixture rows, and the same with a booster over dense signals."""
    rows = load_rows(FIXTURE)
    texts = [row_text(row) for row in rows]
    base = QueryScorer(buckets_log2=12, char_min_non_ascii=0.2, calibration_folds=2).fit(
        texts, [row["difficulty"] for row in rows], [row["stakes"] for row in rows]
    )
    _, dense = feature_matrix(base.featurizer_, texts)
    platt = base.platt_[0]
    offset = platt.a * base.decision_function(texts)[:, 0] + platt.b
    labels = (dense[:, 0] > np.median(dense[:, 0])).astype(np.float64)
    columns = np.column_stack([offset, np.clip(dense, base.dense_low_, base.dense_high_)])
    booster = fit_booster(columns, offset, labels, np.ones_like(labels), trees=20, min_leaf=5)
    return base, base.with_booster(booster)


def test_every_training_row_gets_the_same_buckets_and_dense_signals() -> None:
    texts = training_texts()
    assert len(texts) > 1000
    for featurizer in featurizers():
        for text in texts:
            assert_same_features(featurizer, text)


def test_dev_texts_get_the_same_buckets_and_dense_signals() -> None:
    texts = dev_texts()
    if not texts:
        pytest.skip(f"{DEV_TEXTS} is absent")
    for featurizer in featurizers():
        for text in texts:
            assert_same_features(featurizer, text)


@settings(max_examples=400, deadline=None)
@given(texts_strategy)
def test_any_text_gets_the_same_buckets_and_dense_signals(text: str) -> None:
    for featurizer in featurizers():
        assert_same_features(featurizer, text)


@settings(max_examples=50, deadline=None)
@given(texts_strategy, st.integers(min_value=1, max_value=300))
def test_long_texts_get_the_same_buckets_and_dense_signals(text: str, repeats: int) -> None:
    for featurizer in featurizers():
        assert_same_features(featurizer, (text + "\n") * repeats)


def test_structure_signals_count_what_they_should() -> None:
    # A direct check, in case both implementations were wrong in the same way.
    featurizer = featurizers()[0]
    text = "Pick one:\nA) x\nb. y\n1. z\n10) w\n123. v\n١. u\n². t\n• s\n- r\nF) q\nFill _ and _ _ in."
    _, dense = native_transform(featurizer, text)
    names = dict(zip(features.DENSE_FEATURE_NAMES, dense, strict=True))
    assert np.expm1(names["choices"]) == pytest.approx(2)
    assert np.expm1(names["list_items"]) == pytest.approx(5)
    assert np.expm1(names["blanks"]) == pytest.approx(2)


def test_every_character_is_a_digit_or_not_as_the_regex_says() -> None:
    # \d in a str regex is any Unicode decimal digit: one, two, and a digit after a non-digit, for every
    # character but the surrogates, a chunk of characters per window.
    featurizer = featurizers()[0]
    native = native_of(featurizer)
    characters = [chr(code) for code in range(0x110000) if not 0xD800 <= code <= 0xDFFF]
    for start in range(0, len(characters), 40):
        window = "".join(f"\n{c}. x\n{c}{c}) y\n1{c}. z" for c in characters[start : start + 40])
        items, choices = byte_tables.line_starts(window)
        dense = native.indices(window, 0, 0)[1]
        assert (dense[8], dense[9]) == (math.log1p(items), math.log1p(choices)), characters[start : start + 40]


def test_a_lone_surrogate_raises_what_encoding_raises() -> None:
    native = native_of(featurizers()[0])
    with pytest.raises(UnicodeEncodeError) as expected:
        ("x\ud800y").encode("utf-8")
    with pytest.raises(UnicodeEncodeError) as raised:
        native.indices("x\ud800y", 3, 0)
    assert str(raised.value) == str(expected.value)
    scorer = seed_scorer()
    try:
        for use_native in (True, False):
            scorer.set_native(use_native)
            with pytest.raises(UnicodeEncodeError):
                scorer.logits_one("x\ud800y")
    finally:
        scorer.set_native(True)


def test_seed_model_logits_agree_with_numpy() -> None:
    scorer = seed_scorer()
    texts = [*training_texts(), *dev_texts(), "", " ", "😀" * 5000, "word " * 3000]
    native = np.array([scorer.logits_one(text) for text in texts])
    numpy = np.array([scorer._logits_one_numpy(text) for text in texts])
    np.testing.assert_allclose(native, numpy, **NUMPY_TOLERANCE)
    assert not np.array_equal(native, numpy)  # the C path really ran (its double sums round differently)
    double = np.array([logits_in_double(scorer, text) for text in texts])
    np.testing.assert_allclose(native, double, **DOUBLE_TOLERANCE)


def test_small_model_and_booster_logits_agree_with_numpy() -> None:
    probe = [*training_texts()[::25], "", "word " * 3000, "A) yes\nB) no\nC) maybe\n" * 30, "日本語" * 50]
    for scorer in small_scorers():
        assert scorer.native
        native = np.array([scorer.logits_one(text) for text in probe])
        numpy = np.array([scorer._logits_one_numpy(text) for text in probe])
        np.testing.assert_allclose(native, numpy, **NUMPY_TOLERANCE)
        assert np.array_equal(native, scorer.decision_function(probe))  # batches go through logits_one too
        scorer.set_native(False)
        np.testing.assert_allclose(native, scorer.decision_function(probe), **NUMPY_TOLERANCE)  # numpy's batch
        scorer.set_native(True)
        if scorer.booster_ is None:
            double = np.array([logits_in_double(scorer, text) for text in probe])
            np.testing.assert_allclose(native, double, **DOUBLE_TOLERANCE)


def test_switched_off_the_scores_are_the_numpy_path_exactly(monkeypatch: pytest.MonkeyPatch) -> None:
    texts = training_texts()[::50]
    monkeypatch.setenv("MOA_ROUTER_NATIVE", "0")
    assert not Featurizer().native
    scorer = load_model(None).scorer
    assert not scorer.native and not scorer.featurizer_.native
    for text in texts:
        logits = scorer.logits_one(text)
        assert logits == scorer._logits_one_numpy(text)
        difficulty, stakes = scorer.platt_
        assert scorer.score_text(text) == type(scorer.score_text(text))(
            difficulty.apply_one(logits[0]), stakes.apply_one(logits[1])
        )
    # Per scorer, both ways.
    scorer.set_native(True)
    assert scorer.native
    scorer.set_native(False)
    assert not scorer.native and scorer.logits_one(texts[0]) == scorer._logits_one_numpy(texts[0])


def test_without_the_extension_everything_uses_numpy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(features, "NATIVE_AVAILABLE", False)
    assert not features.native_by_default()
    featurizer = Featurizer(native=True)
    assert featurizer.native_features() is None
    scorer = small_scorers()[0].with_booster(None)
    assert not scorer.native
    with pytest.raises(RuntimeError, match="not built"):
        scorer.set_native(True)


def test_tables_are_validated_once_at_setup() -> None:
    featurizer = featurizers()[0]
    scorer = seed_scorer()
    good = {
        "hashed_weights": scorer.hashed_weights_,
        "dense_rows": np.array(scorer._dense_rows, dtype=np.float64),
    }
    assert featurizer.native_features(**good) is not None
    with pytest.raises(ValueError, match="hashed_weights"):
        featurizer.native_features(scorer.hashed_weights_.astype(np.float64))
    with pytest.raises(ValueError, match="hashed_weights"):
        featurizer.native_features(scorer.hashed_weights_[:100])
    with pytest.raises(ValueError, match="dense_rows"):
        featurizer.native_features(scorer.hashed_weights_, np.zeros((3, 4)))
    with pytest.raises(ValueError, match="needs hashed_weights"):
        native_of(featurizer).logits("x", 1, 0)
    # A window longer than the power tables is refused, not read past their end.
    native = native_of(featurizer)
    native.indices("x" * (featurizer.config.head_chars + featurizer.config.tail_chars + 1) * 4, 1, 0)
    with pytest.raises(ValueError, match="longer than the tables"):
        native.indices("x" * 5000, 1, 0)


def test_a_process_without_the_extension_scores_with_numpy() -> None:
    # As where no compiler built it: the import fails, and everything else works as before.
    code = (
        "import sys; sys.modules['classifier._native_features'] = None\n"
        "from classifier import features; from classifier.registry import load_model\n"
        "scorer = load_model(None).scorer\n"
        "assert not features.NATIVE_AVAILABLE and not scorer.native\n"
        "print(scorer.logits_one('Prove that 2 is prime') == scorer._logits_one_numpy('Prove that 2 is prime'))\n"
    )
    root = Path(__file__).resolve().parent.parent
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False, cwd=root
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "True"


def test_negative_counts_are_refused_like_math_log1p_refuses_them() -> None:
    native = native_of(featurizers()[0])
    with pytest.raises(ValueError, match=">= 0"):
        native.indices("x", -1, 0)
    with pytest.raises(ValueError, match=">= 0"):
        native.indices("x", 1, -5)


def test_the_lexicon_table_is_a_copy_that_later_changes_cannot_reach() -> None:
    featurizer = Featurizer(FeatureConfig(), native=False)
    native = featurizer.native_features()
    assert native is not None
    before = native.indices("hello world " * 20, 240, 0)
    featurizer._lexicon[:] = 255  # a category far beyond the table the C checked: must not be read
    assert native.indices("hello world " * 20, 240, 0)[1] == before[1]


def test_a_scorer_pickles_and_deep_copies_with_its_native_path() -> None:
    import copy
    import pickle

    scorer = seed_scorer()
    text = "Prove that there are infinitely many primes."
    for clone in (pickle.loads(pickle.dumps(scorer)), copy.deepcopy(scorer)):
        assert clone.native and clone.logits_one(text) == scorer.logits_one(text)
    off = copy.deepcopy(scorer)
    off.set_native(False)
    assert not pickle.loads(pickle.dumps(off)).native and not off.with_booster(None).native
