"""A small boosted ensemble of depth-2 trees that corrects the difficulty head's calibrated logit.

A linear head cannot say "for code asks, a higher score from the seed means less, not more": what a
deployment's outcomes teach is often an interaction between the seed's own score and the kind of ask
(its length, code, options, few-shot frame: the dense signals). Depth-2 trees over [the calibrated
logit, the dense signals] express exactly that, and boosting them from the calibrated logit (the
first margin is the base's) leaves the base unchanged when no tree is fitted.

Fitting is Newton boosting for log loss (each leaf -G / (H + l2), shrunk by the learning rate, every
leaf holding at least `min_leaf` rows), in numpy: a few hundred to a few thousand rows, 27 columns.
Inference is a handful of numpy operations over all trees at once, whatever their number.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]
ARRAY_NAMES: tuple[str, ...] = ("booster_feature", "booster_threshold", "booster_leaf")
# A node that could not be split sends every row left (finite: artifacts refuse infinities).
_NEVER = float(np.finfo(np.float64).max)


@dataclass(slots=True)
class Booster:
    """Trees over columns [calibrated logit, dense signals...]; node 0 is the root, 1 and 2 its left
    and right children; leaves 0..3 from left to right; a row goes right when its value > threshold."""

    feature: IntArray  # (trees, 3)
    threshold: FloatArray  # (trees, 3)
    leaf: FloatArray  # (trees, 4)
    # One tuple per tree for margin_one: at a few dozen trees a plain loop beats numpy's per-call cost.
    _rows: list[tuple[int, float, int, float, int, float, float, float, float, float]] = field(
        init=False, repr=False
    )

    def __post_init__(self) -> None:
        trees = self.feature.shape[0]
        if self.feature.shape != (trees, 3) or self.threshold.shape != (trees, 3) or self.leaf.shape != (trees, 4):
            raise ValueError("booster arrays must be (trees, 3), (trees, 3) and (trees, 4)")
        self._rows = [
            (f0, t0, f1, t1, f2, t2, l0, l1, l2, l3)
            for (f0, f1, f2), (t0, t1, t2), (l0, l1, l2, l3) in zip(
                self.feature.tolist(), self.threshold.tolist(), self.leaf.tolist(), strict=True
            )
        ]

    @property
    def trees(self) -> int:
        return int(self.feature.shape[0])

    def arrays(self) -> dict[str, npt.NDArray[np.float64] | IntArray]:
        return {"booster_feature": self.feature, "booster_threshold": self.threshold, "booster_leaf": self.leaf}

    @classmethod
    def from_arrays(cls, arrays: dict[str, npt.NDArray[np.float64] | IntArray]) -> Booster:
        return cls(
            feature=np.asarray(arrays["booster_feature"], dtype=np.intp),
            threshold=np.asarray(arrays["booster_threshold"], dtype=np.float64),
            leaf=np.asarray(arrays["booster_leaf"], dtype=np.float64),
        )

    def leaf_values(self, columns: FloatArray) -> FloatArray:
        """Each tree's leaf for each row of `columns` (n, 1 + dense): shape (n, trees)."""
        rows = np.arange(columns.shape[0])[:, None]
        trees = np.arange(self.trees)[None, :]
        right = columns[rows, self.feature[None, :, 0]] > self.threshold[None, :, 0]
        child = 1 + right
        right_child = columns[rows, self.feature[trees, child]] > self.threshold[trees, child]
        values: FloatArray = self.leaf[trees, 2 * right + right_child]
        return values

    def margins(self, columns: FloatArray) -> FloatArray:
        """The sum of all trees' leaves for each row of `columns` (n, 1 + dense)."""
        total: FloatArray = self.leaf_values(columns).sum(axis=1)
        return total

    def margin_one(self, columns: Sequence[float]) -> float:
        """The sum of all trees' leaves for one row (the request path)."""
        total = 0.0
        for f0, t0, f1, t1, f2, t2, l0, l1, l2, l3 in self._rows:
            if columns[f0] > t0:
                total += l3 if columns[f2] > t2 else l2
            else:
                total += l1 if columns[f1] > t1 else l0
        return total

    def for_unclipped(self, low: FloatArray, high: FloatArray) -> Booster:
        """The same trees for columns 1.. not yet clipped to [low, high]: clip(x) > t is x > t inside
        the range, never when t >= high, always when t < low, so the clipping folds into thresholds."""
        threshold = self.threshold.copy()
        for node in range(3):
            column = self.feature[:, node]
            dense = column > 0
            lo, hi = low[column[dense] - 1], high[column[dense] - 1]
            t = threshold[dense, node]
            threshold[dense, node] = np.where(t >= hi, _NEVER, np.where(t < lo, -_NEVER, t))
        return Booster(self.feature, threshold, self.leaf)


