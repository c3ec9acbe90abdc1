from dataclasses import dataclass

import pytest

from router.policy import BudgetState, RouteDecision, Thresholds, decide

T = Thresholds(difficulty=0.6, stakes=0.5, stakes_min_difficulty=0.2)


@dataclass
class S:
    difficulty: float
    stakes: float


@pytest.mark.parametrize(
    ("scores", "override", "expected"),
    [
        (S(0.1, 0.1), "auto", RouteDecision("cheap", "easy")),
        (S(0.6, 0.0), "auto", RouteDecision("mixture", "difficulty")),
        (S(0.59, 0.0), "auto", RouteDecision("cheap", "easy")),
        (S(0.3, 0.5), "auto", RouteDecision("mixture", "stakes")),
        (S(0.1, 0.9), "auto", RouteDecision("cheap", "easy")),  # high stakes but trivial
        (S(0.9, 0.9), "cheap", RouteDecision("cheap", "override")),
        (S(0.0, 0.0), "mixture", RouteDecision("mixture", "override")),
    ],
)
def test_every_branch(scores: S, override: str, expected: RouteDecision) -> None:
    assert decide(scores, T, override) == expected  # type: ignore[arg-type]


def test_budget_exhausted_degrades_escalations_only() -> None:
    exhausted = BudgetState(mixture_allowed=False, fallback="strong")
    assert decide(S(0.9, 0.0), T, "auto", exhausted) == RouteDecision("strong", "budget")
    assert decide(S(0.0, 0.0), T, "mixture", exhausted) == RouteDecision("strong", "budget")
    assert decide(S(0.1, 0.1), T, "auto", exhausted) == RouteDecision("cheap", "easy")
    assert decide(S(0.9, 0.9), T, "auto", BudgetState()) == RouteDecision("mixture", "difficulty")


def test_thresholds_from_meta_fill_missing_with_defaults() -> None:
    assert Thresholds.from_meta(None) == Thresholds()
    assert Thresholds.from_meta({"difficulty": 0.7}) == Thresholds(0.7, Thresholds().stakes,
                                                                   Thresholds().stakes_min_difficulty)
