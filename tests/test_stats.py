"""Stats: counters per time bucket in Redis, read back as /v1/stats; numbers checked against values
computed by hand from the simulator's prices and token counts."""

from __future__ import annotations

import dataclasses
import hashlib
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

import classifier
from router.events import RequestEvent
from router.mixture import CallRecord
from router.prompts import AGGREGATE_INSTRUCTIONS
from router.providers.base import Usage
from router.providers.pricing import Prices
from router.redis_client import make_redis_client
from router.simulator.answers import compose_answer, prompt_tokens
from router.stats import (
    DAY,
    HOUR,
    MINUTE,
    MixtureCostEstimator,
    StatsRecorder,
    bucket_key,
    bucket_start,
    counterfactual_usd,
    latency_bin,
    latency_bin_bounds,
    top_key,
)
from router.stats_batch import applied_key
from router.stats_query import WINDOWS, latency_percentiles, stats_report
from tests import conftest
from tests.conftest import TEST_MODELS
from tests.support.exec_proxy import ExecReplyProxy
from tests.support.slow_proxy import SlowProxy

PROPOSERS = ("prop-a", "prop-b", "prop-c")


def price(name: str) -> tuple[float, float]:
    _, inp, out = TEST_MODELS[name]
    return inp, out


def overhead_tokens(proposers: int) -> int:
    """The aggregation instructions with empty candidates, at the router's four characters a token."""
    text = AGGREGATE_INSTRUCTIONS.format(count=proposers, candidates="\n\n".join(f"[{i}] " for i in range(1, 4)))
    return (len(text) + 3) // 4


def mixture_estimate(p: int, c: int) -> float:
    """The documented counterfactual for one cheap answer of p prompt and c completion tokens."""
    q = p + overhead_tokens(3) + 3 * c
    agg_in, agg_out = price("agg-1")
    return sum(price(m)[0] * p + price(m)[1] * c for m in PROPOSERS) + agg_in * q + agg_out * c


# ---- the pure parts ----


def test_latency_bins_hold_their_values() -> None:
    for latency in (0.0004, 0.001, 0.0011, 0.0123, 0.25, 1.0, 3.7, 42.0, 599.0):
        lower, upper = latency_bin_bounds(latency_bin(latency))
        assert lower < latency <= upper or (latency <= 0.001 and lower == 0.0)
    assert latency_bin(10_000.0) == latency_bin(100_000.0)  # everything beyond the last bound shares a bin


def test_percentiles_come_from_the_histogram() -> None:
    fast, slow = latency_bin(0.010), latency_bin(2.0)
    counters = {f"lat:cheap:{fast}": 90.0, f"lat:mixture:{slow}": 10.0}
    overall = latency_percentiles(counters)
    assert overall["count"] == 100
    lower, upper = latency_bin_bounds(fast)
    assert lower * 1000 <= overall["p50"] <= upper * 1000
    lower, upper = latency_bin_bounds(slow)
    assert lower * 1000 <= overall["p95"] <= upper * 1000
    assert latency_percentiles(counters, "mixture")["count"] == 10
    assert latency_percentiles({}, "strong") == {"count": 0, "p50": None, "p95": None, "p99": None}


def test_estimator_prices_every_proposer_and_the_larger_aggregator_prompt() -> None:
    estimator = MixtureCostEstimator([Prices(*price(m)) for m in PROPOSERS], Prices(*price("agg-1")), layers=1)
    assert estimator.overhead_tokens == overhead_tokens(3)
    assert estimator.estimate(Usage(120, 40)) == pytest.approx(mixture_estimate(120, 40), rel=1e-12)
    assert estimator.estimate(Usage()) == 0.0
    two_layers = MixtureCostEstimator([Prices(*price(m)) for m in PROPOSERS], Prices(*price("agg-1")), layers=2)
    q = 120 + overhead_tokens(3) + 3 * 40
    second_layer = sum(price(m)[0] * q + price(m)[1] * 40 for m in PROPOSERS)
    assert two_layers.estimate(Usage(120, 40)) == pytest.approx(mixture_estimate(120, 40) + second_layer, rel=1e-12)


