"""Everything the service holds between requests, made at startup and kept on the app."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Protocol

from fastapi import Request

from router.auth import Authenticator
from router.cache_types import CacheFront
from router.config import Settings
from router.events import EventSink, RequestEvent
from router.mixture import MixtureEngine
from router.policy import BudgetState
from router.prompt_hash import PromptHasher
from router.providers.registry import ProviderSet
from router.scoring import ActiveClassifier

logger = logging.getLogger(__name__)


class BudgetGuard(Protocol):
    def state(self, tenant: str) -> BudgetState: ...


@dataclass(slots=True)
class AppState:
    settings: Settings
    providers: ProviderSet
    engine: MixtureEngine
    classifier: ActiveClassifier
    auth: Authenticator
    cache: CacheFront
    sinks: list[EventSink] = field(default_factory=list)
    budget: BudgetGuard | None = None
    redis: Any | None = None  # redis.asyncio.Redis when configured
    prompt_hasher: PromptHasher = field(default_factory=PromptHasher.ephemeral)  # the shared key: at startup
    components: dict[str, Any] = field(default_factory=dict)  # other startup-made parts, by name

    def record(self, event: RequestEvent) -> None:
        for sink in self.sinks:
            sink.record(event)


def get_state(request: Request) -> AppState:
    state: AppState = request.app.state.moa
    return state
