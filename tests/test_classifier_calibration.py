"""Platt scaling and the choice of policy thresholds."""

from __future__ import annotations

import numpy as np
import pytest

from classifier.calibration import Platt, choose_thresholds, escalate, fit_platt


def test_platt_recovers_a_known_sigmoid() -> None:
    rng = np.random.default_rng(1)
    logits = rng.normal(0, 2, 20000)
    true_a, true_b = 0.5, -1.0
    labels = (rng.random(logits.shape[0]) < 1 / (1 + np.exp(-(true_a * logits + true_b)))).astype(float)
    platt = fit_platt(logits, labels)
    assert platt.a == pytest.approx(true_a, abs=0.05)
    assert platt.b == pytest.approx(true_b, abs=0.08)


def test_platt_survives_separable_data_and_is_monotonic() -> None:
    platt = fit_platt(np.array([-2.0, -1.0, 1.0, 2.0]), np.array([0.0, 0.0, 1.0, 1.0]))
    assert np.isfinite(platt.a) and platt.a > 0
    probabilities = platt.apply(np.array([-2.0, 0.0, 2.0]))
    assert np.all(np.diff(probabilities) > 0)
    assert 0 < probabilities[0] < 0.5 < probabilities[2] < 1


def test_platt_apply_one_matches_vector_and_does_not_overflow() -> None:
    platt = Platt(a=2.0, b=0.5)
    for logit in (-800.0, -1.0, 0.0, 3.0, 800.0):
        assert platt.apply_one(logit) == pytest.approx(float(platt.apply(np.array([logit]))[0]))
    assert Platt.from_json(platt.to_json()) == platt


def test_platt_needs_both_classes() -> None:
    with pytest.raises(ValueError):
        fit_platt(np.array([0.0, 1.0]), np.array([1.0, 1.0]))


def _synthetic(n: int = 400, seed: int = 3) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    y_d = (rng.random(n) < 0.3).astype(float)
    y_s = (rng.random(n) < 0.25).astype(float)
    d = np.clip(0.3 * y_d + rng.random(n) * 0.7, 0, 1)
    s = np.clip(0.4 * y_s + rng.random(n) * 0.6, 0, 1)
    return d, s, y_d, y_s


@pytest.mark.parametrize("rate", [0.0, 0.1, 0.2, 0.5])
def test_target_escalation_rate_is_respected_on_the_data(rate: float) -> None:
    d, s, y_d, y_s = _synthetic()
    choice = choose_thresholds(d, s, y_d, y_s, target_escalation_rate=rate)
    escalated = escalate(d, s, choice.difficulty, choice.stakes, choice.stakes_min_difficulty)
    assert escalated.mean() == pytest.approx(choice.escalation_rate)
    assert choice.escalation_rate <= rate + 1e-12
    assert choice.escalation_rate >= rate - 0.05  # uses (nearly) all of its budget


def test_more_budget_never_catches_less() -> None:
    d, s, y_d, y_s = _synthetic()
    recalls = [choose_thresholds(d, s, y_d, y_s, target_escalation_rate=rate).utility for rate in (0.1, 0.2, 0.3, 0.5)]
    assert recalls == sorted(recalls)


def test_target_quality_gives_the_cheapest_rule_reaching_it() -> None:
    d, s, y_d, y_s = _synthetic()
    choice = choose_thresholds(d, s, y_d, y_s, target_quality=0.8)
    assert choice.difficult_recall >= 0.8
    # Any smaller escalation budget does not reach the same recall of difficult queries.
    cheaper = choose_thresholds(d, s, y_d, y_s, target_escalation_rate=choice.escalation_rate - 0.02)
    escalated = escalate(d, s, cheaper.difficulty, cheaper.stakes, cheaper.stakes_min_difficulty)
    assert y_d[escalated].sum() / y_d.sum() < 0.8


def test_perfect_scores_give_perfect_thresholds() -> None:
    y_d = np.array([0, 0, 0, 0, 1, 1, 0, 0, 0, 0], dtype=float)
    d = np.where(y_d > 0, 0.9, 0.1)
    s = np.zeros_like(d)
    choice = choose_thresholds(d, s, y_d, np.zeros_like(d), target_escalation_rate=0.2)
    assert choice.escalation_rate == pytest.approx(0.2)
    assert choice.difficult_recall == 1.0
    assert 0.1 < choice.difficulty <= 0.9


def test_high_stakes_rows_are_escalated_when_budget_allows() -> None:
    # No difficult rows at all: only the stakes rule has something to catch.
    y_s = np.array([1, 1, 0, 0, 0, 0, 0, 0, 0, 0], dtype=float)
    s = np.where(y_s > 0, 0.95, 0.05)
    d = np.linspace(0.3, 0.4, 10)
    choice = choose_thresholds(d, s, np.zeros(10), y_s, target_escalation_rate=0.2)
    assert choice.stakes_recall == 1.0
    escalated = escalate(d, s, choice.difficulty, choice.stakes, choice.stakes_min_difficulty)
    assert escalated.tolist() == (y_s > 0).tolist()


def test_needs_exactly_one_target() -> None:
    d, s, y_d, y_s = _synthetic(50)
    with pytest.raises(ValueError):
        choose_thresholds(d, s, y_d, y_s)
    with pytest.raises(ValueError):
        choose_thresholds(d, s, y_d, y_s, target_escalation_rate=0.2, target_quality=0.5)