def test_the_counterfactual_of_a_cut_off_answer_counts_what_it_was_billed() -> None:
    estimator = MixtureCostEstimator([Prices(*price(m)) for m in PROPOSERS], Prices(*price("agg-1")))
    event = RequestEvent(request_id="r", tenant="t", route="cheap", status=499, error="client_disconnected")
    billed = Usage(120, 15)  # the prompt and the words sent before the client left
    event.calls.append(CallRecord("openai/cheap-1", "cheap", "late", 0.4, billed, 1e-4, error="client_disconnected"))
    assert counterfactual_usd(event, estimator) == pytest.approx(mixture_estimate(120, 15), rel=1e-12)
    failed = RequestEvent(request_id="f", tenant="t", route="cheap", status=504, error="upstream_timeout")
    failed.calls.append(CallRecord("openai/cheap-1", "cheap", "error", 0.6, error="timeout"))
    assert counterfactual_usd(failed, estimator) == 0.0  # nothing billed, nothing to compare with


def test_the_counterfactual_of_an_answer_a_fallback_gave_counts_one_answer() -> None:
    # The primary timed out after it was sent (its prompt is billed), then the fallback answered: a mixture
    # would have been asked the question once, not once per attempt.
    estimator = MixtureCostEstimator([Prices(*price(m)) for m in PROPOSERS], Prices(*price("agg-1")))
    event = RequestEvent(request_id="r", tenant="t", route="cheap", fallback="entry")
    replaced = CallRecord("openai/cheap-1", "cheap", "error", 2.0, Usage(120, 0), 1e-4, error="timeout")
    event.calls.append(dataclasses.replace(replaced, usage_estimated=True, replaced_by_fallback=True))
    event.calls.append(CallRecord("openai/judge-1", "cheap", "ok", 0.3, Usage(120, 30), 2e-4))
    assert counterfactual_usd(event, estimator) == pytest.approx(mixture_estimate(120, 30), rel=1e-12)


# ---- the recorder against a real Redis ----


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[Any]:
    from redis.asyncio import Redis

    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()


def _prefix() -> str:
    return f"tstats{uuid.uuid4().hex[:10]}"


async def test_recorder_sums_events_into_buckets_and_keeps_the_most_expensive(redis_client: Any) -> None:
    prefix = _prefix()
    now = 1_700_000_000.0
    estimator = MixtureCostEstimator([Prices(1e-6, 2e-6)], Prices(1e-6, 2e-6))
    recorder = StatsRecorder(redis_client, prefix, estimator, clock=lambda: now)
    for i in range(30):
        event = RequestEvent(
            request_id=f"r{i}", tenant="acme", started_at=now - i, route="mixture", reason="difficulty"
        )
        event.calls.append(CallRecord("m", "proposer", "ok", 0.1, Usage(10, 10), cost_usd=0.001 * (i + 1)))
        event.latency_s = 0.5
        recorder.record(event)
    recorder.record_shadow(mixture_needed=False, cost_usd=0.01, at=now)
    await recorder.flush()
    assert recorder.unflushed_events == 0
    report = await stats_report(redis_client, prefix, WINDOWS["day"], now=now, top=5)
    totals = report["totals"]
    assert totals["requests"] == 30
    assert totals["spend_by_route"]["mixture"] == pytest.approx(0.001 * sum(range(1, 31)), rel=1e-12)
    assert totals["spend_usd"] == pytest.approx(0.001 * sum(range(1, 31)) + 0.01, rel=1e-12)
    assert totals["shadow"] == {"runs": 1, "judged": 1, "cheap_enough": 1, "cheap_enough_rate": 1.0, "cost_usd": 0.01}
    assert [entry["request_id"] for entry in report["expensive"]] == ["r29", "r28", "r27", "r26", "r25"]
    # The buckets expire: nothing is kept forever.
    ttl = await redis_client.ttl(bucket_key(prefix, HOUR, bucket_start(now, HOUR)))
    assert 0 < ttl <= HOUR.ttl_s