def fit_booster(
    columns: FloatArray,
    offset: FloatArray,
    y: FloatArray,
    w: FloatArray,
    *,
    trees: int,
    learning_rate: float = 0.1,
    min_leaf: int = 20,
    l2: float = 1.0,
) -> Booster:
    """Boost `trees` depth-2 trees from the margin `offset` (its prefixes are the ensembles of fewer
    trees, so one fit serves every candidate count)."""
    n = columns.shape[0]
    order = np.argsort(columns, axis=0, kind="stable")
    sorted_values = np.take_along_axis(columns, order, axis=0)
    margin = offset.astype(np.float64).copy()
    feature = np.zeros((trees, 3), dtype=np.intp)
    threshold = np.full((trees, 3), _NEVER)
    leaf = np.zeros((trees, 4))
    everyone = np.ones(n, dtype=np.bool_)
    for t in range(trees):
        p = 0.5 * (1.0 + np.tanh(0.5 * margin))
        g, h = w * (p - y), w * p * (1.0 - p)
        root = _best_split(order, sorted_values, g, h, everyone, min_leaf, l2)
        if root is not None:
            feature[t, 0], threshold[t, 0] = root
        goes_right = columns[:, feature[t, 0]] > threshold[t, 0]
        for child, members in ((1, ~goes_right), (2, goes_right)):
            split = _best_split(order, sorted_values, g, h, members, min_leaf, l2)
            if split is not None:
                feature[t, child], threshold[t, child] = split
        for child, members in ((1, ~goes_right), (2, goes_right)):
            right = columns[:, feature[t, child]] > threshold[t, child]
            for side, in_leaf in ((0, members & ~right), (1, members & right)):
                index = 2 * (child - 1) + side
                leaf[t, index] = -learning_rate * float(g[in_leaf].sum()) / (float(h[in_leaf].sum()) + l2)
                margin[in_leaf] += leaf[t, index]
    return Booster(feature, threshold, leaf)


def _best_split(
    order: IntArray,
    sorted_values: FloatArray,
    g: FloatArray,
    h: FloatArray,
    members: npt.NDArray[np.bool_],
    min_leaf: int,
    l2: float,
) -> tuple[int, float] | None:
    """(column, threshold) of the split of `members` with the largest Newton gain, or None."""
    count = int(members.sum())
    if count < 2 * min_leaf:
        return None
    total_g, total_h = float(g[members].sum()), float(h[members].sum())
    parent = total_g * total_g / (total_h + l2)
    best_gain, best = 1e-12, None
    for column in range(order.shape[1]):
        rows = order[:, column]
        inside = members[rows]
        values = sorted_values[inside, column]
        left_g = np.cumsum(g[rows][inside])[:-1]
        left_h = np.cumsum(h[rows][inside])[:-1]
        left_n = np.arange(1, count)
        # Only between two different values, with enough rows on both sides.
        valid = (values[1:] > values[:-1]) & (left_n >= min_leaf) & (count - left_n >= min_leaf)
        if not valid.any():
            continue
        right_g, right_h = total_g - left_g, total_h - left_h
        gain = left_g * left_g / (left_h + l2) + right_g * right_g / (right_h + l2) - parent
        gain[~valid] = -math.inf
        at = int(np.argmax(gain))
        if gain[at] > best_gain:
            best_gain, best = float(gain[at]), (column, float((values[at] + values[at + 1]) / 2.0))
    return best
