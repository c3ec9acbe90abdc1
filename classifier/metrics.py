"""Evaluation metrics: AUROC, calibration error, and routing quality (APGR, CPT) as RouteLLM defines them.

Routing metrics rank queries by a router's score and send the top share to the strong model. The
cost-quality curve gives quality against the share of strong calls; PGR(c), the performance gap
recovered at share c, is (quality(c) - quality_cheap) / (quality_strong - quality_cheap). APGR is the
area under PGR over c in [0, 1]; CPT(x%) is the smallest share of strong calls with PGR >= x%.

Ties in the score are resolved by expectation over random tie-breaking: inside a run of equal scores
the curve is linear. A router that gives every query the same score is therefore exactly the random
router, whose expected APGR is 0.5.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
CPT_LEVELS: tuple[float, ...] = (0.5, 0.8, 0.95)


def auroc(labels: npt.ArrayLike, scores: npt.ArrayLike) -> float:
    """Area under the ROC curve: the probability that a random positive outranks a random negative
    (ties count one half). Raises ValueError without both classes."""
    y = np.asarray(labels, dtype=np.float64) > 0.5
    s = np.asarray(scores, dtype=np.float64)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError("AUROC needs both positive and negative labels")
    ranks = _average_ranks(s)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def paired_auroc_difference_se(
    labels: npt.ArrayLike, first: npt.ArrayLike, second: npt.ArrayLike, draws: int = 200, seed: int = 0
) -> float:
    """Bootstrap standard error of AUROC(second) - AUROC(first) on the same rows: how far two equally
    good scorers' AUROCs drift apart on a sample this size (resamples without both classes skipped)."""
    y = np.asarray(labels, dtype=np.float64)
    a, b = np.asarray(first, dtype=np.float64), np.asarray(second, dtype=np.float64)
    rng = np.random.default_rng(seed)
    n = int(y.shape[0])
    differences = []
    for _ in range(draws):
        rows = rng.integers(0, n, n)
        positives = int((y[rows] > 0.5).sum())
        if 0 < positives < n:
            differences.append(auroc(y[rows], b[rows]) - auroc(y[rows], a[rows]))
    return float(np.std(differences)) if len(differences) > 1 else 0.0


def expected_calibration_error(labels: npt.ArrayLike, probabilities: npt.ArrayLike, bins: int = 10) -> float:
    """ECE with equal-width bins: sum over bins of (bin share) * |mean label - mean probability|."""
    y = np.asarray(labels, dtype=np.float64)
    p = np.asarray(probabilities, dtype=np.float64)
    if y.shape[0] == 0:
        raise ValueError("ECE of an empty set")
    which = np.minimum((p * bins).astype(np.intp), bins - 1)
    total = 0.0
    for b in range(bins):
        members = which == b
        if members.any():
            total += float(members.mean()) * abs(float(y[members].mean()) - float(p[members].mean()))
    return total


def log_loss(labels: npt.ArrayLike, probabilities: npt.ArrayLike) -> float:
    y = np.asarray(labels, dtype=np.float64)
    p = np.clip(np.asarray(probabilities, dtype=np.float64), 1e-12, 1 - 1e-12)
    return float(-(y * np.log(p) + (1 - y) * np.log(1 - p)).mean())


def brier(labels: npt.ArrayLike, probabilities: npt.ArrayLike) -> float:
    y = np.asarray(labels, dtype=np.float64)
    p = np.asarray(probabilities, dtype=np.float64)
    return float(((p - y) ** 2).mean())


@dataclass(frozen=True, slots=True)
class RoutingCurve:
    """Quality and cost against the share of strong calls, at every distinct score threshold."""

    strong_share: FloatArray  # 0 .. 1, increasing
    quality: FloatArray  # mean quality at that share
    cost: FloatArray  # total cost at that share
    cheap_quality: float
    strong_quality: float

    @property
    def pgr(self) -> FloatArray:
        gap = self.strong_quality - self.cheap_quality
        if gap <= 0:
            raise ValueError("the strong model is not better than the cheap one here: no gap to recover")
        result: FloatArray = (self.quality - self.cheap_quality) / gap
        return result