async def test_recorder_keeps_counts_while_redis_is_down(own_redis: Any) -> None:
    from redis.asyncio import Redis
    from redis.exceptions import RedisError

    client = Redis.from_url(own_redis.url, socket_timeout=1, socket_connect_timeout=1)
    prefix = _prefix()
    try:
        recorder = StatsRecorder(client, prefix, MixtureCostEstimator([Prices(0, 0)], Prices(0, 0)))
        event = RequestEvent(request_id="r1", tenant="t", route="cheap", reason="easy")
        own_redis.stop()
        recorder.record(event)
        with pytest.raises((RedisError, OSError)):
            await recorder.flush()
        assert recorder.unflushed_events == 1
        recorder.record(RequestEvent(request_id="r2", tenant="t", route="cheap", reason="easy"))
        with pytest.raises((RedisError, OSError)):
            await recorder.flush()  # the first batch again, while the second request waits behind it
        assert recorder.unflushed_events == 2
        own_redis.start()
        await recorder.flush()
        report = await stats_report(client, prefix, WINDOWS["hour"], top=0)
        assert report["totals"]["requests"] == 2 and recorder.unflushed_events == 0
    finally:
        await client.aclose()


def _mixture_event(request_id: str, at: float, cost_usd: float) -> RequestEvent:
    event = RequestEvent(request_id=request_id, tenant="acme", started_at=at, route="mixture", reason="difficulty")
    event.calls.append(CallRecord("m", "proposer", "ok", 0.1, Usage(10, 10), cost_usd=cost_usd))
    event.latency_s = 0.5
    return event


async def _totals(client: Any, prefix: str, now: float) -> dict[str, Any]:
    totals: dict[str, Any] = (await stats_report(client, prefix, WINDOWS["day"], now=now, top=0))["totals"]
    return totals


async def test_a_flush_whose_reply_comes_too_late_counts_its_batch_once(redis_url: str, redis_client: Any) -> None:
    from redis.exceptions import RedisError

    prefix = _prefix()
    now = time.time()
    async with SlowProxy(redis_url).running() as proxy:
        slow = make_redis_client(proxy.url, 0.3)
        try:
            recorder = StatsRecorder(
                slow, prefix, MixtureCostEstimator([Prices(0, 0)], Prices(0, 0)), clock=lambda: now
            )
            await slow.ping()  # connected, so that the held reply is the flush's
            recorder.record(_mixture_event("r1", now, 0.25))
            recorder.record_shadow(mixture_needed=True, cost_usd=0.5, at=now)
            proxy.hold_next_reply(0.6)  # Redis applies the flush; its reply comes after the client gave up
            with pytest.raises(RedisError):
                await recorder.flush()
            assert (await _totals(redis_client, prefix, now))["requests"] == 1  # applied, although the flush failed
            assert recorder.unflushed_events == 1
            recorder.record(_mixture_event("r2", now, 0.125))  # recorded meanwhile: counted once too
            await recorder.flush()  # the lost batch again, then the new one
            await recorder.flush()
        finally:
            await slow.aclose()
    totals = await _totals(redis_client, prefix, now)
    assert totals["requests"] == 2 and totals["routes"] == {"mixture": 2}
    assert totals["spend_usd"] == pytest.approx(0.25 + 0.125 + 0.5, rel=1e-12)
    assert totals["shadow"]["runs"] == 1 and totals["shadow"]["cost_usd"] == pytest.approx(0.5)
    assert totals["latency_ms"]["all"]["count"] == 2
    assert recorder.unflushed_events == 0
    hour = await stats_report(redis_client, prefix, WINDOWS["hour"], now=now, top=5)
    assert hour["totals"]["requests"] == 2  # the minute buckets too
    assert [entry["request_id"] for entry in hour["expensive"]] == ["r1", "r2"]


async def test_a_flush_whose_connection_drops_after_exec_counts_its_batch_once(
    redis_url: str, redis_client: Any
) -> None:
    prefix = _prefix()
    now = time.time()
    proxy = ExecReplyProxy(redis_url)
    async with proxy.running():
        client = make_redis_client(proxy.url, 1.0)
        try:
            recorder = StatsRecorder(
                client, prefix, MixtureCostEstimator([Prices(0, 0)], Prices(0, 0)), clock=lambda: now
            )
            recorder.record(_mixture_event("r1", now, 0.25))
            # Redis applies the transaction and the connection closes before its reply: the client retries
            # on a new connection (it does so on a connection error only), sending the same commands again.
            proxy.drop_reply_to_next_exec()
            await recorder.flush()
        finally:
            await client.aclose()
    totals = await _totals(redis_client, prefix, now)
    assert totals["requests"] == 1 and totals["spend_usd"] == pytest.approx(0.25)


