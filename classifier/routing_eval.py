"""Routing quality of a scorer on outcome data, next to the random, prompt-length and oracle routers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from classifier.metrics import RoutingCurve, RoutingReport, routing_curve, routing_report
from classifier.routing_data import RoutingOutcomes
from classifier.scorer import QueryScorer

RankBy = Literal["difficulty", "stakes", "max"]
RANK_BY: tuple[RankBy, ...] = ("difficulty", "stakes", "max")


@dataclass(frozen=True, slots=True)
class RouterResult:
    curve: RoutingCurve
    report: RoutingReport


def router_scores(scorer: QueryScorer, texts: list[str], rank_by: RankBy = "difficulty") -> npt.NDArray[np.float64]:
    """The score each query is ranked by: one head's probability or the larger of the two."""
    probabilities = scorer.predict_proba(texts)
    if rank_by == "difficulty":
        return probabilities[:, 0]
    if rank_by == "stakes":
        return probabilities[:, 1]
    return np.asarray(probabilities.max(axis=1), dtype=np.float64)


def evaluate_routers(
    outcomes: RoutingOutcomes, named_scores: dict[str, npt.NDArray[np.float64]], baselines: bool = True
) -> dict[str, RouterResult]:
    """Curves and reports for each named score; with `baselines`, also random, prompt length and oracle.

    The random router is a constant score (every order equally likely, see classifier.metrics), so its
    figures are the exact expectation rather than one draw.
    """
    scores = dict(named_scores)
    if baselines:
        scores["random"] = np.zeros(len(outcomes.texts))
        scores["prompt-length"] = np.array([float(len(text)) for text in outcomes.texts])
        scores["oracle"] = outcomes.strong_quality - outcomes.cheap_quality
    results = {}
    for name, values in scores.items():
        curve = routing_curve(
            values, outcomes.cheap_quality, outcomes.strong_quality, outcomes.cheap_cost, outcomes.strong_cost
        )
        results[name] = RouterResult(curve=curve, report=routing_report(curve, len(outcomes.texts)))
    return results
