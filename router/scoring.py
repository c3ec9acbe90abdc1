"""The classifier as the service holds it: the active version, swappable at run time (hot reload).

A replica whose promoted version cannot be loaded (its files missing or corrupt on this replica) still
serves: at startup with the latest version of the registry's HISTORY it can load, else the shipped seed;
after a failed hot reload with the version it was serving. It says so in its health (`/readyz`), its
metrics and its log until it serves the promoted version again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from classifier.artifacts import ArtifactError
from classifier.registry import SEED_VERSION, LoadedModel, ModelRegistry, VersionNotFoundError
from classifier.scorer import Scores
from router.config import PolicySettings
from router.policy import Thresholds

logger = logging.getLogger(__name__)

LoadStage = Literal["startup", "reload"]
LOAD_STAGES: tuple[LoadStage, ...] = ("startup", "reload")


@dataclass(frozen=True, slots=True)
class LoadFailure:
    """The promoted version, which this replica could not load: it serves another meanwhile."""

    version: str
    problem: Literal["missing", "unreadable"]  # no such version here | its files are corrupt or unreadable
    error: str  # the full reason, for the log (it names paths, so it is not shown over HTTP)
    stage: LoadStage
    since: float  # time.time() of the first failed load


@dataclass(frozen=True, slots=True)
class ClassifierHealth:
    serving: str
    failure: LoadFailure | None
    failed_loads: Mapping[LoadStage, int]  # versions that failed to load since the start, by stage


HealthListener = Callable[[ClassifierHealth], None]


def load_failure(version: str, exc: Exception, stage: LoadStage) -> LoadFailure:
    problem: Literal["missing", "unreadable"] = "missing" if isinstance(exc, VersionNotFoundError) else "unreadable"
    return LoadFailure(version, problem, str(exc), stage, time.time())


@dataclass(frozen=True, slots=True)
class ScoredQuery:
    scores: Scores
    version: str
    thresholds: Thresholds
    elapsed_s: float


def thresholds_for(meta: Mapping[str, Any], policy: PolicySettings) -> Thresholds:
    """The version's calibrated thresholds, each overridden by the config when the config sets it."""
    base = Thresholds.from_meta(meta.get("thresholds"))
    chosen = Thresholds(
        difficulty=base.difficulty if policy.difficulty is None else policy.difficulty,
        stakes=base.stakes if policy.stakes is None else policy.stakes,
        stakes_min_difficulty=(
            base.stakes_min_difficulty if policy.stakes_min_difficulty is None else policy.stakes_min_difficulty
        ),
    )
    overridden = [name for name, value in policy.model_dump().items() if value is not None]
    # A stakes threshold above 1 is calibrate's "never by stakes"; at or below it, it should be able to act.
    if overridden and chosen.stakes <= 1.0 and chosen.stakes_min_difficulty >= chosen.difficulty:
        logger.warning(
            "the stakes threshold has no effect: stakes_min_difficulty (%g) is not below difficulty (%g), so "
            "every query it would escalate is escalated by difficulty already (the config sets %s over the "
            "classifier version's thresholds)",
            chosen.stakes_min_difficulty,
            chosen.difficulty,
            ", ".join(f"policy.{name}" for name in overridden),
        )
    return chosen


class ActiveClassifier:
    def __init__(self, registry: ModelRegistry, policy: PolicySettings) -> None:
        self.registry = registry
        self._policy = policy
        self._failure: LoadFailure | None = None
        self._failed_loads: dict[LoadStage, int] = dict.fromkeys(LOAD_STAGES, 0)
        self._listeners: list[HealthListener] = []
        self._model: LoadedModel = self._load_at_startup()
        self._thresholds = thresholds_for(self._model.meta, policy)

    @classmethod
    def from_data_dir(cls, data_dir: Path, policy: PolicySettings) -> ActiveClassifier:
        return cls(ModelRegistry(data_dir / "models"), policy)

    def _load_at_startup(self) -> LoadedModel:
        """The active version or, when it cannot be loaded, the latest loadable one before it (HISTORY,
        newest first, then the seed): a model file must not keep the service down."""
        active = self.registry.active_version()
        candidates = list(dict.fromkeys([active, *reversed(self.registry.history()), SEED_VERSION]))
        failed: list[tuple[str, Exception]] = []
        for version in candidates:
            try:
                model = self.registry.load(version)
            except (VersionNotFoundError, ArtifactError) as exc:
                failed.append((version, exc))
                self._failed_loads["startup"] += 1
                continue
            if failed:
                self._failure = load_failure(active, failed[0][1], "startup")
                also = "".join(f"; {name} failed too: {exc}" for name, exc in failed[1:])
                logger.error(
                    "cannot load the active classifier version %s: %s%s; serving %s instead until a loadable "
                    "version is promoted or %s's files are restored",
                    active,
                    failed[0][1],
                    also,
                    version,
                    active,
                )
            return model
        raise failed[0][1]  # not even the shipped seed: a broken install, nothing to serve

    @property
    def version(self) -> str:
        return self._model.version

    @property
    def thresholds(self) -> Thresholds:
        return self._thresholds

    @property
    def failure(self) -> LoadFailure | None:
        """Why this replica does not serve the promoted version (None when it does)."""
        return self._failure

    def health(self) -> ClassifierHealth:
        return ClassifierHealth(self.version, self._failure, dict(self._failed_loads))

    def watch(self, listener: HealthListener) -> None:
        """Call `listener` with the health now (failures at startup included) and after every change."""
        self._listeners.append(listener)
        listener(self.health())

    def _changed(self) -> None:
        health = self.health()
        for listener in self._listeners:
            listener(health)

    def swap(self, model: LoadedModel) -> None:
        """Replace the active version. One assignment, so a request in flight sees old or new, never a mix."""
        self._model, self._thresholds = model, thresholds_for(model.meta, self._policy)
        self._failure = None  # only a promoted version is swapped in
        self._changed()

    def failed_to_load(self, version: str, exc: Exception, stage: LoadStage) -> bool:
        """The promoted `version` cannot be loaded; the current version keeps serving. True when this is
        news (not the version already failing), which the caller logs."""
        if self._failure is not None and self._failure.version == version:
            return False
        self._failure = load_failure(version, exc, stage)
        self._failed_loads[stage] += 1
        self._changed()
        return True

    def serves_promoted(self) -> None:
        """The promoted version is the one serving (a rollback to it): no longer degraded."""
        if self._failure is not None:
            logger.info(
                "classifier %s is the promoted version again (%s could not be loaded)",
                self.version,
                self._failure.version,
            )
            self._failure = None
            self._changed()

    def score(self, messages: Sequence[Mapping[str, Any]]) -> ScoredQuery:
        model, thresholds = self._model, self._thresholds
        started = time.perf_counter()
        scores = model.scorer.score_messages(messages)
        return ScoredQuery(scores, model.version, thresholds, time.perf_counter() - started)