async def test_replicas_add_to_the_same_buckets_and_markers_expire_with_them(redis_client: Any) -> None:
    prefix = _prefix()
    now = 1_700_000_000.0
    replicas = [
        StatsRecorder(redis_client, prefix, MixtureCostEstimator([Prices(0, 0)], Prices(0, 0)), clock=lambda: now)
        for _ in range(2)
    ]
    for number, recorder in enumerate(replicas):
        recorder.record(_mixture_event(f"r{number}", now, 0.25))
        await recorder.flush()  # both replicas' first batch: each is applied
    assert (await _totals(redis_client, prefix, now + 60))["requests"] == 2
    layout = {key.decode(): await redis_client.ttl(key) async for key in redis_client.scan_iter(match=f"{prefix}:*")}
    for resolution in (MINUTE, HOUR, DAY):
        start = bucket_start(now, resolution)
        assert 0 < layout.pop(bucket_key(prefix, resolution, start)) <= resolution.ttl_s
        assert 0 < layout.pop(applied_key(prefix, resolution, start)) <= resolution.ttl_s
    assert set(layout) == {
        top_key(prefix, resolution, bucket_start(now, resolution)) for resolution in (MINUTE, HOUR, DAY)
    }


# ---- the whole service: a known mix of cheap, mixture and cached requests ----


