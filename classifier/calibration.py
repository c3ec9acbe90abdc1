"""Probability calibration (Platt scaling) and the choice of policy thresholds on held-back data."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


def sigmoid(z: FloatArray) -> FloatArray:
    # The tanh form does not overflow for large |z|, unlike 1 / (1 + exp(-z)).
    result: FloatArray = 0.5 * (1.0 + np.tanh(0.5 * z))
    return result


@dataclass(frozen=True, slots=True)
class Platt:
    """p = sigmoid(a * logit + b): maps a head's raw logit to a calibrated probability."""

    a: float = 1.0
    b: float = 0.0

    def apply(self, logits: FloatArray) -> FloatArray:
        return sigmoid(self.a * logits + self.b)

    def apply_one(self, logit: float) -> float:
        z = self.a * logit + self.b
        # Split by sign so exp never overflows.
        if z >= 0:
            return 1.0 / (1.0 + math.exp(-z))
        e = math.exp(z)
        return e / (1.0 + e)

    def to_json(self) -> dict[str, float]:
        return {"a": self.a, "b": self.b}

    @classmethod
    def from_json(cls, data: dict[str, float]) -> Platt:
        return cls(a=float(data["a"]), b=float(data["b"]))


def fit_platt(
    logits: FloatArray, labels: FloatArray, sample_weight: FloatArray | None = None, iterations: int = 50
) -> Platt:
    """Platt's method: a one-feature logistic regression of the labels on the logits, by Newton steps.

    Targets are smoothed as Platt recommends ((n+ + 1)/(n+ + 2), 1/(n- + 2)) so that a perfectly
    separated calibration set does not push the slope to infinity.
    """
    x = np.asarray(logits, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    w = np.ones_like(x) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    positives, negatives = float(w[y > 0.5].sum()), float(w[y <= 0.5].sum())
    if positives == 0.0 or negatives == 0.0:
        raise ValueError("calibration needs both positive and negative examples")
    target = np.where(y > 0.5, (positives + 1.0) / (positives + 2.0), 1.0 / (negatives + 2.0))
    a, b = 1.0, math.log((positives + 1.0) / (negatives + 1.0))
    loss = _cross_entropy(a * x + b, target, w)
    for _ in range(iterations):
        p = sigmoid(a * x + b)
        residual = w * (p - target)
        curvature = w * p * (1.0 - p) + 1e-12
        gradient = np.array([float((residual * x).sum()), float(residual.sum())])
        hessian = np.array(
            [
                [float((curvature * x * x).sum()) + 1e-9, float((curvature * x).sum())],
                [float((curvature * x).sum()), float(curvature.sum()) + 1e-9],
            ]
        )
        step = np.linalg.solve(hessian, gradient)
        # Backtracking: a full Newton step can overshoot when the logits are far from calibrated.
        scale = 1.0
        while scale > 1e-8:
            new_a, new_b = a - scale * float(step[0]), b - scale * float(step[1])
            new_loss = _cross_entropy(new_a * x + new_b, target, w)
            if new_loss <= loss:
                break
            scale /= 2.0
        else:
            break  # no step improves: converged as far as floating point allows
        a, b, loss = new_a, new_b, new_loss
        if float(np.abs(scale * step).max()) < 1e-10:
            break
    return Platt(a=a, b=b)


def _cross_entropy(z: FloatArray, target: FloatArray, weight: FloatArray) -> float:
    # log(1 + exp(z)) - target * z, computed stably.
    return float((weight * (np.logaddexp(0.0, z) - target * z)).sum())


@dataclass(frozen=True, slots=True)
class ThresholdChoice:
    """Thresholds for router.policy plus what they give on the data they were chosen on."""

    difficulty: float
    stakes: float
    stakes_min_difficulty: float
    escalation_rate: float
    difficult_recall: float  # share of difficult queries escalated
    stakes_recall: float  # share of high-stakes queries escalated
    utility: float

    def thresholds(self) -> dict[str, float]:
        return {
            "difficulty": self.difficulty,
            "stakes": self.stakes,
            "stakes_min_difficulty": self.stakes_min_difficulty,
        }


def escalate(
    difficulty: FloatArray, stakes: FloatArray, t_difficulty: float, t_stakes: float, t_min: float
) -> npt.NDArray[np.bool_]:
    """The escalation rule of router.policy.decide (auto, no budget limit), vectorised."""
    escalated: npt.NDArray[np.bool_] = (difficulty >= t_difficulty) | ((stakes >= t_stakes) & (difficulty >= t_min))
    return escalated


def choose_thresholds(
    difficulty: FloatArray,
    stakes: FloatArray,
    y_difficulty: FloatArray,
    y_stakes: FloatArray,
    *,
    target_escalation_rate: float | None = None,
    target_quality: float | None = None,
    stakes_weight: float = 0.5,
) -> ThresholdChoice:
    """Pick the policy's three thresholds from held-back scores and labels.

    The benefit of escalating a query is y_difficulty + stakes_weight * y_difficulty * y_stakes
    (the mixture helps where the cheap answer falls short, more so where a wrong answer is costly)
    plus a smaller stakes_weight / 2 * y_stakes (high-stakes asks get a second opinion even when
    labelled easy). With a target escalation rate, the thresholds maximise the total benefit among
    rules that escalate at most that share; with a target quality (the share of difficult queries
    to escalate), they are the cheapest rule that reaches it.
    """
    if (target_escalation_rate is None) == (target_quality is None):
        raise ValueError("give exactly one of target_escalation_rate and target_quality")
    d = np.asarray(difficulty, dtype=np.float64)
    s = np.asarray(stakes, dtype=np.float64)
    yd = np.asarray(y_difficulty, dtype=np.float64)
    ys = np.asarray(y_stakes, dtype=np.float64)
    if d.shape[0] == 0:
        raise ValueError("no held-back rows to calibrate on")
    benefit = yd + stakes_weight * yd * ys + 0.5 * stakes_weight * ys
    above_all = float(np.nextafter(1.0, 2.0))  # a threshold that nothing reaches
    grid = np.unique(np.concatenate([np.quantile(d, np.linspace(0, 1, 41)), [above_all]]))
    stakes_grid = np.unique(np.concatenate([np.quantile(s, np.linspace(0.5, 1, 21)), [above_all]]))
    best: ThresholdChoice | None = None
    # Highest stakes threshold first ("never by stakes" before all): on a tie the simpler rule is kept.
    for t_stakes in stakes_grid[::-1]:
        for t_min in grid:
            candidate = _best_rule(
                d, s, yd, ys, benefit, float(t_stakes), float(t_min), target_escalation_rate, target_quality
            )
            if candidate is not None and _better(candidate, best, target_escalation_rate is not None):
                best = candidate
    if best is None:  # no rule meets the target quality: escalate everything
        everything = np.ones_like(d, dtype=np.bool_)
        best = ThresholdChoice(
            0.0, 0.0, 0.0, 1.0, _recall(everything, yd), _recall(everything, ys), float(benefit.sum())
        )
    return best


def _best_rule(
    d: FloatArray,
    s: FloatArray,
    yd: FloatArray,
    ys: FloatArray,
    benefit: FloatArray,
    t_stakes: float,
    t_min: float,
    target_rate: float | None,
    target_quality: float | None,
) -> ThresholdChoice | None:
    """The best rule with these stakes thresholds, over every distinct difficulty threshold >= t_min."""
    stakes_rule = (s >= t_stakes) & (d >= t_min)
    rest = np.flatnonzero(~stakes_rule)
    order = rest[np.argsort(-d[rest], kind="stable")]
    rest_d = d[order]
    # Taking the first k rows of `order` is the rule "difficulty >= rest_d[k-1]"; only the last row of a
    # run of equal scores gives a threshold.
    ends = np.flatnonzero(np.append(rest_d[1:] != rest_d[:-1], True)) if rest.shape[0] else np.zeros(0, np.intp)
    taken = np.concatenate([[0], ends + 1])
    thresholds = np.concatenate([[float(np.nextafter(1.0, 2.0))], rest_d[ends]])
    cumulative = np.zeros((rest.shape[0] + 1, 3))
    np.cumsum(np.stack([benefit[order], yd[order], ys[order]], axis=1), axis=0, out=cumulative[1:])
    base = np.array([benefit[stakes_rule].sum(), yd[stakes_rule].sum(), ys[stakes_rule].sum()])
    utility, caught_yd, caught_ys = (cumulative[taken] + base).T
    rates = (taken + int(stakes_rule.sum())) / d.shape[0]
    all_yd, all_ys = float(yd.sum()), float(ys.sum())
    recall_yd = caught_yd / all_yd if all_yd else np.ones_like(caught_yd)
    # Below t_min the stakes rule is redundant: that rule is found again with a lower t_min.
    allowed = thresholds >= t_min
    if target_rate is not None:
        allowed &= rates <= target_rate + 1e-12
        key = np.where(allowed, utility - 1e-9 * rates, -np.inf)
    else:
        assert target_quality is not None
        allowed &= recall_yd + 1e-12 >= target_quality
        key = np.where(allowed, -rates + 1e-9 * utility, -np.inf)
    if not allowed.any():
        return None
    i = int(np.argmax(key))
    return ThresholdChoice(
        difficulty=float(thresholds[i]),
        stakes=t_stakes,
        stakes_min_difficulty=t_min,
        escalation_rate=float(rates[i]),
        difficult_recall=float(recall_yd[i]),
        stakes_recall=float(caught_ys[i]) / all_ys if all_ys else 1.0,
        utility=float(utility[i]),
    )


def _recall(chosen: npt.NDArray[np.bool_], labels: FloatArray) -> float:
    positives = float(labels.sum())
    return float(labels[chosen].sum()) / positives if positives else 1.0


def _better(candidate: ThresholdChoice, best: ThresholdChoice | None, by_rate: bool) -> bool:
    if best is None:
        return True
    if by_rate:
        return (candidate.utility, -candidate.escalation_rate) > (best.utility, -best.escalation_rate)
    return (candidate.escalation_rate, -candidate.utility) < (best.escalation_rate, -best.utility)
