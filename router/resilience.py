"""Fault handling for upstream calls: the one retry helper and the per-model circuit breaker.

`ResilientProvider` wraps any Provider, so the request path, the mixture and the shadow evaluator are
unchanged. A call is retried only where a second attempt is safe and can help (a connection error, a
429 after its `retry-after`, a 5xx) and never past the request's deadline; a stream only before its
first text delta, since text already sent cannot be taken back. A model that keeps failing is cooled
down for a while: its calls fail fast, or go to its configured fallback entry, instead of waiting on it.
Breakers are per process: each replica learns about a failing model from its own calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Literal

from router.config import ModelEntry, ResilienceSettings
from router.providers.base import CallMeter, CallResult, CompletionRequest, Provider, ProviderError, StreamItem

logger = logging.getLogger(__name__)

BreakerState = Literal["closed", "open"]
Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


def counts_against_model(exc: ProviderError) -> bool:
    """A 4xx other than 429/401/403 is the request's fault, not the model's: it must not cool it down; nor
    must a call that waited for a free connection of the router's own pool and never reached the model."""
    return exc.kind != "bad_request" and exc.reached_upstream


def fallback_helps(exc: ProviderError) -> bool:
    """Another model may well answer what this one could not, except a request it would refuse too."""
    return exc.kind != "bad_request"


class CircuitBreaker:
    """Closed until `failure_threshold` consecutive failures; then open (calls refused) for `cooldown_s`.
    After the cooldown one trial call is let through at a time; its success closes the breaker, its
    failure keeps it open for another cooldown, and a trial that proves nothing (a request the model
    refused as bad) lets the next call be the trial."""

    def __init__(self, name: str, settings: ResilienceSettings, clock: Clock = time.monotonic) -> None:
        self.name = name
        self._threshold = settings.failure_threshold
        self._cooldown_s = settings.cooldown_s
        self._clock = clock
        self._failures = 0
        self._open_until: float | None = None
        self._trial_running = False
        self.times_opened = 0

    @property
    def state(self) -> BreakerState:
        return "closed" if self._open_until is None else "open"

    @property
    def cooling_down(self) -> bool:
        """Open and still within its cooldown: calls are refused."""
        return self._open_until is not None and self._clock() < self._open_until

    def allow(self) -> bool:
        """Whether a call may go to the model now. A call let through after the cooldown is the trial:
        the next one waits for another cooldown unless the trial closes the breaker first."""
        if self._open_until is None:
            return True
        now = self._clock()
        if now < self._open_until:
            return False
        self._open_until = now + self._cooldown_s
        self._trial_running = True
        return True

    def record_success(self) -> None:
        if self._open_until is not None:
            logger.warning("model %s answered again: circuit closed", self.name)
        self._failures = 0
        self._open_until = None
        self._trial_running = False

    def record_inconclusive(self) -> None:
        """A call that failed through no fault of the model. When it was the trial, the model is not kept
        cooled down for another cooldown on its account: the next call is the trial."""
        if self._trial_running and self._open_until is not None:
            self._open_until = self._clock()
        self._trial_running = False

    def record_failure(self) -> None:
        self._failures += 1
        self._trial_running = False
        if self._failures >= self._threshold and self._open_until is None:
            self._open_until = self._clock() + self._cooldown_s
            self.times_opened += 1
            logger.warning(
                "model %s failed %d times in a row: cooled down for %.0f s", self.name, self._failures, self._cooldown_s
            )


class Breakers:
    """One breaker per model name, shared by every wrapper of that model (a model may fill two roles)."""

    def __init__(self, settings: ResilienceSettings, clock: Clock = time.monotonic) -> None:
        self._settings = settings
        self._clock = clock
        self._by_model: dict[str, CircuitBreaker] = {}

    def get(self, model: str) -> CircuitBreaker:
        breaker = self._by_model.get(model)
        if breaker is None:
            breaker = self._by_model[model] = CircuitBreaker(model, self._settings, self._clock)
        return breaker

    def states(self) -> dict[str, BreakerState]:
        return {name: breaker.state for name, breaker in sorted(self._by_model.items())}


def cooled_down_error(model: str) -> ProviderError:
    return ProviderError(model, "upstream", "cooled down after repeated failures", status=503)


