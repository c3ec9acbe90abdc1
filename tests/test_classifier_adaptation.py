"""Correcting a version's difficulty head towards logged outcomes, anchored on the version itself."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from classifier import artifacts
from classifier.adaptation import MIN_ROWS, adapt_difficulty, ask_groups, fold_of_each_row
from classifier.dataset import load_rows, row_text
from classifier.scorer import QueryScorer

FIXTURE = Path(__file__).parent / "fixtures" / "classifier_rows.jsonl"
TOPICS = ("tide tables", "bus timetables", "glacier melt", "bird songs", "tax brackets", "chess openings")


@pytest.fixture(scope="module")
def base() -> QueryScorer:
    rows = load_rows(FIXTURE)
    texts = [row_text(row) for row in rows]
    return QueryScorer(buckets_log2=12, calibration_folds=2).fit(
        texts, [row["difficulty"] for row in rows], [row["stakes"] for row in rows]
    )


def outcomes(count: int, seed: int) -> tuple[list[str], list[int]]:
    """Asks about the first three topics went badly on the cheap model, the others went well."""
    rng = random.Random(seed)
    texts, labels = [], []
    for index in range(count):
        topic = rng.randrange(len(TOPICS))
        texts.append(f"question {index}: tell me about {TOPICS[topic]} near {rng.choice(['oslo', 'lima', 'pune'])}")
        labels.append(int(topic < 3))
    return texts, labels


def test_outcomes_move_the_difficulty_head_on_unseen_asks(base: QueryScorer) -> None:
    texts, labels = outcomes(120, seed=1)
    adapted, report = adapt_difficulty(base, texts, labels)
    assert report.choice not in ("none", "shift") and report.n_rows == 120
    assert report.cross_validated_log_loss[report.choice] < report.cross_validated_log_loss["shift"]
    unseen, unseen_labels = outcomes(40, seed=2)
    before = base.predict_proba(unseen)
    after = adapted.predict_proba(unseen)
    bad = np.array(unseen_labels) == 1
    # Towards the outcomes: bad topics up, good topics down, and now well apart.
    assert after[bad, 0].mean() > before[bad, 0].mean() and after[~bad, 0].mean() < before[~bad, 0].mean()
    assert after[bad, 0].min() > after[~bad, 0].max()
    # The stakes head is not what outcomes judge: unchanged.
    np.testing.assert_array_equal(after[:, 1], before[:, 1])


def test_an_adapted_version_is_an_ordinary_version(base: QueryScorer, tmp_path: Path) -> None:
    texts, labels = outcomes(80, seed=3)
    adapted, _ = adapt_difficulty(base, texts, labels)
    # Same features and format: single-query scoring agrees with batch scoring, and it saves and loads.
    probe = ["tell me about glacier melt", "chess openings for beginners", ""]
    batch = adapted.predict_proba(probe)
    for index, text in enumerate(probe):
        assert adapted.score_text(text).difficulty == pytest.approx(batch[index, 0], abs=1e-6)
    meta = {"version": "adapted", "created_at": "2026-11-25T00:00:00+00:00", "training_data_sha256": "x"}
    meta |= {"n_train": 80, "metrics": {}, "thresholds": {"difficulty": 0.5, "stakes": 0.5, "stakes_min_difficulty": 0}}
    artifacts.save(tmp_path / "adapted", adapted, meta)
    loaded = artifacts.load(tmp_path / "adapted").scorer
    np.testing.assert_allclose(loaded.predict_proba(probe), batch, atol=1e-9)
    # The base is untouched.
    assert not np.array_equal(base.predict_proba(probe)[:, 0], batch[:, 0])


def test_too_few_outcomes_keep_the_base(base: QueryScorer) -> None:
    texts, labels = outcomes(MIN_ROWS - 1, seed=4)
    kept, report = adapt_difficulty(base, texts, labels)
    assert kept is base and report.choice == "none" and "too few" in report.reason
    one_class, _ = outcomes(60, seed=5)
    kept, report = adapt_difficulty(base, one_class, [0] * 60)
    assert kept is base and report.choice == "none"


def test_outcomes_that_carry_no_signal_rarely_change_the_ranking(base: QueryScorer) -> None:
    # Labels drawn at random: the one-standard-error rule should mostly keep the base or only shift its
    # base rate, rather than fit a correction to the noise.
    kept = 0
    for seed in range(6):
        rng = random.Random(seed)
        texts, _ = outcomes(150, seed=seed)
        _, report = adapt_difficulty(base, texts, [int(rng.random() < 0.3) for _ in texts])
        kept += report.choice in ("none", "shift")
    assert kept >= 4


def test_lengths_must_agree(base: QueryScorer) -> None:
    with pytest.raises(ValueError, match="differ in length"):
        adapt_difficulty(base, ["a", "b"], [1])


def test_an_ask_logged_many_times_is_not_learnt_by_heart(base: QueryScorer) -> None:
    # Forty asks, each logged six times with its own label (the same ask went badly, or well, every
    # time), labels unrelated to anything a new ask could share. Cross-validation by row would score
    # memorised copies as learning; by ask it sees no signal and keeps the base (or shifts it).
    kept = 0
    for seed in range(4):
        rng = random.Random(seed)
        asks, _ = outcomes(40, seed=10 + seed)
        labels = [int(rng.random() < 0.4) for _ in asks]
        _, report = adapt_difficulty(base, asks * 6, labels * 6)
        assert report.n_rows == 240
        kept += report.choice in ("none", "shift")
    assert kept >= 3


def test_folds_keep_the_copies_of_an_ask_together() -> None:
    texts = ["a", "b", "a", "c", "b", "a", "d", "e"]
    groups, distinct = ask_groups(texts)
    assert distinct == 5 and groups.tolist() == [0, 1, 0, 2, 1, 0, 3, 4]
    folds = fold_of_each_row(groups, distinct, folds=3, random_state=0)
    for text in set(texts):
        assert len({int(folds[i]) for i, t in enumerate(texts) if t == text}) == 1
    assert set(folds.tolist()) == {0, 1, 2}
    # Distinct texts: one row per group, the folds a permutation as for any rows.
    unique_groups, n = ask_groups(["x", "y", "z", "w"])
    assert n == 4 and sorted(fold_of_each_row(unique_groups, n, folds=4, random_state=1).tolist()) == [0, 1, 2, 3]


def test_too_few_distinct_asks_keep_the_base(base: QueryScorer) -> None:
    asks, labels = outcomes(MIN_ROWS - 1, seed=6)
    kept, report = adapt_difficulty(base, asks * 5, labels * 5)
    assert kept is base and report.choice == "none" and "distinct asks" in report.reason
