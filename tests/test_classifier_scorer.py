"""The scorer: estimator contract, calibrated outputs, batch and single paths agree, any input scores."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from classifier.dataset import load_rows, row_text
from classifier.features import NATIVE_AVAILABLE
from classifier.scorer import NotFittedError, QueryScorer, Scores

FIXTURE = Path(__file__).parent / "fixtures" / "classifier_rows.jsonl"


@pytest.fixture(scope="module")
def rows() -> list[dict[str, Any]]:
    return load_rows(FIXTURE)


@pytest.fixture(scope="module")
def scorer(rows: list[dict[str, Any]]) -> QueryScorer:
    return QueryScorer(buckets_log2=14, calibration_folds=3, C=4.0).fit(
        [row_text(row) for row in rows], [row["difficulty"] for row in rows], [row["stakes"] for row in rows]
    )


def test_init_only_stores_parameters() -> None:
    scorer = QueryScorer(buckets_log2=12, C=2.0)
    assert scorer.get_params()["C"] == 2.0
    assert not hasattr(scorer, "hashed_weights_")
    assert scorer.set_params(C=3.0).C == 3.0
    with pytest.raises(ValueError):
        scorer.set_params(nonsense=1)


def test_unfitted_scorer_refuses_to_predict() -> None:
    with pytest.raises(NotFittedError):
        QueryScorer().predict_proba(["hello"])


def test_predict_proba_shape_and_range(scorer: QueryScorer, rows: list[dict[str, Any]]) -> None:
    probabilities = scorer.predict_proba([row_text(row) for row in rows])
    assert probabilities.shape == (len(rows), 2)
    assert np.all((probabilities > 0) & (probabilities < 1))


def test_learns_the_training_labels(scorer: QueryScorer, rows: list[dict[str, Any]]) -> None:
    probabilities = scorer.predict_proba([row_text(row) for row in rows])
    difficult = np.array([row["difficulty"] for row in rows]) == 1
    high_stakes = np.array([row["stakes"] for row in rows]) == 1
    assert probabilities[difficult, 0].mean() > probabilities[~difficult, 0].mean() + 0.2
    assert probabilities[high_stakes, 1].mean() > probabilities[~high_stakes, 1].mean() + 0.2


def test_single_and_batch_paths_agree(scorer: QueryScorer) -> None:
    texts = ["hi", "Prove Fermat's little theorem", "", "x" * 10_000, "¿Es seguro mezclar lejía y amoníaco?"]
    for native in (False, True) if NATIVE_AVAILABLE else (False,):  # the batch path is numpy's when not native
        scorer.set_native(native)
        batch = scorer.predict_proba(texts)
        for row, text in enumerate(texts):
            single = scorer.score_text(text)
            assert (single.difficulty, single.stakes) == pytest.approx(tuple(batch[row]), abs=1e-6)


def test_score_messages_uses_the_conversation(scorer: QueryScorer) -> None:
    scores = scorer.score_messages([{"role": "user", "content": "How much paracetamol can an adult take?"}])
    assert isinstance(scores, Scores)
    assert 0.0 < scores.difficulty < 1.0 and 0.0 < scores.stakes < 1.0
    follow_up = scorer.score_messages(
        [
            {"role": "user", "content": "How much paracetamol can an adult take?"},
            {"role": "assistant", "content": "Usually up to 4 g a day."},
            {"role": "user", "content": "ok and for my kid?"},
        ]
    )
    alone = scorer.score_messages([{"role": "user", "content": "ok and for my kid?"}])
    assert follow_up != alone  # the earlier turns count


@pytest.mark.parametrize(
    "text",
    ["", " ", "a" * 100_000, "\x00\x01\x02", "🙂" * 3000, "def f():\n\treturn 1\n" * 500, "税金" * 2000],
)
def test_any_text_gets_finite_scores(scorer: QueryScorer, text: str) -> None:
    scores = scorer.score_text(text)
    assert 0.0 <= scores.difficulty <= 1.0 and 0.0 <= scores.stakes <= 1.0


def test_sample_weight_changes_the_fit(rows: list[dict[str, Any]]) -> None:
    texts = [row_text(row) for row in rows]
    y_d = [row["difficulty"] for row in rows]
    y_s = [row["stakes"] for row in rows]
    weights = np.ones(len(rows))
    weights[: len(rows) // 2] = 5.0
    plain = QueryScorer(buckets_log2=12, calibration_folds=2).fit(texts, y_d, y_s)
    weighted = QueryScorer(buckets_log2=12, calibration_folds=2).fit(texts, y_d, y_s, sample_weight=weights)
    assert not np.allclose(plain.arrays()["hashed_weights"], weighted.arrays()["hashed_weights"])


def test_fit_rejects_a_single_class() -> None:
    with pytest.raises(ValueError, match="nothing to learn"):
        QueryScorer(buckets_log2=10, calibration_folds=2).fit(["a", "b", "c", "d"], [0, 0, 0, 0], [0, 1, 0, 1])


def test_single_logits_add_every_clipped_signal_in_order(scorer: QueryScorer) -> None:
    # Bit for bit the plain formula: the clipped signals in order, then the hashed rows summed in float32.
    for text in ["", "hi", "Prove that 2 is prime?", "1. a\n2. b\nA) c", "x" * 5000, "税金の申告", "Q: a\nA: b\n" * 9]:
        indices, dense = scorer.featurizer_.transform_one(text)
        z_difficulty, z_stakes = scorer._bias_pair
        for value, (low, high, w_difficulty, w_stakes) in zip(dense, scorer._dense_rows, strict=True):
            clipped = min(max(value, low), high)
            z_difficulty += clipped * w_difficulty
            z_stakes += clipped * w_stakes
        if indices.shape[0]:
            hashed = (np.ones(indices.shape[0], dtype=np.float32) @ scorer.hashed_weights_[indices]).tolist()
            scale = 1.0 / math.sqrt(indices.shape[0])
            z_difficulty += hashed[0] * scale
            z_stakes += hashed[1] * scale
        assert scorer._logits_one_numpy(text) == (z_difficulty, z_stakes)
        # The C extension's path (when built) sums the rows in double: equal within float32 rounding.
        assert scorer.logits_one(text) == pytest.approx((z_difficulty, z_stakes), rel=2e-6, abs=1e-5)