class ResilientProvider:
    """A Provider with retries, a circuit breaker and an optional fallback provider."""

    def __init__(
        self,
        inner: Provider,
        breaker: CircuitBreaker,
        settings: ResilienceSettings,
        fallback: Provider | None = None,
        *,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self._inner = inner
        self._breaker = breaker
        self._settings = settings
        self._fallback = fallback
        self._clock = clock
        self._sleep = sleep
        self._rng = rng or random.Random()

    @property
    def entry(self) -> ModelEntry:
        return self._inner.entry

    @property
    def name(self) -> str:
        return self._inner.name

    @property
    def breaker(self) -> CircuitBreaker:
        return self._breaker

    def _deadline(self, request: CompletionRequest) -> float:
        budget = self._inner.entry.timeout_s if request.timeout_s is None else request.timeout_s
        return self._clock() + budget

    def _within(self, request: CompletionRequest, deadline: float) -> CompletionRequest | None:
        """The request with the time left to its deadline, or None when none is left."""
        remaining = deadline - self._clock()
        return dataclasses.replace(request, timeout_s=remaining) if remaining > 0 else None

    def retry_delay(self, exc: ProviderError, attempt: int) -> float | None:
        """Seconds to wait before attempt `attempt + 1`, or None when retrying is unsafe or pointless."""
        if attempt >= self._settings.max_attempts or self._breaker.cooling_down:
            return None
        backoff = min(self._settings.backoff_max_s, self._settings.backoff_base_s * 2.0 ** (attempt - 1))
        backoff *= self._rng.uniform(0.5, 1.0)  # jitter, so that replicas do not retry in lockstep
        if exc.kind == "connection":
            return backoff
        server_error = exc.kind == "upstream" and (exc.status is None or exc.status >= 500)
        if exc.kind != "rate_limit" and not server_error:
            return None  # timeouts (the time is spent), malformed answers, refusals: not retried
        if exc.retry_after_s is None:
            return backoff
        if exc.retry_after_s > self._settings.max_retry_after_s:
            return None  # a longer wait is not made, and a retry sooner than asked would be refused again
        return exc.retry_after_s if exc.kind == "rate_limit" else max(backoff, exc.retry_after_s)

    def _note_failure(self, exc: ProviderError, attempt: int) -> None:
        if counts_against_model(exc):
            self._breaker.record_failure()
        else:
            self._breaker.record_inconclusive()
        # Model, kind and status only: an upstream's error text may echo the prompt.
        logger.info("upstream %s failed (%s, status %s) on attempt %d", self.name, exc.kind, exc.status, attempt)

    async def _wait_to_retry(self, exc: ProviderError, attempt: int, deadline: float, meter: CallMeter | None) -> bool:
        delay = self.retry_delay(exc, attempt)
        if delay is None or self._clock() + delay >= deadline:
            return False
        if meter is not None:
            # The failed attempt was not billed (a timeout is never retried) and the retry is not sent yet: a
            # call cut off during the wait (a deadline, the request's timeout, a client that left) cost nothing.
            meter.sent = False
        await self._sleep(delay)
        return True

    def _hand_over(
        self, exc: ProviderError, request: CompletionRequest, deadline: float, meter: CallMeter | None
    ) -> tuple[Provider, CompletionRequest] | None:
        """The fallback provider and its request, when it may take over the failed call in the time that is
        left. The failed call's record would be lost (the caller hears only of the fallback's): when it was
        billed (it timed out after it was sent), the meter keeps it for the caller to log."""
        fallback_request = self._within(request, deadline)
        if self._fallback is None or not fallback_helps(exc) or fallback_request is None:
            return None
        logger.warning("model %s failed (%s): its fallback %s answers", self.name, exc.kind, self._fallback.name)
        if meter is not None:
            meter.hand_over(exc)
        return self._fallback, fallback_request

    def _deadline_passed(self) -> ProviderError:
        # No call was made: an estimate of what was billed must not follow the meter to an earlier attempt.
        return ProviderError(self.name, "timeout", "the request deadline passed before a retry", reached_upstream=False)

    async def complete(self, request: CompletionRequest, meter: CallMeter | None = None) -> CallResult:
        deadline = self._deadline(request)
        if not self._breaker.allow():
            if self._fallback is None:
                raise cooled_down_error(self.name)
            return await self._fallback.complete(request, meter)
        attempt = 0
        while True:
            attempt += 1
            attempt_request = self._within(request, deadline)
            if attempt_request is None:
                raise self._deadline_passed()
            try:
                result = await self._inner.complete(attempt_request, meter)
            except ProviderError as exc:
                self._note_failure(exc, attempt)
                if await self._wait_to_retry(exc, attempt, deadline, meter):
                    continue
                taking_over = self._hand_over(exc, request, deadline, meter)
                if taking_over is None:
                    raise
                fallback, fallback_request = taking_over
                return await fallback.complete(fallback_request, meter)
            self._breaker.record_success()
            return result

    async def stream(self, request: CompletionRequest, meter: CallMeter | None = None) -> AsyncIterator[StreamItem]:
        deadline = self._deadline(request)
        if not self._breaker.allow():
            if self._fallback is None:
                raise cooled_down_error(self.name)
            async with _closing(self._fallback.stream(request, meter)) as items:
                async for item in items:
                    yield item
            return
        attempt = 0
        while True:
            attempt += 1
            attempt_request = self._within(request, deadline)
            if attempt_request is None:
                raise self._deadline_passed()
            sent_text = False
            try:
                async with _closing(self._inner.stream(attempt_request, meter)) as items:
                    async for item in items:
                        sent_text = sent_text or isinstance(item, str)
                        yield item
            except ProviderError as exc:
                self._note_failure(exc, attempt)
                if sent_text:
                    raise  # part of the answer is with the client: neither retry nor fall back (exc.partial kept)
                if await self._wait_to_retry(exc, attempt, deadline, meter):
                    continue
                taking_over = self._hand_over(exc, request, deadline, meter)
                if taking_over is None:
                    raise
                fallback, fallback_request = taking_over
                async with _closing(fallback.stream(fallback_request, meter)) as items:
                    async for item in items:
                        yield item
                return
            self._breaker.record_success()
            return


@contextlib.asynccontextmanager
async def _closing(items: AsyncIterator[StreamItem]) -> AsyncIterator[AsyncIterator[StreamItem]]:
    """Close a provider's stream however its iteration ends, so that an abandoned stream releases its
    upstream connection at once rather than when it is garbage-collected."""
    try:
        yield items
    finally:
        close = getattr(items, "aclose", None)
        if close is not None:
            await close()


def resilient(
    entry: ModelEntry,
    build: Callable[[ModelEntry], Provider],
    settings: ResilienceSettings,
    breakers: Breakers,
) -> ResilientProvider:
    """The provider for `entry` (made by `build`) with retries, its breaker and its fallback chain."""
    fallback = resilient(entry.fallback, build, settings, breakers) if entry.fallback is not None else None
    return ResilientProvider(build(entry), breakers.get(entry.model), settings, fallback)
