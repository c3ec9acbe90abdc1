"""GET /metrics: Prometheus text that prometheus-client's parser reads, with the series ops need."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from router.events import RequestEvent
from router.metrics import Metrics
from router.mixture import CallRecord
from router.providers.base import Usage
from tests.conftest import sim_stats


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """{(sample name, labels): value} of a scrape."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(found: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    return found.get((name, frozenset(labels.items())), 0.0)


def test_metrics_sink_counts_an_event() -> None:
    metrics = Metrics()
    event = RequestEvent(
        request_id="r1",
        tenant="t",
        route="mixture",
        reason="difficulty",
        cache="miss",
        status=502,
        error="mixture_quorum_failed",
        latency_s=0.3,
    )
    event.calls += [
        CallRecord("openai/p1", "proposer", "ok", 0.1, Usage(100, 50), 0.002),
        CallRecord("openai/p2", "proposer", "error", 0.1, error="timeout"),
        CallRecord("openai/p3", "proposer", "late", 0.1, error="deadline"),
    ]
    event.extra["scoring_s"] = 0.00004
    metrics.record(event)
    metrics.dropped("stats", 3)
    found = samples(metrics.render().decode())
    assert value(found, "moa_requests_total", route="mixture", status="502") == 1
    assert value(found, "moa_spend_usd_total", model="openai/p1") == 0.002
    assert value(found, "moa_tokens_total", model="openai/p1", kind="prompt") == 100
    assert value(found, "moa_tokens_total", model="openai/p1", kind="completion") == 50
    assert value(found, "moa_upstream_errors_total", model="openai/p2", role="proposer", kind="timeout") == 1
    assert value(found, "moa_upstream_errors_total", model="openai/p3", role="proposer", kind="deadline") == 1
    assert value(found, "moa_mixture_quorum_failures_total") == 1
    assert value(found, "moa_cache_requests_total", result="miss") == 1
    assert value(found, "moa_classifier_scoring_seconds_count") == 1
    assert value(found, "moa_request_latency_seconds_count", route="mixture") == 1
    assert value(found, "moa_events_dropped_total", sink="stats") == 3
    # Each Metrics has its own registry: a second one starts from zero.
    assert value(samples(Metrics().render().decode()), "moa_requests_total", route="mixture", status="502") == 0


def _chat(base: str, content: str, route: str, **extra: Any) -> httpx.Response:
    return httpx.post(
        f"{base}/v1/chat/completions",
        headers={"x-moa-route": route},
        json={"model": "moa-router", "messages": [{"role": "user", "content": content}], **extra},
        timeout=30,
    )


def test_metrics_endpoint_carries_the_series_after_traffic(make_service: Any, redis_url: str, sim: Any) -> None:
    base = make_service(redis_url=redis_url, resilience={"max_attempts": 1})
    assert _chat(base, "What is 2 + 2?", "cheap", temperature=0).status_code == 200
    assert _chat(base, "What is 2 + 2?", "cheap", temperature=0).headers["x-moa-cache"] == "hit"
    assert _chat(base, "Prove Fermat's little theorem.", "mixture").status_code == 200
    # Two of three proposers fail: below the quorum of two, so the mixture fails with a 502.
    for name in ("prop-a", "prop-b"):
        httpx.patch(f"{sim.root_url}/_sim/models/{name}", json={"fail_next": 1}, timeout=5).raise_for_status()
    assert _chat(base, "Compare two proofs of the Pythagorean theorem.", "mixture").status_code == 502

    scrape = httpx.get(f"{base}/metrics", timeout=10)
    assert scrape.status_code == 200
    assert scrape.headers["content-type"].startswith("text/plain")
    found = samples(scrape.text)
    assert value(found, "moa_requests_total", route="cheap", status="200") == 2
    assert value(found, "moa_requests_total", route="mixture", status="200") == 1
    assert value(found, "moa_requests_total", route="mixture", status="502") == 1
    assert value(found, "moa_request_latency_seconds_count", route="cheap") == 2
    assert value(found, "moa_cache_requests_total", result="hit") == 1
    assert value(found, "moa_cache_requests_total", result="miss") == 1
    assert value(found, "moa_cache_requests_total", result="bypass") == 2
    assert value(found, "moa_cache_bypasses_total", reason="not-deterministic") == 2
    assert value(found, "moa_cache_saved_usd_total") > 0
    assert value(found, "moa_mixture_quorum_failures_total") == 1
    assert value(found, "moa_upstream_errors_total", model="openai/prop-a", role="proposer", kind="upstream") == 1
    assert value(found, "moa_upstream_errors_total", model="openai/prop-b", role="proposer", kind="upstream") == 1
    # The one cheap call upstream (the repeat was a hit) and both aggregator-less proposer runs are priced.
    assert sim_stats(sim)["models"]["cheap-1"]["calls"] == 1
    assert value(found, "moa_spend_usd_total", model="openai/cheap-1") > 0
    assert value(found, "moa_tokens_total", model="openai/agg-1", kind="completion") > 0
    assert value(found, "moa_classifier_scoring_seconds_count") == 4
    assert ("moa_events_dropped_total", frozenset({("sink", "ledger")})) in found


