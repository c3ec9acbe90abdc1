"""Fitting the scorer's heads with scikit-learn (training only; never imported on the request path)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from classifier.calibration import Platt, fit_platt
from classifier.features import Featurizer

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class FittedHeads:
    arrays: dict[str, npt.NDArray[Any]]
    platt: tuple[Platt, Platt]
    out_of_fold_logits: FloatArray  # (n, 2), the logits Platt scaling was fitted on


def feature_matrix(featurizer: Featurizer, texts: Sequence[str]) -> tuple[Any, FloatArray]:
    """(hashed n-gram CSR matrix, raw dense signals): the exact features inference computes.

    A row of the hashed part holds 1/sqrt(number of n-grams) per n-gram occurrence (repeats summed),
    which is what the scorer's `ones @ weights[indices] / sqrt(n)` computes at inference.
    """
    sparse = _sparse()
    indices, owner, dense = featurizer.transform_batch(texts)
    counts = np.bincount(owner, minlength=len(texts))
    values = 1.0 / np.sqrt(counts[owner])
    hashed = sparse.coo_matrix(
        (values, (owner, indices)), shape=(len(texts), featurizer.config.n_buckets)
    ).tocsr()  # repeats of an n-gram in a text are summed
    return hashed, dense


def fit_heads(
    featurizer: Featurizer,
    texts: Sequence[str],
    y_difficulty: FloatArray,
    y_stakes: FloatArray,
    sample_weight: FloatArray | None,
    *,
    C: float,
    folds: int,
    random_state: int,
) -> FittedHeads:
    """Fit both logistic heads on all rows, and Platt scaling on out-of-fold logits."""
    from sklearn.model_selection import StratifiedKFold

    if len(texts) != len(y_difficulty) or len(texts) != len(y_stakes):
        raise ValueError("texts and labels differ in length")
    sparse = _sparse()
    hashed, dense = feature_matrix(featurizer, texts)
    low, high = dense.min(axis=0), dense.max(axis=0)
    mean = dense.mean(axis=0)
    scale = dense.std(axis=0)
    scale[scale == 0.0] = 1.0  # a constant signal carries no information; keep it harmless
    matrix = sparse.hstack([hashed, sparse.csr_matrix((dense - mean) / scale)], format="csr")
    weights = np.ones(len(texts)) if sample_weight is None else sample_weight

    coefficients, intercepts, platts = [], [], []
    out_of_fold = np.zeros((len(texts), 2))
    for head, labels in enumerate((y_difficulty, y_stakes)):
        if len(np.unique(labels)) < 2:
            raise ValueError(f"the {('difficulty', 'stakes')[head]} labels are all {labels[0]:g}: nothing to learn")
        splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=random_state)
        for train, held in splitter.split(np.zeros(len(labels)), labels):
            model = _logistic(C, random_state).fit(matrix[train], labels[train], sample_weight=weights[train])
            out_of_fold[held, head] = model.decision_function(matrix[held])
        platts.append(fit_platt(out_of_fold[:, head], labels, weights))
        model = _logistic(C, random_state).fit(matrix, labels, sample_weight=weights)
        coefficients.append(model.coef_[0])
        intercepts.append(float(model.intercept_[0]))
    coef = np.stack(coefficients, axis=1)
    n_buckets = featurizer.config.n_buckets
    return FittedHeads(
        arrays={
            "hashed_weights": coef[:n_buckets].astype(np.float32),
            "dense_weights": coef[n_buckets:],
            "dense_mean": mean,
            "dense_scale": scale,
            "dense_low": low,
            "dense_high": high,
            "intercept": np.array(intercepts),
        },
        platt=(platts[0], platts[1]),
        out_of_fold_logits=out_of_fold,
    )


def _logistic(C: float, random_state: int) -> Any:
    from sklearn.linear_model import LogisticRegression

    # liblinear is ~10x faster than lbfgs on these wide sparse matrices at the same held-back quality.
    return LogisticRegression(C=C, solver="liblinear", max_iter=2000, random_state=random_state)


def _sparse() -> Any:
    from scipy import sparse

    return sparse
