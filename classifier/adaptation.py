"""Adapting the difficulty head to a deployment's logged outcomes, anchored on a base version.

Retraining from scratch on the seed rows plus a few hundred outcomes drowns the outcomes in the seed
(and weighting them up makes the model forget what the seed taught). Instead the base version is the
prior, and the outcomes fit a correction of its calibrated logit, of one of two kinds:

- linear: logit'(x) = logit_base(x) + delta . features(x) + c, with an L2 penalty
  `strength * |delta|^2 / 2` pulling the correction to zero (MAP with a Gaussian prior centred on the
  base weights; c is not penalised). Folded into the base's raw weights (divided by its Platt slope),
  so the version is an ordinary one: same features, same format, same inference cost.
- trees: a boosted ensemble of depth-2 trees over [the base's calibrated logit, the dense signals]
  (classifier.booster), which can express interactions a linear correction cannot ("for code asks,
  a high seed score means less"). Stored beside the weights; it costs a few microseconds per query.

Which correction, and how strong, is chosen by cross-validated log loss on the outcomes themselves
(folds by ask: copies of one ask stay in one fold), among candidates that include "none" (the base as
it is) and "shift" (only c: the deployment's base rate differs, the ranking stays), with the
one-standard-error rule: the simplest candidate whose held-out loss is within one standard error of
the best one's wins, so a correction that only fits the noise of a few hundred outcomes is dropped.
With no outcomes the version is the base; the more outcomes, the further the data can move it.

The stakes head is left as it is: outcomes judge whether the cheap answer was good enough, not the
stakes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from classifier.booster import fit_booster
from classifier.scorer import QueryScorer

FloatArray = npt.NDArray[np.float64]
DEFAULT_STRENGTHS: tuple[float, ...] = (10.0, 3.0, 1.0, 0.3, 0.1)  # simplest (strongest pull) first
DEFAULT_TREE_COUNTS: tuple[int, ...] = (25, 50, 100, 200)
DEFAULT_FOLDS = 5
# Below this many outcomes (or of either label) cross-validation says nothing: the base is kept.
MIN_ROWS = 20
MIN_PER_CLASS = 3


@dataclass(frozen=True, slots=True)
class AdaptationReport:
    """What the adaptation did, for the version's meta.json."""

    n_rows: int
    positive_rate: float
    choice: str  # "none" (the base is kept), "shift" (only the constant) or the strength chosen
    cross_validated_log_loss: dict[str, float] = field(default_factory=dict)  # by candidate
    reason: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "method": "L2-anchored correction of the difficulty head on logged outcomes",
            "n_rows": self.n_rows,
            "positive_rate": self.positive_rate,
            "choice": self.choice,
            "cross_validated_log_loss": self.cross_validated_log_loss,
            "reason": self.reason,
        }


def adapt_difficulty(
    base: QueryScorer,
    texts: Sequence[str],
    labels: Sequence[float] | FloatArray,
    sample_weight: Sequence[float] | FloatArray | None = None,
    *,
    strengths: Sequence[float] = DEFAULT_STRENGTHS,
    tree_counts: Sequence[int] = DEFAULT_TREE_COUNTS,
    folds: int = DEFAULT_FOLDS,
    random_state: int = 0,
) -> tuple[QueryScorer, AdaptationReport]:
    """The base scorer with its difficulty head corrected towards the outcomes (labels 0/1), and a
    report; the base itself when the outcomes are too few or support no correction."""
    y = np.asarray(labels, dtype=np.float64)
    w = np.ones_like(y) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    n = y.shape[0]
    if len(texts) != n or w.shape[0] != n:
        raise ValueError("texts, labels and weights differ in length")
    positive_rate = float(y.mean()) if n else 0.0
    positives, negatives = int((y > 0.5).sum()), int((y <= 0.5).sum())
    groups, distinct = ask_groups(texts)
    if distinct < MIN_ROWS or min(positives, negatives) < MIN_PER_CLASS:
        reason = (
            f"{n} outcomes of {distinct} distinct asks ({positives} bad, {negatives} good): too few to correct the base"
        )
        return base, AdaptationReport(n, positive_rate, "none", reason=reason)

    design, offset = _design(base, texts)
    folds_of = fold_of_each_row(groups, distinct, folds, random_state)
    candidates = _candidates(strengths, tree_counts)
    row_losses = _held_out_losses(design, offset, y, w, folds_of, candidates)
    losses = {name: float((w * loss).sum() / w.sum()) for name, loss in row_losses.items()}
    lowest = min(losses, key=losses.__getitem__)
    best = next(name for name in candidates if _within_one_error(row_losses[name], row_losses[lowest], w))
    kind, value = candidates[best]
    if kind == "none":
        reason = "no correction lowered the cross-validated log loss by more than its standard error: the base is kept"
        return base, AdaptationReport(n, positive_rate, best, losses, reason)
    if kind == "trees":
        columns = np.column_stack([offset, design.dense])
        adapted = base.with_booster(fit_booster(columns, offset, y, w, trees=int(value)))
    else:
        adapted = _fold_into(base, design.column_ids, _fit(design.matrix, offset, y, w, value))
    if kind == "shift":
        reason = "only a shift of the base rate lowered the cross-validated log loss by more than its standard error"
    else:
        reason = f"{best} (cross-validated log loss {losses[best]:.4f}, the base's {losses['none']:.4f})"
    return adapted, AdaptationReport(n, positive_rate, best, losses, reason)