def _chat(base: str, content: str, route: str, temperature: float = 0.0) -> httpx.Response:
    response = httpx.post(
        f"{base}/v1/chat/completions",
        headers={"x-moa-route": route},
        json={"model": "moa-router", "temperature": temperature, "messages": [{"role": "user", "content": content}]},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    return response


def _cheap_cost(p: int, c: int) -> float:
    inp, out = price("cheap-1")
    return p * inp + c * out


def answer_tokens(model: str, messages: list[dict[str, Any]]) -> int:
    """How many tokens the simulated model writes for these messages (its answers are deterministic)."""
    fleet = conftest.test_fleet()
    sim = fleet.model_named(model)
    assert sim is not None
    return len(compose_answer(fleet.seed, sim.name, sim.family, sim.output_tokens, messages))


def _mixture_cost(messages: list[dict[str, Any]], usage: dict[str, int]) -> float:
    """Three proposers read the prompt and write their answers; the aggregator read, and wrote, the rest
    of the reported tokens."""
    p = prompt_tokens(messages)
    written = {model: answer_tokens(model, messages) for model in PROPOSERS}
    aggregator_prompt = usage["prompt_tokens"] - 3 * p
    aggregator_answer = usage["completion_tokens"] - sum(written.values())
    assert aggregator_prompt > p + sum(written.values()) and aggregator_answer > 0
    agg_in, agg_out = price("agg-1")
    proposers = sum(price(m)[0] * p + price(m)[1] * written[m] for m in PROPOSERS)
    return proposers + aggregator_prompt * agg_in + aggregator_answer * agg_out


def test_stats_after_known_mix_equal_hand_computed_values(make_service: Any, redis_url: str) -> None:
    base = make_service(redis_url=redis_url)
    cheap_prompts = ["What is the capital of France?", "Name a primary colour.", "Say hello in Spanish."]
    mixture_prompts = ["Prove that there are infinitely many primes.", "Derive the quadratic formula."]
    spend = counterfactual = cache_saved = 0.0
    cheap_costs: dict[str, float] = {}
    mixture_costs: dict[str, float] = {}
    for prompt in cheap_prompts:
        messages = [{"role": "user", "content": prompt}]
        usage = _chat(base, prompt, "cheap").json()["usage"]
        assert usage["prompt_tokens"] == prompt_tokens(messages)
        assert usage["completion_tokens"] == answer_tokens("cheap-1", messages)
        cheap_costs[prompt] = _cheap_cost(usage["prompt_tokens"], usage["completion_tokens"])
        spend += cheap_costs[prompt]
        counterfactual += mixture_estimate(usage["prompt_tokens"], usage["completion_tokens"])
    for prompt in mixture_prompts:
        messages = [{"role": "user", "content": prompt}]
        mixture_costs[prompt] = _mixture_cost(messages, _chat(base, prompt, "mixture").json()["usage"])
        spend += mixture_costs[prompt]
        counterfactual += mixture_costs[prompt]
    # Repeats are answered from the cache: no spend, and the cost of the first answer saved.
    for prompt, route, saved in (
        (cheap_prompts[0], "cheap", cheap_costs),
        (mixture_prompts[0], "mixture", mixture_costs),
    ):
        hit = _chat(base, prompt, route)
        assert hit.headers["x-moa-cache"] == "hit"
        cache_saved += saved[prompt]
    # Not deterministic, so it bypasses the cache.
    usage = _chat(base, "Tell me a fun fact.", "cheap", temperature=0.9).json()["usage"]
    spend += _cheap_cost(usage["prompt_tokens"], usage["completion_tokens"])
    counterfactual += mixture_estimate(usage["prompt_tokens"], usage["completion_tokens"])

    stats = httpx.get(f"{base}/v1/stats", params={"window": "hour"}, timeout=10).json()
    seed = orjson.loads((Path(classifier.__file__).parent / "artifacts" / "seed" / "meta.json").read_bytes())
    assert stats["thresholds"] == seed["thresholds"]  # the active policy: the seed's calibrated thresholds
    totals = stats["totals"]
    assert totals["requests"] == 8
    assert totals["routes"] == {"cheap": 5, "mixture": 3}
    assert totals["escalation_rate"] == pytest.approx(3 / 8)
    assert totals["cache"]["hit"] == 2 and totals["cache"]["miss"] == 5 and totals["cache"]["bypass"] == 1
    assert totals["cache"]["hit_rate"] == pytest.approx(2 / 7)
    assert totals["cache"]["saved_usd"] == pytest.approx(cache_saved, rel=1e-9)
    assert totals["spend_usd"] == pytest.approx(spend, rel=1e-9)
    assert totals["spend_by_route"]["cheap"] == pytest.approx(spend - sum(mixture_costs.values()), rel=1e-9)
    assert totals["counterfactual_usd"] == pytest.approx(counterfactual, rel=1e-9)
    assert totals["saved_usd"] == pytest.approx(counterfactual - spend, rel=1e-9)
    assert totals["saved_rate"] == pytest.approx((counterfactual - spend) / counterfactual, rel=1e-9)
    assert totals["errors"] == 0 and totals["error_rate"] == 0.0
    assert totals["models"]["openai/cheap-1"]["calls"] == 4
    assert totals["models"]["openai/agg-1"]["calls"] == 2
    assert totals["latency_ms"]["all"]["count"] == 8 and totals["latency_ms"]["mixture"]["count"] == 3
    assert sum(point["requests"] for point in stats["series"]) == 8
    assert len(stats["series"]) == 60 and stats["bucket_s"] == 60
    # The table of expensive requests lists the two mixture runs first.
    assert stats["expensive"][0]["cost_usd"] == pytest.approx(max(mixture_costs.values()), rel=1e-9)
    assert {e["route"] for e in stats["expensive"][:2]} == {"mixture"}
    assert stats["classifier_version"] in totals["classifier_versions"]


def test_stats_need_the_admin_key_unless_open(make_service: Any, redis_url: str) -> None:
    admin_key = "admin-secret"
    base = make_service(
        redis_url=redis_url,
        auth={"open": False, "admin_key_sha256": hashlib.sha256(admin_key.encode()).hexdigest()},
    )
    assert httpx.get(f"{base}/v1/stats", timeout=10).status_code == 401
    unknown = httpx.get(f"{base}/v1/stats", headers={"authorization": "Bearer nope"}, timeout=10)
    assert unknown.status_code == 401  # a key that matches no one: not authenticated (403 is for a tenant's key)
    ok = httpx.get(f"{base}/v1/stats", headers={"authorization": f"Bearer {admin_key}"}, timeout=10)
    assert ok.status_code == 200
    assert ok.json()["totals"]["requests"] == 0
    bad = httpx.get(f"{base}/v1/stats?window=year", headers={"authorization": f"Bearer {admin_key}"}, timeout=10)
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_window"
