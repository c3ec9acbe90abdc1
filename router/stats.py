"""Stats: every request event folded into counters per time bucket in Redis, for `/v1/stats`, the
dashboard and `moa-router report`.

Write side only; reading and summarising is `router.stats_query`. Each event adds to one hash per
resolution (minute, hour and day buckets), so a query reads at most a few dozen hashes whatever the
traffic. Events are first summed in memory and written in one MULTI/EXEC every `flush_interval_s`:
the request path only adds numbers to a dict.

The "mixture on everything" counterfactual (what the traffic would have cost had every request run
the mixture) is estimated per request by `MixtureCostEstimator`; see its docstring for the method.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from router.events import RequestEvent
from router.prompts import with_candidates
from router.providers.base import Usage
from router.providers.pricing import Prices, estimate_tokens, prices_for

if TYPE_CHECKING:
    from contextlib import AsyncExitStack

    from redis.asyncio import Redis

    from router.providers.registry import ProviderSet
    from router.state import AppState

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Resolution:
    name: str
    seconds: int
    ttl_s: int  # how long its buckets are kept: a little longer than the widest window read from them


MINUTE = Resolution("1m", 60, 3 * 3600)
HOUR = Resolution("1h", 3600, 9 * 86400)
DAY = Resolution("1d", 86400, 400 * 86400)
RESOLUTIONS: tuple[Resolution, ...] = (MINUTE, HOUR, DAY)
# The most expensive requests are kept per hour and per day bucket (a capped sorted set each).
TOP_RESOLUTIONS: tuple[Resolution, ...] = (HOUR, DAY)
TOP_PER_BUCKET = 25

# Latency histogram: bin i holds latencies in (LATENCY_BASE_S * GROWTH**(i-1), LATENCY_BASE_S * GROWTH**i];
# bin 0 everything up to 1 ms, the last bin everything beyond ~10 minutes. A percentile read from it is
# within one bin's width (25%) of the true value.
LATENCY_BASE_S = 0.001
LATENCY_GROWTH = 1.25
LATENCY_BINS = 61


def latency_bin(latency_s: float) -> int:
    if latency_s <= LATENCY_BASE_S:
        return 0
    index = math.ceil(math.log(latency_s / LATENCY_BASE_S) / math.log(LATENCY_GROWTH) - 1e-9)
    return min(index, LATENCY_BINS - 1)


def latency_bin_bounds(index: int) -> tuple[float, float]:
    """The (lower, upper) latency in seconds of a bin."""
    upper = LATENCY_BASE_S * LATENCY_GROWTH**index
    lower = 0.0 if index == 0 else LATENCY_BASE_S * LATENCY_GROWTH ** (index - 1)
    return lower, upper


def bucket_key(prefix: str, resolution: Resolution, bucket_start: int) -> str:
    return f"{prefix}:stats:{resolution.name}:{bucket_start}"


def top_key(prefix: str, resolution: Resolution, bucket_start: int) -> str:
    return f"{prefix}:stats:top:{resolution.name}:{bucket_start}"


def bucket_start(at: float, resolution: Resolution) -> int:
    return int(at // resolution.seconds) * resolution.seconds


class MixtureCostEstimator:
    """What a request answered by one model (cheap or strong) would have cost through the mixture.

    Method: take the answering call's usage, p prompt and c completion tokens, and assume each of the
    N proposers reads the same prompt and writes as long an answer (c tokens). Layer 1 costs
    sum_i(p * in_i + c * out_i). The aggregator, like every proposer of a layer after the first, reads
    the prompt plus the aggregation instructions (o tokens, counted as the router counts text) plus
    the N candidate answers: q = p + o + N * c tokens; it writes c tokens. So the estimate is
      sum_i(p*in_i + c*out_i) + (layers-1) * sum_i(q*in_i + c*out_i) + q*in_agg + c*out_agg.
    Prices come from the configured entries via `prices_for`, as for real calls.
    """

    def __init__(self, proposers: Sequence[Prices], aggregator: Prices, layers: int = 1) -> None:
        self.proposers = tuple(proposers)
        self.aggregator = aggregator
        self.layers = layers
        count = len(self.proposers)
        empty = [""] * count
        self.overhead_tokens = estimate_tokens(str(with_candidates([], empty)[0]["content"]))

    @classmethod
    def from_providers(cls, providers: ProviderSet, layers: int) -> MixtureCostEstimator:
        return cls([prices_for(p.entry) for p in providers.proposers], prices_for(providers.aggregator.entry), layers)

    def estimate(self, usage: Usage) -> float:
        p, c = usage.prompt_tokens, usage.completion_tokens
        if p == 0 and c == 0:
            return 0.0
        q = p + self.overhead_tokens + len(self.proposers) * c
        first = sum(prices.cost(Usage(p, c)) for prices in self.proposers)
        later = (self.layers - 1) * sum(prices.cost(Usage(q, c)) for prices in self.proposers)
        return first + later + self.aggregator.cost(Usage(q, c))


def counterfactual_usd(event: RequestEvent, estimator: MixtureCostEstimator) -> float:
    """The mixture-on-everything cost of one request. A mixture request costs what it cost; a request
    answered by one model is estimated from that call's usage; a cache hit is a hit in that world too
    (it costs nothing in both, and what the cache saved is counted apart)."""
    if event.cache == "hit":
        return 0.0
    if event.route in ("cheap", "strong"):
        answered = Usage()
        for call in event.calls:
            if call.status == "ok" and call.role == event.route:
                answered = answered + call.usage
        return estimator.estimate(answered)
    return event.cost_usd


def event_fields(event: RequestEvent, estimator: MixtureCostEstimator) -> dict[str, float]:
    """The counters one event adds to its buckets (field name -> amount). Field names are
    `kind` or `kind:label`; `router.stats_query` reads them back."""
    fields: dict[str, float] = defaultdict(float)
    fields["requests"] += 1
    if event.status >= 500:
        fields["errors"] += 1
    elif event.status >= 400:
        fields["client_errors"] += 1
    if event.error:
        fields[f"err:{event.error}"] += 1
        if event.error == "mixture_quorum_failed":
            fields["quorum_fail"] += 1
    route = event.route or "none"
    fields[f"route:{route}"] += 1
    if event.reason:
        fields[f"reason:{event.reason}"] += 1
    if event.reason == "budget":
        fields["budget_degraded"] += 1
    if event.classifier_version:
        fields[f"cv:{event.classifier_version}"] += 1
    fields[f"cache:{event.cache}"] += 1
    if event.cache == "hit":
        fields["cache_saved"] += event.saved_usd
    if event.fallback:
        fields["agg_fallback"] += 1
    cost = event.cost_usd
    fields["spend"] += cost
    fields[f"spend_route:{route}"] += cost
    for call in event.calls:
        fields[f"calls:{call.model}"] += 1
        fields[f"spend_model:{call.model}"] += call.cost_usd
        fields[f"tok_in:{call.model}"] += call.usage.prompt_tokens
        fields[f"tok_out:{call.model}"] += call.usage.completion_tokens
        if call.status != "ok":
            fields[f"call_err:{call.model}"] += 1
            if call.role == "proposer":
                fields["proposer_fail"] += 1
    fields["cf"] += counterfactual_usd(event, estimator)
    fields[f"lat:{route}:{latency_bin(event.latency_s)}"] += 1
    return fields


def _preview(event: RequestEvent, limit: int = 120) -> str | None:
    if not event.messages:
        return None
    for message in reversed(event.messages):
        content = message.get("content")
        if message.get("role") == "user" and isinstance(content, str):
            text = " ".join(content.split())
            return text if len(text) <= limit else text[: limit - 1] + "…"
    return None


def expensive_entry(event: RequestEvent) -> dict[str, Any]:
    """What the dashboard's table of expensive requests shows of one request."""
    entry: dict[str, Any] = {
        "request_id": event.request_id,
        "t": round(event.started_at, 3),
        "tenant": event.tenant,
        "route": event.route or "none",
        "reason": event.reason,
        "cost_usd": event.cost_usd,
        "latency_ms": round(event.latency_s * 1000, 1),
        "models": sorted({call.model for call in event.calls}),
        "status": event.status,
        "difficulty": event.difficulty,
        "stakes": event.stakes,
    }
    preview = _preview(event)
    if preview is not None:
        entry["preview"] = preview
    return entry