def ask_groups(texts: Sequence[str]) -> tuple[npt.NDArray[np.intp], int]:
    """(group of each row, number of groups): rows with the same text share a group."""
    first_seen: dict[str, int] = {}
    ids = [first_seen.setdefault(text, len(first_seen)) for text in texts]
    groups: npt.NDArray[np.intp] = np.asarray(ids, dtype=np.intp)
    return groups, len(first_seen)


def fold_of_each_row(
    groups: npt.NDArray[np.intp], distinct: int, folds: int, random_state: int
) -> npt.NDArray[np.intp]:
    """Cross-validation folds by ask, not by row: an ask logged several times (traffic repeats itself)
    must not be fitted in one fold and scored in another, or memorising it would look like learning."""
    order: npt.NDArray[np.intp] = np.random.default_rng(random_state).permutation(distinct)
    return order[groups] % min(folds, distinct)


def _candidates(strengths: Sequence[float], tree_counts: Sequence[int]) -> dict[str, tuple[str, float]]:
    """Corrections to choose from, roughly by how far each can move from the base: the base itself, a
    shift, then linear pulls and tree ensembles interleaved from the most to the least constrained."""
    linear = [(f"linear, strength {s:g}", ("linear", float(s))) for s in sorted(strengths, reverse=True)]
    trees = [(f"{t} trees", ("trees", float(t))) for t in sorted(tree_counts)]
    ordered: list[tuple[str, tuple[str, float]]] = [("none", ("none", 0.0)), ("shift", ("shift", math.inf))]
    while linear or trees:
        for queue in (linear, trees):
            if queue:
                ordered.append(queue.pop(0))
    return dict(ordered)


@dataclass(frozen=True, slots=True)
class _Design:
    """The outcomes' features restricted to the columns that occur in them (the others get no
    gradient and stay zero): hashed buckets, then standardised dense signals, then a constant."""

    matrix: Any  # scipy CSR, (n, used buckets + dense + 1)
    column_ids: npt.NDArray[np.intp]  # bucket number of each hashed column
    dense: FloatArray  # the dense signals as inference sees them (clipped to the base's range): for trees


def _design(base: QueryScorer, texts: Sequence[str]) -> tuple[_Design, FloatArray]:
    from scipy import sparse

    from classifier.fitting import feature_matrix

    hashed, dense = feature_matrix(base.featurizer_, texts)
    used = np.unique(hashed.indices).astype(np.intp)
    clipped = np.clip(dense, base.dense_low_, base.dense_high_)
    standardised = (clipped - base.dense_mean_) / base.dense_scale_
    matrix = sparse.hstack(
        [hashed[:, used], sparse.csr_matrix(standardised), sparse.csr_matrix(np.ones((len(texts), 1)))],
        format="csr",
    )
    platt = base.platt_[0]
    offset = platt.a * base.decision_function(texts)[:, 0] + platt.b  # the base's calibrated logit
    return _Design(matrix, used, clipped), offset


def _fit(
    matrix: Any, offset: FloatArray, y: FloatArray, w: FloatArray, strength: float, start: FloatArray | None = None
) -> FloatArray:
    """The correction minimising weighted log loss + strength/2 |delta|^2 (the constant unpenalised);
    an infinite strength fits the constant alone. `start` (the solution at a stronger pull) only
    shortens the way to the same optimum: the problem is convex."""
    from scipy.optimize import minimize

    if math.isinf(strength):
        delta = np.zeros(matrix.shape[1])
        delta[-1] = _fit_shift(offset, y, w)
        return delta
    penalised = np.ones(matrix.shape[1])
    penalised[-1] = 0.0
    transposed = matrix.T.tocsr()

    def loss_and_gradient(delta: FloatArray) -> tuple[float, FloatArray]:
        z = offset + matrix @ delta
        # A sum of squares, not a BLAS dot: the dot of L-BFGS-B's own arrays was ~100x slower here.
        squares = float(np.square(delta[:-1]).sum())
        loss = float((w * (np.logaddexp(0.0, z) - y * z)).sum()) + 0.5 * strength * squares
        p = 0.5 * (1.0 + np.tanh(0.5 * z))
        gradient: FloatArray = transposed @ (w * (p - y)) + strength * penalised * delta
        return loss, gradient

    initial = np.zeros(matrix.shape[1]) if start is None else start
    result = minimize(loss_and_gradient, initial, jac=True, method="L-BFGS-B")
    fitted: FloatArray = result.x
    return fitted


