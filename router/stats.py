"""Stats: every request event folded into counters per time bucket in Redis, for `/v1/stats`, the
dashboard and `moa-router report`.

Write side only; reading and summarising is `router.stats_query`. Each event adds to one hash per
resolution (minute, hour and day buckets), so a query reads at most a few dozen hashes whatever the
traffic. The request path only appends the event to a list; every `flush_interval_s` a background
task sums the events in memory and writes the sums in one MULTI/EXEC, as a numbered batch that Redis
applies at most once (`router.stats_batch`).

The "mixture on everything" counterfactual (what the traffic would have cost had every request run
the mixture) is estimated per request by `router.counterfactual`; see its docstring for the method.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import math
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from classifier.text import content_text
from router.counterfactual import MixtureCostEstimator as MixtureCostEstimator
from router.counterfactual import counterfactual_usd as counterfactual_usd
from router.events import RequestEvent
from router.redaction import Redactor, load_redactor, no_redaction
from router.stats_batch import BucketSums, StatsBatch, TopEntries, applied_key, write_batch
from router.tasks import cancel_and_wait

if TYPE_CHECKING:
    from contextlib import AsyncExitStack

    from redis.asyncio import Redis

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
# The most expensive requests are kept per bucket of every resolution (a capped sorted set each), so that
# a window's list is read from the same buckets as its totals.
TOP_RESOLUTIONS: tuple[Resolution, ...] = RESOLUTIONS
TOP_PER_BUCKET = 25
# Prompt previews (only with ledger.store_prompts) are kept in the top sets of buckets kept up to this long:
# the hour buckets' 9 days, not the day buckets' 400 (the 30-day window lists its requests without them).
PREVIEW_TTL_S = HOUR.ttl_s

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


def add_event_fields(event: RequestEvent, estimator: MixtureCostEstimator, fields: dict[str, float]) -> None:
    """Add the counters of one event to `fields` (field name -> amount). Field names are `kind` or
    `kind:label`; `router.stats_query` reads them back."""

    def add(name: str, amount: float = 1.0) -> None:
        fields[name] = fields.get(name, 0.0) + amount

    add("requests")
    if event.status >= 500:
        add("errors")
    elif event.status >= 400:
        add("client_errors")
    if event.error:
        add(f"err:{event.error}")
        if event.error == "mixture_quorum_failed":
            add("quorum_fail")
    route = event.route or "none"
    add(f"route:{route}")
    if event.reason:
        add(f"reason:{event.reason}")
        if event.reason == "budget":
            add("budget_degraded")
    if event.classifier_version:
        add(f"cv:{event.classifier_version}")
    add(f"cache:{event.cache}")
    if event.cache == "hit":
        add("cache_saved", event.saved_usd)
    if event.fallback == "proposer":
        add("agg_fallback")
    cost = 0.0
    for call in event.calls:
        cost += call.cost_usd
        add(f"calls:{call.model}")
        if call.cost_usd:
            add(f"spend_model:{call.model}", call.cost_usd)
        if call.usage.prompt_tokens:
            add(f"tok_in:{call.model}", call.usage.prompt_tokens)
        if call.usage.completion_tokens:
            add(f"tok_out:{call.model}", call.usage.completion_tokens)
        if call.status != "ok":
            add(f"call_err:{call.model}")
            if call.role == "proposer":
                add("proposer_fail")
    add("spend", cost)
    add(f"spend_route:{route}", cost)
    add("cf", counterfactual_usd(event, estimator))
    add(f"lat:{route}:{latency_bin(event.latency_s)}")


def _preview(event: RequestEvent, redact: Redactor, limit: int = 120) -> str | None:
    """The start of the last user turn, after the outcome log's redaction hook (the page shows it, and
    Redis keeps it up to PREVIEW_TTL_S); only events of a config that stores prompts carry their messages."""
    if not event.messages:
        return None
    for message in reversed(event.messages):
        if message.get("role") == "user":
            try:
                text = " ".join(redact(content_text(message.get("content"))).split())
            # An operator's hook may raise anything (the outcome log drops that one record): here the
            # request is listed without a preview, rather than the error ending the stats' flush task.
            except Exception as exc:  # logged by its type only: its text may quote the prompt
                logger.error(
                    "stats: request %s listed without a preview: the redaction hook raised %s",
                    event.request_id,
                    type(exc).__name__,
                )
                return None
            return text if len(text) <= limit else text[: limit - 1] + "…"
    return None


def expensive_entry(event: RequestEvent, redact: Redactor = no_redaction, with_preview: bool = True) -> dict[str, Any]:
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
    preview = _preview(event, redact) if with_preview else None
    if preview is not None:
        entry["preview"] = preview
    return entry


class StatsRecorder:
    """The stats EventSink. `record` only queues the event; `flush` (every `flush_interval_s`, off the
    request path) folds the queue into per-minute sums, derives the hour and day sums from them and
    adds all of them to Redis in one MULTI/EXEC. A batch that failed is sent again as it was, before
    anything newer: Redis may have applied it, and then skips it by its number."""

    def __init__(
        self,
        redis: Redis,
        prefix: str,
        estimator: MixtureCostEstimator,
        flush_interval_s: float = 0.5,
        clock: Callable[[], float] = time.time,
        shadow_listener: Callable[[bool | None, float], None] | None = None,
        redact: Redactor = no_redaction,
    ) -> None:
        self._redis = redis
        self._redact = redact
        self._prefix = prefix
        self._estimator = estimator
        self._flush_interval_s = flush_interval_s
        self._clock = clock
        self._shadow_listener = shadow_listener  # the metrics: their spend counts shadow runs as these stats do
        self._queue: list[RequestEvent] = []
        self._minutes: dict[int, dict[str, float]] = {}  # minute bucket start -> sums not yet in a batch
        self._top: TopEntries = {}  # the expensive requests not yet in a batch
        self._folded_events = 0  # events in `_minutes`
        self._replica = uuid.uuid4().hex[:16]  # this recorder's field in the applied-batch markers
        self._batches = 0  # the last batch number given out
        self._unsent: StatsBatch | None = None  # a batch whose write failed: Redis may have applied it
        self._lock = asyncio.Lock()
        self._last_failure_log = 0.0
        self.unflushed_events = 0  # recorded since the last successful write

    def record(self, event: RequestEvent) -> None:
        self._queue.append(event)
        self.unflushed_events += 1

    def record_shadow(self, mixture_needed: bool | None, cost_usd: float, at: float | None = None) -> None:
        """A shadow evaluation's verdict on a cheap-routed request: whether the judge found the mixture
        was needed (None: no clear verdict, or the run failed), and what the shadow run cost."""
        fields = self._minutes.setdefault(bucket_start(self._clock() if at is None else at, MINUTE), {})
        added = {"shadow_runs": 1.0, "shadow_cost": cost_usd, "spend": cost_usd, "spend_route:shadow": cost_usd}
        if mixture_needed is not None:
            added["shadow_judged"] = 1.0
            added["shadow_cheap_ok"] = 0.0 if mixture_needed else 1.0
        for name, amount in added.items():
            fields[name] = fields.get(name, 0.0) + amount
        if self._shadow_listener is not None:
            self._shadow_listener(mixture_needed, cost_usd)

    def _fold(self) -> None:
        """Sum the queued events into their minute buckets and pick the expensive ones."""
        queue, self._queue = self._queue, []
        self._folded_events += len(queue)
        candidates: dict[tuple[Resolution, int], list[tuple[float, RequestEvent]]] = defaultdict(list)
        for event in queue:
            minute = self._minutes.setdefault(bucket_start(event.started_at, MINUTE), {})
            add_event_fields(event, self._estimator, minute)
            cost = event.cost_usd
            if cost > 0:
                for resolution in TOP_RESOLUTIONS:
                    candidates[resolution, bucket_start(event.started_at, resolution)].append((cost, event))
        for (resolution, start), found in candidates.items():
            key = top_key(self._prefix, resolution, start)
            kept = self._top.setdefault(key, (resolution.ttl_s, []))[1]
            with_preview = resolution.ttl_s <= PREVIEW_TTL_S
            for cost, event in heapq.nlargest(TOP_PER_BUCKET, found, key=lambda item: item[0]):
                kept.append((cost, orjson.dumps(expensive_entry(event, self._redact, with_preview))))
            if len(kept) > TOP_PER_BUCKET:  # folded over several flushes while Redis is away: only the top survive
                kept.sort(key=lambda item: item[0], reverse=True)
                del kept[TOP_PER_BUCKET:]

    def _next_batch(self) -> StatsBatch | None:
        """The sums not yet in a batch, per bucket of every resolution (the hour and day sums made from
        the minutes'), as the next numbered batch; None when there is nothing to write."""
        minutes, self._minutes = self._minutes, {}
        top, self._top = self._top, {}
        events, self._folded_events = self._folded_events, 0
        if not minutes and not top:
            return None
        buckets: dict[str, BucketSums] = {}
        for start, fields in minutes.items():
            for resolution in RESOLUTIONS:
                bucket = bucket_start(start, resolution)
                key = bucket_key(self._prefix, resolution, bucket)
                if key not in buckets:
                    buckets[key] = BucketSums(key, applied_key(self._prefix, resolution, bucket), resolution.ttl_s, {})
                target = buckets[key].sums
                for name, amount in fields.items():
                    target[name] = target.get(name, 0.0) + amount
        self._batches += 1
        return StatsBatch(self._batches, list(buckets.values()), top, events)

    async def flush(self) -> None:
        """Write what has been recorded so far; on a Redis failure keep the batch to send again."""
        async with self._lock:
            self._fold()  # also while Redis is away: the sums stay small, the events would not
            if self._unsent is not None:
                await self._write(self._unsent)  # what came since waits: it goes in a batch of its own
            self._unsent = self._next_batch()
            if self._unsent is not None:
                await self._write(self._unsent)

    async def _write(self, batch: StatsBatch) -> None:
        from redis.exceptions import RedisError

        try:
            await write_batch(self._redis, self._replica, batch, TOP_PER_BUCKET)
        except (RedisError, OSError) as exc:
            now = time.monotonic()
            if now - self._last_failure_log > 30:
                self._last_failure_log = now
                logger.warning("stats: cannot write to Redis (%s); keeping the counts to retry", exc)
            raise
        self._unsent = None
        self.unflushed_events -= batch.events

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
    shadow_listener = getattr(state.components.get("metrics"), "shadow_run", None)
    redact = load_redactor(state.settings.ledger.redact)  # the outcome log's hook: previews are prompt text
    recorder = StatsRecorder(
        state.redis, state.settings.redis_prefix, estimator, shadow_listener=shadow_listener, redact=redact
    )
    state.components["stats"] = recorder
    state.sinks.append(recorder)
    task = asyncio.create_task(recorder.run(), name="stats-flush")

    async def stop() -> None:
        from redis.exceptions import RedisError

        await cancel_and_wait(task)
        try:
            await recorder.flush()
        except (RedisError, OSError):
            metrics = state.components.get("metrics")
            if metrics is not None:
                metrics.dropped("stats", recorder.unflushed_events)
            logger.warning("stats: the last counts could not be written at shutdown")

    stack.push_async_callback(stop)
