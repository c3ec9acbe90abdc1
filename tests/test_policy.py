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
    assert Thresholds.from_meta({"difficulty": 0.7}) == Thresholds(
        0.7, Thresholds().stakes, Thresholds().stakes_min_difficulty
    )


VERSION_META = {"thresholds": {"difficulty": 0.6, "stakes": 0.5, "stakes_min_difficulty": 0.2}}


def test_config_thresholds_override_the_versions_one_by_one() -> None:
    from router.config import PolicySettings
    from router.scoring import thresholds_for

    assert thresholds_for(VERSION_META, PolicySettings()) == Thresholds(0.6, 0.5, 0.2)
    assert thresholds_for(VERSION_META, PolicySettings(stakes=0.8)) == Thresholds(0.6, 0.8, 0.2)
    assert thresholds_for({}, PolicySettings(difficulty=0.7)) == Thresholds(0.7, 0.5, 0.2)  # defaults fill the rest


@pytest.mark.parametrize(
    "policy",
    [
        {"difficulty": 0.3, "stakes": 0.4, "stakes_min_difficulty": 0.5},  # all from the config
        {"difficulty": 0.15},  # under the version's stakes_min_difficulty (0.2)
        {"stakes_min_difficulty": 0.6, "stakes": 0.3},  # at the version's difficulty
    ],
)
def test_warns_when_the_config_leaves_the_stakes_threshold_without_effect(
    caplog: pytest.LogCaptureFixture, policy: dict[str, float]
) -> None:
    # Every query the stakes rule would escalate is at least `difficulty` hard: escalated by difficulty
    # already. An operator who set policy.stakes to send high-stakes asks to the mixture got no such escalation.
    import logging

    from router.config import PolicySettings
    from router.scoring import thresholds_for

    with caplog.at_level(logging.WARNING, logger="router.scoring"):
        thresholds = thresholds_for(VERSION_META, PolicySettings(**policy))
    assert thresholds.stakes_min_difficulty >= thresholds.difficulty
    assert "stakes threshold has no effect" in caplog.text and "policy." in caplog.text


def test_no_warning_for_the_versions_own_thresholds_or_a_working_override(caplog: pytest.LogCaptureFixture) -> None:
    import logging

    from router.config import PolicySettings
    from router.scoring import thresholds_for

    with caplog.at_level(logging.WARNING, logger="router.scoring"):
        thresholds_for(VERSION_META, PolicySettings(difficulty=0.7, stakes=0.3))
        thresholds_for(VERSION_META, PolicySettings())
        # A calibrated version that never escalates by stakes says so with a threshold above 1.
        thresholds_for(
            {"thresholds": {"difficulty": 0.4, "stakes": 1.0000000000000002, "stakes_min_difficulty": 0.5}},
            PolicySettings(),
        )
    assert caplog.text == ""