def _fit_shift(offset: FloatArray, y: FloatArray, w: FloatArray) -> float:
    """The constant c minimising weighted log loss of offset + c, by Newton steps (convex in c)."""
    c = 0.0
    for _ in range(50):
        p = 0.5 * (1.0 + np.tanh(0.5 * (offset + c)))
        gradient, curvature = float((w * (p - y)).sum()), float((w * p * (1.0 - p)).sum()) + 1e-12
        step = max(min(gradient / curvature, 5.0), -5.0)
        c -= step
        if abs(step) < 1e-10:
            break
    return c


def _held_out_losses(
    design: _Design,
    offset: FloatArray,
    y: FloatArray,
    w: FloatArray,
    folds_of: npt.NDArray[Any],
    candidates: dict[str, tuple[str, float]],
) -> dict[str, FloatArray]:
    """Each candidate's log loss on each row, from a fit on the other folds (one tree ensemble per
    fold serves every tree count: the smaller ensembles are its prefixes; each linear fit starts from
    the one at the next stronger pull, a regularisation path)."""
    margins = {name: np.zeros_like(offset) for name in candidates}
    most_trees = max((int(value) for kind, value in candidates.values() if kind == "trees"), default=0)
    for fold in np.unique(folds_of):
        held = np.flatnonzero(folds_of == fold)
        train = np.flatnonzero(folds_of != fold)
        staged, previous = None, None
        if most_trees:
            columns = np.column_stack([offset, design.dense])
            booster = fit_booster(columns[train], offset[train], y[train], w[train], trees=most_trees)
            staged = np.cumsum(booster.leaf_values(columns[held]), axis=1)
        for name, (kind, value) in candidates.items():
            if kind == "trees" and staged is not None:
                margins[name][held] = staged[:, int(value) - 1]
            elif kind in ("shift", "linear"):
                delta = _fit(design.matrix[train], offset[train], y[train], w[train], value, previous)
                margins[name][held] = design.matrix[held] @ delta
                previous = delta if kind == "linear" else previous
    result = {}
    for name, margin in margins.items():
        z = offset + margin
        result[name] = np.logaddexp(0.0, z) - y * z
    return result


def _within_one_error(candidate: FloatArray, best: FloatArray, w: FloatArray) -> bool:
    """Whether the candidate's mean held-out loss exceeds the best's by at most one standard error of
    the (paired, weighted) difference."""
    difference = candidate - best
    share = w / w.sum()
    mean = float((share * difference).sum())
    variance = float((share * (difference - mean) ** 2).sum())
    effective_n = float(w.sum() ** 2 / (w**2).sum())
    return mean <= math.sqrt(variance / effective_n) + 1e-12


def _fold_into(base: QueryScorer, column_ids: npt.NDArray[np.intp], delta: FloatArray) -> QueryScorer:
    """A new scorer whose raw difficulty logit is the base's plus delta / (Platt slope): after the
    base's calibration that is exactly the base's calibrated logit plus the correction."""
    slope = base.platt_[0].a
    if not slope > 0:
        raise ValueError(f"the base's difficulty calibration has slope {slope}: cannot fold a correction into it")
    arrays = {name: np.array(value, copy=True) for name, value in base.arrays().items()}
    n_used, n_dense = column_ids.shape[0], arrays["dense_weights"].shape[0]
    hashed = arrays["hashed_weights"].astype(np.float64)
    hashed[column_ids, 0] += delta[:n_used] / slope
    arrays["hashed_weights"] = hashed.astype(np.float32)
    arrays["dense_weights"][:, 0] += delta[n_used : n_used + n_dense] / slope
    arrays["intercept"][0] += delta[-1] / slope
    calibration = {"difficulty": base.platt_[0], "stakes": base.platt_[1]}
    return QueryScorer.from_state(arrays, base.feature_config(), calibration, base.get_params())