class StatsRecorder:
    """The stats EventSink. `record` only sums into memory; `run` writes the sums to Redis."""

    def __init__(
        self,
        redis: Redis,
        prefix: str,
        estimator: MixtureCostEstimator,
        flush_interval_s: float = 0.5,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._redis = redis
        self._prefix = prefix
        self._estimator = estimator
        self._flush_interval_s = flush_interval_s
        self._clock = clock
        self._pending: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        self._pending_top: dict[str, list[tuple[float, bytes]]] = defaultdict(list)
        self._expiry: dict[str, int] = {}
        self._lock = asyncio.Lock()
        self._last_failure_log = 0.0
        self.unflushed_events = 0  # recorded since the last successful write


    def record(self, event: RequestEvent) -> None:
        self.unflushed_events += 1
        self._add(event.started_at, event_fields(event, self._estimator))
        cost = event.cost_usd
        if cost > 0:
            member = orjson.dumps(expensive_entry(event))
            for resolution in TOP_RESOLUTIONS:
                key = top_key(self._prefix, resolution, bucket_start(event.started_at, resolution))
                candidates = self._pending_top[key]
                candidates.append((cost, member))
                if len(candidates) > 2 * TOP_PER_BUCKET:  # only the top few can survive the flush anyway
                    candidates.sort(key=lambda item: item[0], reverse=True)
                    del candidates[TOP_PER_BUCKET:]
                self._expiry[key] = resolution.ttl_s

    def record_shadow(self, mixture_needed: bool | None, cost_usd: float, at: float | None = None) -> None:
        """A shadow evaluation's verdict on a cheap-routed request: whether the judge found the mixture
        was needed (None: no clear verdict, or the run failed), and what the shadow run cost."""
        fields = {"shadow_runs": 1.0, "shadow_cost": cost_usd, "spend": cost_usd, "spend_route:shadow": cost_usd}
        if mixture_needed is not None:
            fields["shadow_judged"] = 1.0
            fields["shadow_cheap_ok"] = 0.0 if mixture_needed else 1.0
        self._add(self._clock() if at is None else at, fields)

    def _add(self, at: float, fields: dict[str, float]) -> None:
        for resolution in RESOLUTIONS:
            key = bucket_key(self._prefix, resolution, bucket_start(at, resolution))
            target = self._pending[key]
            for name, amount in fields.items():
                if amount:
                    target[name] += amount
            self._expiry[key] = resolution.ttl_s

    async def flush(self) -> None:
        """Write what has been summed so far; on a Redis failure keep it for the next attempt."""
        async with self._lock:
            pending, self._pending = self._pending, defaultdict(lambda: defaultdict(float))
            pending_top, self._pending_top = self._pending_top, defaultdict(list)
            expiry, self._expiry = self._expiry, {}
            events, self.unflushed_events = self.unflushed_events, 0
            if not pending and not pending_top:
                return
            from redis.exceptions import RedisError

            pipe = self._redis.pipeline(transaction=True)
            for key, fields in pending.items():
                for name, amount in fields.items():
                    pipe.hincrbyfloat(key, name, amount)
                pipe.expire(key, expiry[key])
            for key, candidates in pending_top.items():
                pipe.zadd(key, {member: cost for cost, member in candidates})
                pipe.zremrangebyrank(key, 0, -(TOP_PER_BUCKET + 1))
                pipe.expire(key, expiry[key])
            try:
                await pipe.execute()
            except (RedisError, OSError) as exc:
                self._restore(pending, pending_top, expiry)
                self.unflushed_events += events
                now = time.monotonic()
                if now - self._last_failure_log > 30:
                    self._last_failure_log = now
                    logger.warning("stats: cannot write to Redis (%s); keeping the counts to retry", exc)
                raise

    def _restore(
        self,
        pending: dict[str, dict[str, float]],
        pending_top: dict[str, list[tuple[float, bytes]]],
        expiry: dict[str, int],
    ) -> None:
        for key, fields in pending.items():
            for name, amount in fields.items():
                self._pending[key][name] += amount
        for key, candidates in pending_top.items():
            self._pending_top[key].extend(candidates)
        for key, ttl in expiry.items():
            self._expiry.setdefault(key, ttl)

    async def run(self) -> None:
        """Flush every `flush_interval_s` until cancelled."""
        from redis.exceptions import RedisError

        while True:
            await asyncio.sleep(self._flush_interval_s)
            try:
                await self.flush()
            except (RedisError, OSError):
                continue  # logged by flush; the sums wait for Redis to come back


async def start_stats(state: AppState, stack: AsyncExitStack) -> None:
    """Startup step: the stats recorder as an event sink and `state.components["stats"]`, flushing in
    the background and once more at shutdown. Without Redis there are no stats (the service still runs)."""
    if state.redis is None:
        logger.warning("stats are off: they are kept in Redis and no Redis is configured")
        return
    estimator = MixtureCostEstimator.from_providers(state.providers, state.settings.mixture.layers)
    recorder = StatsRecorder(state.redis, state.settings.redis_prefix, estimator)
    state.components["stats"] = recorder
    state.sinks.append(recorder)
    task = asyncio.create_task(recorder.run(), name="stats-flush")

    async def stop() -> None:
        from redis.exceptions import RedisError

        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        try:
            await recorder.flush()
        except (RedisError, OSError):
            metrics = state.components.get("metrics")
            if metrics is not None:
                metrics.dropped("stats", recorder.unflushed_events)
            logger.warning("stats: the last counts could not be written at shutdown")

    stack.push_async_callback(stop)
