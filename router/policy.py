"""The routing policy: a small pure function of scores, the client's override and budget state."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, Protocol

# "strong" is one call to a single strong model: a budget fallback cheaper than the mixture.
RouteName = Literal["cheap", "mixture", "strong"]
RouteOverride = Literal["auto", "cheap", "mixture"]
ROUTE_OVERRIDES: tuple[RouteOverride, ...] = ("auto", "cheap", "mixture")


class ScoresLike(Protocol):
    @property
    def difficulty(self) -> float: ...

    @property
    def stakes(self) -> float: ...


@dataclass(frozen=True, slots=True)
class Thresholds:
    """Escalate when difficulty >= `difficulty`, or when stakes >= `stakes` and the query is at least
    `stakes_min_difficulty` hard (a trivial high-stakes ask such as a greeting in a clinic's chat does
    not need the mixture). Set by `moa-router calibrate`, stored in the classifier version's meta."""

    difficulty: float = 0.5
    stakes: float = 0.5
    stakes_min_difficulty: float = 0.2

    @classmethod
    def from_meta(cls, meta: Mapping[str, float] | None) -> Thresholds:
        if not meta:
            return cls()
        default = cls()
        return cls(
            difficulty=float(meta.get("difficulty", default.difficulty)),
            stakes=float(meta.get("stakes", default.stakes)),
            stakes_min_difficulty=float(meta.get("stakes_min_difficulty", default.stakes_min_difficulty)),
        )


@dataclass(frozen=True, slots=True)
class BudgetState:
    """Whether the mixture may still be paid for; `fallback` is where escalations go when it may not."""

    mixture_allowed: bool = True
    fallback: RouteName = "cheap"


@dataclass(frozen=True, slots=True)
class RouteDecision:
    route: RouteName
    reason: str  # override | difficulty | stakes | easy | budget


def decide(
    scores: ScoresLike,
    thresholds: Thresholds,
    override: RouteOverride = "auto",
    budget: BudgetState | None = None,
) -> RouteDecision:
    if override == "cheap":
        return RouteDecision("cheap", "override")
    if override == "mixture":
        wanted = RouteDecision("mixture", "override")
    elif scores.difficulty >= thresholds.difficulty:
        wanted = RouteDecision("mixture", "difficulty")
    elif scores.stakes >= thresholds.stakes and scores.difficulty >= thresholds.stakes_min_difficulty:
        wanted = RouteDecision("mixture", "stakes")
    else:
        return RouteDecision("cheap", "easy")
    if budget is not None and not budget.mixture_allowed:
        return RouteDecision(budget.fallback, "budget")
    return wanted
