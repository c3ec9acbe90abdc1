"""Metrics against hand-computed small cases, including the random and oracle routers."""

from __future__ import annotations

import numpy as np
import pytest

from classifier.metrics import (
    apgr,
    auroc,
    brier,
    call_performance_threshold,
    expected_calibration_error,
    log_loss,
    routing_curve,
    routing_report,
)

# Four prompts. Cheap right on 0 and 3; strong right on 0, 1, 2. Cheap quality 0.5, strong 0.75.
CHEAP = [1.0, 0.0, 0.0, 1.0]
STRONG = [1.0, 1.0, 1.0, 0.0]


def test_auroc_hand_cases() -> None:
    assert auroc([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]) == 1.0
    assert auroc([0, 0, 1, 1], [0.9, 0.8, 0.2, 0.1]) == 0.0
    # Pairs (pos, neg): (0.35 vs 0.1) win, (0.35 vs 0.4) lose, (0.8 vs both) win -> 3/4.
    assert auroc([0, 1, 0, 1], [0.1, 0.35, 0.4, 0.8]) == pytest.approx(0.75)
    # Ties count one half: all equal -> 0.5.
    assert auroc([0, 1, 0, 1], [0.3, 0.3, 0.3, 0.3]) == pytest.approx(0.5)
    with pytest.raises(ValueError):
        auroc([1, 1], [0.2, 0.3])


def test_ece_hand_case() -> None:
    # Bin [0.2, 0.3): p 0.2, 0.2, labels 0, 1 -> |0.5 - 0.2| * 2/4; bin [0.9, 1]: p 0.9, 1.0, labels 1, 1
    # -> |1 - 0.95| * 2/4. ECE = 0.15 + 0.025.
    assert expected_calibration_error([0, 1, 1, 1], [0.2, 0.2, 0.9, 1.0]) == pytest.approx(0.175)
    assert expected_calibration_error([1, 0], [1.0, 0.0]) == 0.0


def test_log_loss_and_brier() -> None:
    assert log_loss([1, 0], [0.5, 0.5]) == pytest.approx(np.log(2))
    assert brier([1, 0], [0.75, 0.25]) == pytest.approx(0.0625)


def test_oracle_router_hand_computed() -> None:
    # Oracle order by gain (strong - cheap = 0, 1, 1, -1): the two gains first, then 0, then -1.
    # Quality at 0..4 strong calls: 0.5, 0.75, 1.0, 1.0, 0.75 -> PGR 0, 1, 2, 2, 1.
    curve = routing_curve(np.subtract(STRONG, CHEAP), CHEAP, STRONG)
    # The two gains tie, so the curve has points at 0, 2, 3, 4 strong calls; linear between.
    assert curve.strong_share.tolist() == [0.0, 0.5, 0.75, 1.0]
    assert curve.pgr.tolist() == [0.0, 2.0, 2.0, 1.0]
    # Trapezoid: 0.5 * (0 + 2) / 2 + 0.25 * 2 + 0.25 * (2 + 1) / 2 = 0.5 + 0.5 + 0.375.
    assert apgr(curve) == pytest.approx(1.375)
    assert call_performance_threshold(curve, 0.5) == pytest.approx(0.125)
    assert call_performance_threshold(curve, 0.8) == pytest.approx(0.2)
    assert call_performance_threshold(curve, 0.95) == pytest.approx(0.2375)


def test_random_router_is_the_diagonal() -> None:
    # A constant score leaves the order to chance: the expected curve is the straight line.
    curve = routing_curve([0.3, 0.3, 0.3, 0.3], CHEAP, STRONG)
    assert curve.strong_share.tolist() == [0.0, 1.0]
    assert apgr(curve) == pytest.approx(0.5)
    for level in (0.5, 0.8, 0.95):
        assert call_performance_threshold(curve, level) == pytest.approx(level)


def test_random_router_by_simulation_matches_the_expectation() -> None:
    rng = np.random.default_rng(0)
    cheap = rng.integers(0, 2, 200).astype(float)
    strong = np.maximum(cheap, rng.integers(0, 2, 200)).astype(float)
    draws = [apgr(routing_curve(rng.random(200), cheap, strong)) for _ in range(400)]
    assert np.mean(draws) == pytest.approx(0.5, abs=0.02)


def test_worst_router_and_explicit_order() -> None:
    # Reverse oracle: the loss first, then the zero, then the gains. PGR: 0, -1, -1, 1 at 0, 1, 2, 4 calls.
    curve = routing_curve(np.subtract(CHEAP, STRONG), CHEAP, STRONG)
    assert curve.pgr.tolist() == [0.0, -1.0, -1.0, 1.0]
    # 0.25 * (0 - 1) / 2 + 0.25 * (-1) + 0.5 * (-1 + 1) / 2 = -0.375.
    assert apgr(curve) == pytest.approx(-0.375)
    # PGR first reaches 0.5 between 2 and 4 calls: 0.5 + (0.5 + 1) / 2 * 0.5.
    assert call_performance_threshold(curve, 0.5) == pytest.approx(0.875)


def test_costs_follow_the_route() -> None:
    curve = routing_curve([3, 2, 1, 0], CHEAP, STRONG, cheap_cost=[1, 1, 1, 1], strong_cost=[10, 10, 10, 10])
    assert curve.cost.tolist() == [4.0, 13.0, 22.0, 31.0, 40.0]


def test_report_and_no_gap() -> None:
    curve = routing_curve([0.0, 0.0, 0.0, 0.0], CHEAP, STRONG)
    report = routing_report(curve, 4)
    assert report.apgr == pytest.approx(0.5)
    assert set(report.cpt) == {"50%", "80%", "95%"}
    with pytest.raises(ValueError, match="no gap"):
        apgr(routing_curve([1, 2], [1, 1], [1, 0]))


def test_cpt_unreachable_is_none() -> None:
    # Strong loses on one prompt more than it gains elsewhere? No: gap positive but level above max PGR.
    curve = routing_curve([1, 0], [0, 0], [1, 0])
    assert call_performance_threshold(curve, 1.5) is None


def test_paired_auroc_difference_se_reflects_sample_size() -> None:
    from classifier.metrics import paired_auroc_difference_se

    rng = np.random.default_rng(0)

    def sample(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        labels = (rng.random(n) < 0.3).astype(float)
        first = labels + rng.normal(size=n)  # two equally good, differently noisy scorers
        second = labels + rng.normal(size=n)
        return labels, first, second

    labels, first, _ = sample(60)
    assert paired_auroc_difference_se(labels, first, first) == 0.0  # the same scores never differ
    small = paired_auroc_difference_se(*sample(60))
    large = paired_auroc_difference_se(*sample(2000))
    assert 0.03 < small < 0.15 and large < small / 3
