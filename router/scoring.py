"""The classifier as the service holds it: the active version, swappable at run time (hot reload)."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from classifier.registry import LoadedModel, ModelRegistry
from classifier.scorer import Scores
from router.config import PolicySettings
from router.policy import Thresholds


@dataclass(frozen=True, slots=True)
class ScoredQuery:
    scores: Scores
    version: str
    thresholds: Thresholds
    elapsed_s: float


def thresholds_for(meta: Mapping[str, Any], policy: PolicySettings) -> Thresholds:
    """The version's calibrated thresholds, each overridden by the config when the config sets it."""
    base = Thresholds.from_meta(meta.get("thresholds"))
    return Thresholds(
        difficulty=base.difficulty if policy.difficulty is None else policy.difficulty,
        stakes=base.stakes if policy.stakes is None else policy.stakes,
        stakes_min_difficulty=(
            base.stakes_min_difficulty if policy.stakes_min_difficulty is None else policy.stakes_min_difficulty
        ),
    )


class ActiveClassifier:
    def __init__(self, registry: ModelRegistry, policy: PolicySettings) -> None:
        self.registry = registry
        self._policy = policy
        self._model: LoadedModel = registry.load()
        self._thresholds = thresholds_for(self._model.meta, policy)

    @classmethod
    def from_data_dir(cls, data_dir: Path, policy: PolicySettings) -> ActiveClassifier:
        return cls(ModelRegistry(data_dir / "models"), policy)

    @property
    def version(self) -> str:
        return self._model.version

    @property
    def thresholds(self) -> Thresholds:
        return self._thresholds

    def swap(self, model: LoadedModel) -> None:
        """Replace the active version. One assignment, so a request in flight sees old or new, never a mix."""
        self._model, self._thresholds = model, thresholds_for(model.meta, self._policy)

    def score(self, messages: Sequence[Mapping[str, Any]]) -> ScoredQuery:
        model, thresholds = self._model, self._thresholds
        started = time.perf_counter()
        scores = model.scorer.score_messages(messages)
        return ScoredQuery(scores, model.version, thresholds, time.perf_counter() - started)