def test_drops_that_a_sink_counts_itself_are_exported_once_each() -> None:
    class Counters:
        dropped = 5

    class Sink:
        counters = Counters()

    metrics = Metrics({"ledger": Sink()})
    assert value(samples(metrics.render().decode()), "moa_events_dropped_total", sink="ledger") == 5
    Counters.dropped = 7
    metrics.record(RequestEvent(request_id="r1", tenant="t", route="cheap", cache="miss", latency_s=0.01))
    assert value(samples(metrics.render().decode()), "moa_events_dropped_total", sink="ledger") == 7  # not 12
    Counters.dropped = 2  # a sink that started counting again
    assert value(samples(metrics.render().decode()), "moa_events_dropped_total", sink="ledger") == 9


def test_only_a_worker_run_sums_the_multiprocess_directory(tmp_path: Any, monkeypatch: Any) -> None:
    # A directory set for a single process may hold an earlier run's files: its own counts are served.
    metrics = Metrics()
    metrics.record(RequestEvent(request_id="r1", tenant="t", route="cheap", cache="miss", latency_s=0.01))
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    assert value(samples(metrics.render().decode()), "moa_requests_total", route="cheap", status="200") == 1
    monkeypatch.setenv("MOA_ROUTER_METRICS_SHARED", "1")  # as `serve --workers` sets it: the files are summed
    assert value(samples(metrics.render().decode()), "moa_requests_total", route="cheap", status="200") == 0


def test_classifier_series_follow_the_serving_version_and_count_each_failed_load_once() -> None:
    from router.scoring import ClassifierHealth, LoadFailure

    metrics = Metrics()
    metrics.classifier_changed(ClassifierHealth("v1", None, {"startup": 0, "reload": 0}))
    failure = LoadFailure("v2", "unreadable", "weights.npz is missing", "reload", 0.0)
    metrics.classifier_changed(ClassifierHealth("v1", failure, {"startup": 0, "reload": 1}))
    metrics.classifier_changed(ClassifierHealth("v1", failure, {"startup": 0, "reload": 1}))  # a retry, no news
    found = samples(metrics.render().decode())
    assert value(found, "moa_classifier_serving", version="v1") == 1 and value(found, "moa_classifier_degraded") == 1
    assert value(found, "moa_classifier_load_failures_total", stage="reload") == 1
    assert ("moa_classifier_load_failures_total", frozenset({("stage", "startup")})) in found  # there from the start
    metrics.classifier_changed(ClassifierHealth("v2", None, {"startup": 0, "reload": 1}))
    found = samples(metrics.render().decode())
    assert value(found, "moa_classifier_serving", version="v2") == 1 and value(found, "moa_classifier_degraded") == 0
    assert ("moa_classifier_serving", frozenset({("version", "v1")})) not in found


def test_the_exported_spend_adds_up_to_the_stats_spend_with_shadow_runs(make_service: Any, redis_url: str) -> None:
    import time

    # Shadow evaluations are spend in /v1/stats and on the dashboard; /metrics left them out, so the two
    # disagreed by the cost of every shadow run.
    base = make_service(
        redis_url=redis_url, ledger={"store_prompts": True, "flush_interval_s": 0.05}, shadow={"cheap_sample_rate": 1.0}
    )
    assert _chat(base, "Is the mixture needed here?", "cheap").status_code == 200
    deadline = time.monotonic() + 15
    while True:
        stats = httpx.get(f"{base}/v1/stats", params={"window": "hour"}, timeout=10).json()["totals"]
        if stats["shadow"]["runs"] or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert stats["shadow"]["runs"] == 1 and stats["shadow"]["cost_usd"] > 0
    found = samples(httpx.get(f"{base}/metrics", timeout=10).text)
    by_model = sum(v for (name, _), v in found.items() if name == "moa_spend_usd_total")
    shadow = value(found, "moa_shadow_spend_usd_total")
    assert shadow == pytest.approx(stats["shadow"]["cost_usd"], rel=1e-9)
    assert by_model + shadow == pytest.approx(stats["spend_usd"], rel=1e-9)
    verdicts = {"mixture_needed": 0.0, "cheap_enough": 0.0, "unclear": 0.0}
    verdicts.update(
        {dict(labels)["verdict"]: v for (name, labels), v in found.items() if name == "moa_shadow_runs_total"}
    )
    assert sum(verdicts.values()) == 1
    assert verdicts["cheap_enough"] == stats["shadow"]["cheap_enough"]
