"""One chat request's state on its way through the path (its event, headers and deadline), and the
client's error for a route that failed."""

from __future__ import annotations

import asyncio
import dataclasses
import math
import time
import uuid
from typing import Any

from fastapi import Request

from router.api.errors import APIError
from router.cache_types import CacheSession
from router.events import RequestEvent
from router.mixture import CallRecord, QuorumError
from router.policy import RouteDecision
from router.providers.base import CallMeter, ProviderError
from router.routes import RouteResult, call_latency, stand_in, timed_out_call
from router.state import AppState

STORABLE_FINISH = frozenset({"stop", "length"})  # a finished answer; "error" means it was cut off


# OpenAI's SDKs retry a 5xx twice unless told not to: the router has already retried and fallen back
# within the request's timeout, so a client's retry mostly pays for the same failure again.
NOT_RETRIED = {"x-should-retry": "false"}


def request_timeout_error() -> APIError:
    message = "the request took longer than the router's request timeout"
    return APIError(504, message, "request_timeout", headers=NOT_RETRIED)


def upstream_error(exc: Exception, event: RequestEvent, elapsed_s: float, meter: CallMeter | None = None) -> APIError:
    """A failed route as the client sees it: a 5xx in OpenAI's shape that says which part failed.
    `elapsed_s` is how long a single model's failed call took (a fallback's: since it took over); its
    `meter` tells what a call that timed out was sent (and billed for)."""
    if isinstance(exc, QuorumError):
        event.calls.extend(call for call in exc.calls if call not in event.calls)
        return APIError(502, f"the mixture could not answer: {exc}", "mixture_quorum_failed", headers=NOT_RETRIED)
    if isinstance(exc, ProviderError):
        event.calls.append(CallRecord.from_error(exc, event.route, elapsed_s, meter=meter))
        if exc.kind == "timeout":
            return APIError(504, f"upstream model {exc.model} timed out", "upstream_timeout", headers=NOT_RETRIED)
        if exc.kind == "rate_limit":
            # The router's upstream quota, not the client's: a 503 with the upstream's wait, which the client
            # may retry after (it says nothing of the client's own rate limit, a 429).
            wait = {} if exc.retry_after_s is None else {"retry-after": str(max(1, math.ceil(exc.retry_after_s)))}
            message = f"upstream model {exc.model} is rate-limited; try again later"
            return APIError(503, message, "upstream_rate_limited", headers=wait)
        return APIError(502, f"upstream model {exc.model} failed ({exc.kind})", "upstream_error", headers=NOT_RETRIED)
    return request_timeout_error()


class Exchange:
    """One request's state as it moves through the path; records its event exactly once."""

    def __init__(self, state: AppState, request: Request) -> None:
        self.state = state
        self.request = request
        self.started = time.perf_counter()
        self.event = RequestEvent(request_id=f"chatcmpl-{uuid.uuid4().hex}", tenant="")
        self.headers: dict[str, str] = {"x-request-id": self.event.request_id}
        self._recorded = False

    def remaining_s(self) -> float:
        """What is left of the request's timeout: a wait for another request's answer spends it too."""
        return self.state.settings.limits.request_timeout_s - (time.perf_counter() - self.started)

    def finish(self) -> None:
        if not self._recorded:
            self._recorded = True
            self.event.latency_s = time.perf_counter() - self.started
            self.state.record(self.event)

    def note_decision(self, decision: RouteDecision, difficulty: float, stakes: float, version: str) -> None:
        self.event.route, self.event.reason = decision.route, decision.reason
        self.event.difficulty, self.event.stakes, self.event.classifier_version = difficulty, stakes, version
        self.headers.update(
            {
                "x-moa-route": decision.route,
                "x-moa-route-reason": decision.reason,
                "x-moa-difficulty": f"{difficulty:.4f}",
                "x-moa-stakes": f"{stakes:.4f}",
                "x-moa-classifier-version": version,
            }
        )

    def note_result(self, result: RouteResult) -> None:
        self.event.calls.extend(result.calls)
        self.event.fallback = stand_in(self.event.route, self.state.providers, result)
        self.event.answer_text = result.text  # in-process only (the shadow judge reads it); never logged
        if self.event.fallback:
            self.headers["x-moa-fallback"] = self.event.fallback
        if self.event.messages is not None:
            self.event.answer = result.text

    def failed(self, exc: Exception, result: RouteResult) -> APIError:
        """The client's error for a failed route. The calls that finished were paid for, and the one the
        request's timeout cut off is logged too (it never reported back)."""
        now = time.perf_counter()
        self.event.calls.extend(result.calls)
        if isinstance(exc, TimeoutError):
            cut_off = timed_out_call(self.event.route, self.state.providers, result, now)
            if cut_off is not None:
                self.event.calls.append(cut_off)
        return upstream_error(exc, self.event, call_latency(result, now), result.meter)

    def cancelled(self, result: RouteResult) -> None:
        """The route was cancelled before its answer (the service stopped and the request outlasted its
        shutdown grace): the client gets none, which the event says (it kept its default 200), and the calls
        that finished, or were cut off on the wire, were paid for, as when the request's timeout cuts it off."""
        now = time.perf_counter()
        self.event.calls.extend(result.calls)
        cut_off = timed_out_call(self.event.route, self.state.providers, result, now)
        if cut_off is not None:
            self.event.calls.append(dataclasses.replace(cut_off, error="cancelled"))
        self.event.status, self.event.error = 500, "internal_error"

    def extra(self) -> dict[str, Any]:
        return {
            "request_id": self.event.request_id,
            "route": self.event.route,
            "cache": self.event.cache,
            "cost_usd": round(self.event.cost_usd, 10),
            "saved_usd": round(self.event.saved_usd, 10),
            "fallback": self.event.fallback,
        }


async def release(session: CacheSession, upstream_failed: bool = False) -> None:
    """Frees the single-flight lease (a no-op after a store), even when the request is being cancelled:
    otherwise waiters for the same answer wait until the lease lapses. When the upstream failed they
    compute their own at once; otherwise (the client left) one takes over and the others wait for it."""
    await asyncio.shield(session.abandon() if upstream_failed else session.hand_off())