def routing_curve(
    scores: npt.ArrayLike,
    cheap_quality: npt.ArrayLike,
    strong_quality: npt.ArrayLike,
    cheap_cost: npt.ArrayLike | None = None,
    strong_cost: npt.ArrayLike | None = None,
) -> RoutingCurve:
    """The curve of routing the highest-scored queries to the strong model, for every threshold."""
    s = np.asarray(scores, dtype=np.float64)
    qc = np.asarray(cheap_quality, dtype=np.float64)
    qs = np.asarray(strong_quality, dtype=np.float64)
    n = s.shape[0]
    if n == 0 or qc.shape != s.shape or qs.shape != s.shape:
        raise ValueError("scores and qualities must be non-empty and of equal length")
    cc = np.zeros(n) if cheap_cost is None else np.asarray(cheap_cost, dtype=np.float64)
    sc = np.zeros(n) if strong_cost is None else np.asarray(strong_cost, dtype=np.float64)
    order = np.argsort(-s, kind="stable")
    sorted_scores = s[order]
    # Points only at the ends of runs of equal scores: inside a run the expected curve is linear.
    ends = np.flatnonzero(np.append(sorted_scores[1:] != sorted_scores[:-1], True)) + 1
    taken = np.concatenate([[0], ends])
    quality_gain = np.concatenate([[0.0], np.cumsum((qs - qc)[order])])[taken]
    cost_gain = np.concatenate([[0.0], np.cumsum((sc - cc)[order])])[taken]
    return RoutingCurve(
        strong_share=taken / n,
        quality=(qc.sum() + quality_gain) / n,
        cost=cc.sum() + cost_gain,
        cheap_quality=float(qc.mean()),
        strong_quality=float(qs.mean()),
    )


def apgr(curve: RoutingCurve) -> float:
    """Average performance gap recovered: the area under PGR against the share of strong calls."""
    return float(np.trapezoid(curve.pgr, curve.strong_share))


def call_performance_threshold(curve: RoutingCurve, level: float) -> float | None:
    """CPT(level): the smallest share of strong calls whose PGR reaches `level` (0..1), interpolated
    linearly between curve points; None when no share reaches it."""
    pgr = curve.pgr
    reached = np.flatnonzero(pgr >= level - 1e-12)
    if reached.shape[0] == 0:
        return None
    i = int(reached[0])
    if i == 0:
        return 0.0
    x0, x1, y0, y1 = curve.strong_share[i - 1], curve.strong_share[i], pgr[i - 1], pgr[i]
    return float(x0 + (level - y0) * (x1 - x0) / (y1 - y0))


@dataclass(frozen=True, slots=True)
class RoutingReport:
    apgr: float
    cpt: dict[str, float | None]  # "50%" -> share of strong calls
    cheap_quality: float
    strong_quality: float
    n: int

    def to_json(self) -> dict[str, object]:
        return {
            "apgr": self.apgr,
            "cpt": self.cpt,
            "cheap_quality": self.cheap_quality,
            "strong_quality": self.strong_quality,
            "n": self.n,
        }


def routing_report(curve: RoutingCurve, n: int) -> RoutingReport:
    return RoutingReport(
        apgr=apgr(curve),
        cpt={f"{round(level * 100)}%": call_performance_threshold(curve, level) for level in CPT_LEVELS},
        cheap_quality=curve.cheap_quality,
        strong_quality=curve.strong_quality,
        n=n,
    )


def _average_ranks(values: FloatArray) -> FloatArray:
    """1-based ranks, ties sharing their average rank."""
    order = np.argsort(values, kind="mergesort")
    sorted_values = values[order]
    ranks = np.empty(values.shape[0], dtype=np.float64)
    starts = np.flatnonzero(np.concatenate([[True], sorted_values[1:] != sorted_values[:-1]]))
    ends = np.concatenate([starts[1:], [values.shape[0]]])
    for start, end in zip(starts, ends, strict=True):
        ranks[order[start:end]] = (start + end + 1) / 2.0
    return ranks
