"""Prometheus metrics on the service's own registry (made at startup, never the process-global one,
so that two apps in one process, as in tests, do not share counters), and `GET /metrics`.

With several worker processes (`serve --workers N`) every worker writes its series to files in
PROMETHEUS_MULTIPROC_DIR (prometheus-client's multiprocess mode, which `serve` turns on for them), and
a scrape, whichever worker answers it, sums every worker's: otherwise each scrape would show one
random worker's counters and rates would be meaningless.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from contextlib import AsyncExitStack
from typing import Any

from fastapi import APIRouter, Request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from starlette.responses import Response

from router.events import RequestEvent
from router.scoring import LOAD_STAGES, ClassifierHealth
from router.state import AppState, get_state

router = APIRouter()

# Request latency from about 5 ms (a cache hit) to minutes (a multi-layer mixture).
_LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300)
# The classifier scores in microseconds; a millisecond is already slow.
_SCORING_BUCKETS_S = (1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 0.01, 0.05)
# Set for worker processes: prometheus-client reads it when it is first imported.
MULTIPROC_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"
# Set with it by `serve --workers`, which empties the directory first: only then are its files this
# run's workers' alone, and a scrape sums them. (A directory set for a single process may hold an
# earlier run's files.)
SHARED_METRICS_ENV = "MOA_ROUTER_METRICS_SHARED"
_SHADOW_VERDICTS = {True: "mixture_needed", False: "cheap_enough", None: "unclear"}
# Event sinks that count what they drop themselves (`counters.dropped`).
_DROPPING_SINKS = ("ledger", "shadow", "stats")


class Metrics:
    """Every series the service exports. An EventSink: `record` only updates in-memory counters."""

    def __init__(self, components: Mapping[str, Any] | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "moa_requests", "Requests answered, by route and HTTP status", ["route", "status"], registry=r
        )
        self.decisions = Counter(
            "moa_route_decisions", "Routing decisions, by route and reason", ["route", "reason"], registry=r
        )
        self.latency = Histogram(
            "moa_request_latency_seconds",
            "Request latency by route",
            ["route"],
            buckets=_LATENCY_BUCKETS_S,
            registry=r,
        )
        self.spend = Counter(
            "moa_spend_usd",
            "Upstream spend in USD of answering requests, by model (shadow evaluations: moa_shadow_spend_usd)",
            ["model"],
            registry=r,
        )
        # With moa_spend_usd, the spend that /v1/stats and the dashboard show.
        self.shadow_spend = Counter(
            "moa_shadow_spend_usd",
            "Upstream spend in USD of shadow evaluations (mixture re-runs and judges)",
            registry=r,
        )
        self.shadow_runs = Counter(
            "moa_shadow_runs",
            "Shadow evaluations, by verdict (mixture_needed|cheap_enough|unclear: no verdict or the run failed)",
            ["verdict"],
            registry=r,
        )
        self.tokens = Counter(
            "moa_tokens", "Upstream tokens, by model and kind (prompt|completion)", ["model", "kind"], registry=r
        )
        self.cache = Counter("moa_cache_requests", "Cache outcomes (hit|miss|bypass)", ["result"], registry=r)
        self.cache_saved = Counter("moa_cache_saved_usd", "Upstream cost that cache hits avoided", registry=r)
        self.upstream_errors = Counter(
            "moa_upstream_errors",
            "Failed upstream calls, by model, role and kind",
            ["model", "role", "kind"],
            registry=r,
        )
        self.quorum_failures = Counter(
            "moa_mixture_quorum_failures", "Mixture runs with fewer proposer answers than the quorum", registry=r
        )
        self.aggregator_fallbacks = Counter(
            "moa_mixture_aggregator_fallbacks",
            "Mixture runs answered by a proposer after the aggregator failed",
            registry=r,
        )
        self.scoring = Histogram(
            "moa_classifier_scoring_seconds", "Time to score one query", buckets=_SCORING_BUCKETS_S, registry=r
        )
        self.cache_bypasses = Counter(
            "moa_cache_bypasses",
            "Requests that bypassed the cache, by why (e.g. redis-timeout)",
            ["reason"],
            registry=r,
        )
        self.events_dropped = Counter(
            "moa_events_dropped", "Request events an event sink had to drop", ["sink"], registry=r
        )
        self.classifier_load_failures = Counter(
            "moa_classifier_load_failures",
            "Classifier versions this process could not load (missing or corrupt files), by stage (startup|reload)",
            ["stage"],
            registry=r,
        )
        # Per process ("liveall": a pid label with several workers), so that each worker's state shows.
        self.classifier_serving = Gauge(
            "moa_classifier_serving",
            "1 for the classifier version this process serves",
            ["version"],
            registry=r,
            multiprocess_mode="liveall",
        )
        self.classifier_degraded = Gauge(
            "moa_classifier_degraded",
            "1 while this process serves another classifier version than the promoted one, which it cannot load",
            registry=r,
            multiprocess_mode="liveall",
        )
        # Series with labels appear only once used: create the known ones so a scrape always has them.
        for result in ("hit", "miss", "bypass"):
            self.cache.labels(result)
        for verdict in _SHADOW_VERDICTS.values():
            self.shadow_runs.labels(verdict)
        for sink in _DROPPING_SINKS:
            self.events_dropped.labels(sink)
        for stage in LOAD_STAGES:
            self.classifier_load_failures.labels(stage)
        self._classifier_seen: ClassifierHealth | None = None
        self._components = components if components is not None else {}
        self._drops_seen: dict[str, int] = {}  # each sink's own drop count, as far as it is counted here
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}

    def _child(self, metric: Counter | Histogram, *labels: str) -> Any:
        # prometheus-client's `labels()` costs microseconds a call; a request makes a dozen of them.
        key = (id(metric), labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def record(self, event: RequestEvent) -> None:
        child = self._child
        route = event.route or "none"
        child(self.requests, route, str(event.status)).inc()
        if event.reason:
            child(self.decisions, route, event.reason).inc()
        child(self.latency, route).observe(event.latency_s)
        child(self.cache, event.cache).inc()
        if event.cache == "bypass":
            child(self.cache_bypasses, str(event.extra.get("cache_detail") or "unknown")).inc()
        elif event.cache == "hit":
            self.cache_saved.inc(event.saved_usd)
        if event.error == "mixture_quorum_failed":
            self.quorum_failures.inc()
        if event.fallback == "proposer":
            self.aggregator_fallbacks.inc()
        scoring_s = event.extra.get("scoring_s")
        if isinstance(scoring_s, float):
            self.scoring.observe(scoring_s)
        for call in event.calls:
            if call.cost_usd:
                child(self.spend, call.model).inc(call.cost_usd)
            if call.usage.prompt_tokens:
                child(self.tokens, call.model, "prompt").inc(call.usage.prompt_tokens)
            if call.usage.completion_tokens:
                child(self.tokens, call.model, "completion").inc(call.usage.completion_tokens)
            if call.status != "ok":
                child(self.upstream_errors, call.model, call.role, call.error or call.status).inc()
        self.count_sink_drops()

    def shadow_run(self, mixture_needed: bool | None, cost_usd: float) -> None:
        """A finished shadow evaluation: whether the judge found the mixture needed (None: unclear) and
        what the run cost."""
        self._child(self.shadow_runs, _SHADOW_VERDICTS[mixture_needed]).inc()
        if cost_usd:
            self.shadow_spend.inc(cost_usd)

    def dropped(self, sink: str, count: int = 1) -> None:
        """For event sinks without their own counter to report events they could not keep."""
        self._child(self.events_dropped, sink).inc(count)

    def count_sink_drops(self) -> None:
        """Adds what the sinks that count their own drops dropped since the last look. Done per event and
        per scrape, into a plain counter, so that it is summed across workers like every other series."""
        for sink in _DROPPING_SINKS:
            own = getattr(getattr(self._components.get(sink), "counters", None), "dropped", 0)
            if not isinstance(own, int):
                continue
            new = own - self._drops_seen.get(sink, 0)
            if new < 0:  # a sink that started counting again (a replaced component)
                self._drops_seen[sink], new = 0, own
            if new > 0:
                self._drops_seen[sink] = own
                self._child(self.events_dropped, sink).inc(new)

    def classifier_changed(self, health: ClassifierHealth) -> None:
        """ActiveClassifier's listener: the serving version, whether it is degraded, new failed loads."""
        seen = self._classifier_seen
        if seen is not None and seen.serving != health.serving:
            self.classifier_serving.labels(seen.serving).set(0)  # stays 0 in a worker's file; gone here
            self.classifier_serving.remove(seen.serving)
        self.classifier_serving.labels(health.serving).set(1)
        self.classifier_degraded.set(0 if health.failure is None else 1)
        for stage, count in health.failed_loads.items():
            new = count - (0 if seen is None else seen.failed_loads.get(stage, 0))
            if new > 0:
                self.classifier_load_failures.labels(stage).inc(new)
        self._classifier_seen = health

    def close(self) -> None:
        """A worker that stops takes its per-process gauges out of the shared directory's sums."""
        shared = os.environ.get(MULTIPROC_DIR_ENV)
        if shared and os.environ.get(SHARED_METRICS_ENV) == "1":
            mark_process_dead(os.getpid(), shared)  # type: ignore[no-untyped-call]

    def render(self) -> bytes:
        self.count_sink_drops()
        shared = os.environ.get(MULTIPROC_DIR_ENV)
        if not shared or os.environ.get(SHARED_METRICS_ENV) != "1":
            return generate_latest(self.registry)
        every_worker = CollectorRegistry()
        MultiProcessCollector(every_worker, shared)  # type: ignore[no-untyped-call]
        return generate_latest(every_worker)


async def start_metrics(state: AppState, stack: AsyncExitStack) -> None:
    """Startup step: the registry and its event sink, as `state.components["metrics"]`."""
    metrics = Metrics(state.components)
    state.components["metrics"] = metrics
    state.sinks.append(metrics)
    state.classifier.watch(metrics.classifier_changed)  # its failures at startup included
    stack.callback(metrics.close)
    # Registered first, so it runs last at shutdown: after the outcome log and the shadow sampler count
    # their final drops (in a worker, its files outlive it and stay in the sums).
    stack.callback(metrics.count_sink_drops)


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    found = get_state(request).components.get("metrics")
    if not isinstance(found, Metrics):
        return Response("metrics are not enabled\n", status_code=404, media_type="text/plain")
    return Response(found.render(), media_type=CONTENT_TYPE_LATEST)
