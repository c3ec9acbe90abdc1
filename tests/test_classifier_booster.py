"""Boosted depth-2 trees correcting the difficulty head's calibrated logit."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from classifier import artifacts
from classifier.booster import Booster, fit_booster
from classifier.dataset import load_rows, row_text
from classifier.features import NATIVE_AVAILABLE
from classifier.scorer import QueryScorer

FIXTURE = Path(__file__).parent / "fixtures" / "classifier_rows.jsonl"


def interaction_data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Outcomes where the base's logit (column 0) helps only when column 1 ("code") is off: an
    interaction that no single-column correction can express."""
    rng = np.random.default_rng(seed)
    logit = rng.normal(size=n)
    code = rng.random(n) < 0.5
    noise = rng.normal(size=n)
    truth = np.where(code, -2.0 * logit, 2.0 * logit)
    y = (truth + 0.3 * noise > 0).astype(np.float64)
    columns = np.column_stack([logit, code.astype(np.float64), rng.normal(size=n)])
    return columns, logit, y


def test_trees_learn_an_interaction_with_the_base_logit() -> None:
    columns, logit, y = interaction_data(600, seed=1)
    booster = fit_booster(columns, logit, y, np.ones_like(y), trees=100)
    test_columns, test_logit, test_y = interaction_data(400, seed=2)
    before = ((test_logit > 0) == (test_y > 0.5)).mean()
    after = ((test_logit + booster.margins(test_columns) > 0) == (test_y > 0.5)).mean()
    assert before < 0.6 and after > 0.85
    # Most trees split on both the logit and the "code" column (root and child): the interaction.
    both = [{0, 1} <= set(booster.feature[t].tolist()) for t in range(booster.trees)]
    assert sum(both) > booster.trees // 2


def test_one_row_and_many_rows_agree_and_staged_sums_are_smaller_ensembles() -> None:
    columns, logit, y = interaction_data(300, seed=3)
    booster = fit_booster(columns, logit, y, np.ones_like(y), trees=40)
    many = booster.margins(columns[:25])
    for index in range(25):
        assert booster.margin_one(columns[index].tolist()) == pytest.approx(many[index], abs=1e-12)
    staged = np.cumsum(booster.leaf_values(columns[:25]), axis=1)
    first_ten = Booster(booster.feature[:10], booster.threshold[:10], booster.leaf[:10])
    np.testing.assert_allclose(first_ten.margins(columns[:25]), staged[:, 9], atol=1e-12)
    assert np.all(np.isfinite(booster.threshold))  # an unsplittable node uses a finite "never"


def test_leaves_hold_at_least_min_leaf_rows() -> None:
    columns, logit, y = interaction_data(100, seed=4)
    booster = fit_booster(columns, logit, y, np.ones_like(y), trees=5, min_leaf=40)
    right = columns[:, booster.feature[:, 0]] > booster.threshold[:, 0]
    assert all(40 <= right[:, t].sum() <= 60 or not right[:, t].any() for t in range(booster.trees))
    # Too few rows for any split: every tree is one leaf per side of a "never" split, all equal.
    tiny = fit_booster(columns[:30], logit[:30], y[:30], np.ones(30), trees=3, min_leaf=20)
    assert np.all(tiny.threshold == np.finfo(np.float64).max)


def test_bad_shapes_are_refused() -> None:
    with pytest.raises(ValueError, match="booster arrays"):
        Booster(np.zeros((2, 3), dtype=np.intp), np.zeros((2, 3)), np.zeros((2, 3)))


