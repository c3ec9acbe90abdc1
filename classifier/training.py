"""Training a classifier version: split, fit, evaluate on the held-back rows, choose thresholds.

`train_version` is the one entry point; `moa-router train` is a thin command line over it. Training
from logged outcomes passes them as `logged` rows (with a per-row `weight`): the base is fitted on the
seed rows, then its difficulty head is corrected towards the outcomes (classifier.adaptation).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from classifier import metrics
from classifier.adaptation import adapt_difficulty
from classifier.calibration import choose_thresholds
from classifier.dataset import Row, data_sha256, row_text, split_rows
from classifier.scorer import HEADS, QueryScorer

DEFAULT_HELD_BACK_FRACTION = 0.2
DEFAULT_ESCALATION_RATE = 0.2
# A new version may trail the active one by this much AUROC on a head and still count as "not worse":
# held-back sets of a few hundred rows move AUROC by about this much between equally good models.
PROMOTION_TOLERANCE = 0.005


@dataclass(frozen=True, slots=True)
class LabelledData:
    texts: list[str]
    difficulty: npt.NDArray[np.float64]
    stakes: npt.NDArray[np.float64]
    weight: npt.NDArray[np.float64]

    @classmethod
    def from_rows(cls, rows: Sequence[Mapping[str, Any]]) -> LabelledData:
        return cls(
            texts=[row_text(row) for row in rows],
            difficulty=np.array([float(row["difficulty"]) for row in rows]),
            stakes=np.array([float(row["stakes"]) for row in rows]),
            weight=np.array([float(row.get("weight", 1.0)) for row in rows]),
        )


def train_version(
    rows: Sequence[Row],
    *,
    logged: Sequence[Row] = (),
    held_back_fraction: float = DEFAULT_HELD_BACK_FRACTION,
    target_escalation_rate: float = DEFAULT_ESCALATION_RATE,
    params: Mapping[str, Any] | None = None,
) -> tuple[QueryScorer, dict[str, Any]]:
    """Fit a scorer on the training split and describe it: (scorer, meta for the registry).

    The held-back split (a stable hash of each row's id) is never fitted on: it measures the version,
    and the policy thresholds are chosen on it for `target_escalation_rate`. `logged` rows (outcomes
    of this deployment) correct the difficulty head of the version fitted on `rows`.
    """
    train_rows, held_rows = split_rows(rows, held_back_fraction)
    if not train_rows or not held_rows:
        raise ValueError(f"need rows on both sides of the split, got {len(train_rows)} and {len(held_rows)}")
    train = LabelledData.from_rows(train_rows)
    scorer = QueryScorer(**dict(params or {}))
    scorer.fit(train.texts, train.difficulty, train.stakes, sample_weight=train.weight)
    logged_train, logged_held = split_rows(logged, held_back_fraction)
    adaptation = None
    if logged_train:
        outcomes = LabelledData.from_rows(logged_train)
        scorer, adaptation = adapt_difficulty(scorer, outcomes.texts, outcomes.difficulty, outcomes.weight)
    held_rows = [*held_rows, *logged_held]

    held = LabelledData.from_rows(held_rows)
    probabilities = scorer.predict_proba(held.texts)
    choice = choose_thresholds(
        probabilities[:, 0],
        probabilities[:, 1],
        held.difficulty,
        held.stakes,
        target_escalation_rate=target_escalation_rate,
    )
    meta: dict[str, Any] = {
        "training_data_sha256": data_sha256([*rows, *logged]),
        "n_train": len(train_rows) + len(logged_train),
        "n_held_back": len(held_rows),
        "split": {"method": "sha256(split_key, else id) < fraction", "held_back_fraction": held_back_fraction},
        "metrics": {"held_back": labelled_metrics_from(held, probabilities)},
        "thresholds": choice.thresholds(),
        "threshold_choice": {
            "target_escalation_rate": target_escalation_rate,
            "escalation_rate": choice.escalation_rate,
            "difficult_recall": choice.difficult_recall,
            "stakes_recall": choice.stakes_recall,
        },
    }
    if logged:
        meta["logged_outcomes"] = {"n_train": len(logged_train), "n_held_back": len(logged_held)}
    if adaptation is not None:
        meta["adaptation"] = adaptation.to_json()
    return scorer, meta


def labelled_metrics(scorer: QueryScorer, rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """AUROC, ECE, log loss and Brier score of both heads on labelled rows."""
    data = LabelledData.from_rows(rows)
    return labelled_metrics_from(data, scorer.predict_proba(data.texts))


def labelled_metrics_from(data: LabelledData, probabilities: npt.NDArray[np.float64]) -> dict[str, Any]:
    result: dict[str, Any] = {"n": len(data.texts)}
    for column, head in enumerate(HEADS):
        labels = data.difficulty if head == "difficulty" else data.stakes
        p = probabilities[:, column]
        both_classes = 0 < labels.sum() < labels.shape[0]
        result[head] = {
            "auroc": metrics.auroc(labels, p) if both_classes else None,
            "ece": metrics.expected_calibration_error(labels, p),
            "log_loss": metrics.log_loss(labels, p),
            "brier": metrics.brier(labels, p),
            "positive_rate": float(labels.mean()),
            "mean_probability": float(p.mean()),
        }
    return result


def not_worse(candidate: Mapping[str, Any], incumbent: Mapping[str, Any]) -> bool:
    """Whether candidate metrics (from labelled_metrics) are not worse than the incumbent's on both heads.

    The difficulty head decides the route, so without its AUROC on both sides (held-back rows of one
    class) nothing shows the candidate is not worse; an undefined stakes AUROC is not compared.
    """
    if candidate["difficulty"]["auroc"] is None or incumbent["difficulty"]["auroc"] is None:
        return False
    for head in HEADS:
        new, old = candidate[head]["auroc"], incumbent[head]["auroc"]
        if new is None or old is None:
            continue
        if new < old - PROMOTION_TOLERANCE:
            return False
    return True
