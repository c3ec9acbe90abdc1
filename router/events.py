"""The outcome event: one record per request, fanned out to the outcome log, stats and metrics."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from router.mixture import CallRecord, total_usage
from router.providers.base import CompletionRequest, Usage


@dataclass(slots=True)
class RequestEvent:
    request_id: str
    tenant: str
    started_at: float = field(default_factory=time.time)  # epoch seconds
    route: str = ""  # cheap | mixture | strong | "" when the request failed before routing
    reason: str = ""
    difficulty: float | None = None
    stakes: float | None = None
    classifier_version: str = ""
    cache: str = "bypass"  # hit | miss | bypass
    stream: bool = False
    status: int = 200
    error: str | None = None  # the error code when status >= 400
    latency_s: float = 0.0
    calls: list[CallRecord] = field(default_factory=list)
    saved_usd: float = 0.0  # upstream cost a cache hit avoided
    fallback: str | None = None
    prompt_hash: str = ""  # keyed: router/prompt_hash.py
    prompt_hash_key_id: str = ""  # which key: only hashes of one key compare
    messages: list[dict[str, Any]] | None = None  # only when the config stores prompt texts
    answer: str | None = None  # only when the config stores prompt texts
    extra: dict[str, Any] = field(default_factory=dict)
    # In-process only, never written to the outcome log: the request as sent upstream and the answer
    # text, so that shadow evaluation can re-run the request even when prompt texts are not stored.
    upstream: CompletionRequest | None = None
    answer_text: str | None = None

    @property
    def cost_usd(self) -> float:
        return sum(call.cost_usd for call in self.calls)

    @property
    def usage(self) -> Usage:
        return total_usage(self.calls)


class EventSink(Protocol):
    """Receives every finished request's event. Must not block: queue the work, do I/O elsewhere."""

    def record(self, event: RequestEvent) -> None: ...