def test_a_scorer_with_a_booster_scores_saves_and_loads(tmp_path: Path) -> None:
    rows = load_rows(FIXTURE)
    texts = [row_text(row) for row in rows]
    base = QueryScorer(buckets_log2=12, calibration_folds=2).fit(
        texts, [row["difficulty"] for row in rows], [row["stakes"] for row in rows]
    )
    n_columns = 1 + base.dense_weights_.shape[0]
    # One tree that adds 2 to the calibrated logit of every row: every probability moves up.
    feature = np.zeros((1, 3), dtype=np.intp)
    threshold = np.full((1, 3), np.finfo(np.float64).max)
    boosted = base.with_booster(Booster(feature, threshold, np.array([[2.0, 2.0, 2.0, 2.0]])))
    before, after = base.predict_proba(texts), boosted.predict_proba(texts)
    platt = base.platt_[0]
    expected = 1.0 / (1.0 + np.exp(-(platt.a * base.decision_function(texts)[:, 0] + platt.b + 2.0)))
    np.testing.assert_allclose(after[:, 0], expected, atol=1e-9)
    np.testing.assert_array_equal(after[:, 1], before[:, 1])
    for index in range(5):
        assert boosted.score_text(texts[index]).difficulty == pytest.approx(after[index, 0], abs=1e-6)
    assert n_columns == 1 + len(base.featurizer_.transform_one("x")[1])

    meta = {"version": "b", "created_at": "2026-11-25T00:00:00+00:00", "training_data_sha256": "x", "n_train": 1}
    meta |= {"metrics": {}, "thresholds": {"difficulty": 0.5, "stakes": 0.5, "stakes_min_difficulty": 0}}
    artifacts.save(tmp_path / "b", boosted, meta)
    loaded = artifacts.load(tmp_path / "b").scorer
    assert loaded.booster_ is not None and loaded.booster_.trees == 1
    np.testing.assert_allclose(loaded.predict_proba(texts), after, atol=1e-9)


def test_single_queries_fold_the_clipping_into_thresholds_and_agree_with_batches() -> None:
    rows = load_rows(FIXTURE)
    texts = [row_text(row) for row in rows]
    base = QueryScorer(buckets_log2=12, calibration_folds=2).fit(
        texts, [row["difficulty"] for row in rows], [row["stakes"] for row in rows]
    )
    from classifier.fitting import feature_matrix

    _, dense = feature_matrix(base.featurizer_, texts)
    clipped = np.clip(dense, base.dense_low_, base.dense_high_)
    platt = base.platt_[0]
    offset = platt.a * base.decision_function(texts)[:, 0] + platt.b
    labels = (dense[:, 0] > np.median(dense[:, 0])).astype(np.float64)  # long asks went badly
    columns = np.column_stack([offset, clipped])
    booster = fit_booster(columns, offset, labels, np.ones_like(labels), trees=30, min_leaf=5)
    assert (booster.feature > 0).any()  # the trees use dense signals, whose clipping matters
    boosted = base.with_booster(booster)
    # Outside the training range on both sides: a far longer ask, an empty one, code, options.
    probe = [*texts[:10], "word " * 3000, "", "def f(x):\n    return {x: [x]}\n" * 40, "A) yes\nB) no\nC) maybe\n" * 30]
    for native in (False, True) if NATIVE_AVAILABLE else (False,):  # the vectorised booster runs when not native
        boosted.set_native(native)
        batch = boosted.predict_proba(probe)[:, 0]
        for index, text in enumerate(probe):
            assert boosted.score_text(text).difficulty == pytest.approx(batch[index], abs=1e-6)


def test_folded_thresholds_match_clipping_everywhere() -> None:
    # Column 1 is clipped to [1, 2]; thresholds below, inside and above that range.
    low, high = np.array([1.0]), np.array([2.0])
    for threshold in (0.5, 1.0, 1.5, 2.0, 3.0):
        feature = np.array([[1, 0, 0]], dtype=np.intp)
        booster = Booster(feature, np.array([[threshold, 0.0, 0.0]]), np.array([[-1.0, -1.0, 1.0, 1.0]]))
        unclipped = booster.for_unclipped(low, high)
        for x in (-5.0, 0.9, 1.0, 1.2, 1.5, 1.9, 2.0, 2.5, 9.0):
            clipped = min(max(x, 1.0), 2.0)
            assert unclipped.margin_one([0.0, x]) == booster.margin_one([0.0, clipped]), (threshold, x)
