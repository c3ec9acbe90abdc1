"""The cache through the real service over HTTP, against the simulated fleet and a real Redis."""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import orjson
import pytest
import redis

from router.redis_server import EmbeddedRedis
from router.simulator.runner import SimulatorServer
from tests.conftest import entry, sim_stats

Service = Callable[..., str]
ASK = [{"role": "user", "content": "Explain how a hash map handles collisions."}]
PROPOSERS_AND_AGGREGATOR = {"prop-a": 1, "prop-b": 1, "prop-c": 1, "agg-1": 1}


def chat(
    base: str,
    route: str = "cheap",
    key: str = "any",
    headers: dict[str, str] | None = None,
    stream: bool = False,
    **body: Any,
) -> httpx.Response:
    payload: dict[str, Any] = {"model": "moa-router", "messages": ASK, "temperature": 0, **body}
    if stream:
        payload |= {"stream": True, "stream_options": {"include_usage": True}}
    return httpx.post(
        f"{base}/v1/chat/completions",
        json=payload,
        timeout=30,
        headers={"x-moa-route": route, "authorization": f"Bearer {key}", **(headers or {})},
    )


def sse_events(response: httpx.Response) -> list[Any]:
    lines = [line.removeprefix("data: ") for line in response.text.split("\n\n") if line.startswith("data: ")]
    assert lines[-1] == "[DONE]"
    return [orjson.loads(line) for line in lines[:-1]]


def streamed_text(response: httpx.Response) -> str:
    return "".join(e["choices"][0]["delta"].get("content", "") for e in sse_events(response) if e.get("choices"))


def calls(sim: SimulatorServer) -> dict[str, int]:
    return {name: m["calls"] for name, m in sim_stats(sim)["models"].items() if m["calls"]}


def patch_model(sim: SimulatorServer, name: str, **changes: Any) -> None:
    httpx.patch(f"{sim.root_url}/_sim/models/{name}", json=changes, timeout=5).raise_for_status()


@pytest.fixture
def prefix() -> str:
    return f"c{uuid.uuid4().hex[:10]}"


@pytest.fixture
def store(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


def entries(client: redis.Redis, prefix: str) -> list[bytes]:
    """The stored answers: not the single-flight leases and gave-up markers beside them."""
    keys = client.scan_iter(match=f"{prefix}:cache:*")
    return [key for key in keys if not key.endswith(b":lease") and b":gave-up:" not in key]


def test_second_identical_request_is_a_free_hit(make_service: Service, sim: SimulatorServer, redis_url: str) -> None:
    base = make_service(redis_url=redis_url)
    first = chat(base)
    assert first.status_code == 200, first.text
    assert first.headers["x-moa-cache"] == "miss"
    cost = float(first.headers["x-moa-cost-usd"])
    assert cost > 0 and calls(sim) == {"cheap-1": 1}
    second = chat(base)
    assert second.status_code == 200
    assert second.headers["x-moa-cache"] == "hit"
    assert second.headers["x-moa-cost-usd"] == "0"
    assert calls(sim) == {"cheap-1": 1}  # no upstream call
    hit, miss = second.json(), first.json()
    assert hit["choices"][0]["message"] == miss["choices"][0]["message"]
    assert hit["usage"] == miss["usage"]
    assert hit["moa"]["cost_usd"] == 0
    assert hit["moa"]["saved_usd"] == pytest.approx(cost, rel=1e-6)


def test_different_temperature_route_or_seed_misses(
    make_service: Service, sim: SimulatorServer, redis_url: str
) -> None:
    base = make_service(redis_url=redis_url, cache={"deterministic_only": False})
    assert chat(base).headers["x-moa-cache"] == "miss"
    assert chat(base, temperature=0.5).headers["x-moa-cache"] == "miss"
    assert chat(base, seed=11).headers["x-moa-cache"] == "miss"
    assert chat(base, route="mixture").headers["x-moa-cache"] == "miss"
    assert calls(sim) == {"cheap-1": 3, **PROPOSERS_AND_AGGREGATOR}
    assert chat(base, route="mixture").headers["x-moa-cache"] == "hit"
    assert chat(base, temperature=0.5).headers["x-moa-cache"] == "hit"


def test_non_deterministic_requests_bypass_by_default(
    make_service: Service, sim: SimulatorServer, redis_url: str
) -> None:
    base = make_service(redis_url=redis_url)
    assert [chat(base, temperature=0.7).headers["x-moa-cache"] for _ in range(2)] == ["bypass", "bypass"]
    assert calls(sim) == {"cheap-1": 2}


def test_tenants_never_share_answers(make_service: Service, sim: SimulatorServer, redis_url: str) -> None:
    keys = [{"tenant": t, "key_sha256": hashlib.sha256(f"k{t}".encode()).hexdigest()} for t in ("a", "b")]
    base = make_service(redis_url=redis_url, auth={"open": False, "keys": keys})
    assert chat(base, key="ka").headers["x-moa-cache"] == "miss"
    assert chat(base, key="kb").headers["x-moa-cache"] == "miss"
    assert chat(base, key="ka").headers["x-moa-cache"] == "hit"
    assert chat(base, key="kb").headers["x-moa-cache"] == "hit"
    assert calls(sim) == {"cheap-1": 2}


def test_controls_by_header_and_body(
    make_service: Service, sim: SimulatorServer, redis_url: str, store: redis.Redis, prefix: str
) -> None:
    base = make_service(redis_url=redis_url, redis_prefix=prefix)
    assert chat(base, headers={"x-moa-cache-control": "no-store"}).headers["x-moa-cache"] == "miss"
    assert chat(base, cache={"no_store": True}).headers["x-moa-cache"] == "miss"
    assert entries(store, prefix) == []
    assert chat(base, headers={"x-moa-cache-namespace": "n1"}).headers["x-moa-cache"] == "miss"
    assert chat(base, headers={"x-moa-cache-namespace": "n1"}).headers["x-moa-cache"] == "hit"
    assert chat(base).headers["x-moa-cache"] == "miss"
    assert chat(base, headers={"x-moa-cache-control": "no-cache"}).headers["x-moa-cache"] == "miss"
    assert chat(base, cache={"ttl_s": 9}, messages=[{"role": "user", "content": "short-lived"}]).status_code == 200
    assert min(store.pttl(key) for key in entries(store, prefix)) <= 9000
    assert calls(sim) == {"cheap-1": 6}
    bad = chat(base, headers={"x-moa-cache-control": "forever"})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_cache_control"


def test_a_client_cannot_keep_an_answer_longer_than_the_operator_allows(
    make_service: Service, sim: SimulatorServer, redis_url: str, store: redis.Redis, prefix: str
) -> None:
    base = make_service(redis_url=redis_url, redis_prefix=prefix, cache={"ttl_s": 600})
    assert chat(base, cache={"ttl_s": 30 * 86400}).status_code == 200
    [kept] = entries(store, prefix)
    assert 0 < store.pttl(kept) <= 600_000  # capped at cache.ttl_s
    allowed = make_service(redis_url=redis_url, redis_prefix=f"{prefix}b", cache={"ttl_s": 600, "max_ttl_s": 7200})
    assert chat(allowed, cache={"ttl_s": 5000}).status_code == 200
    [longer] = entries(store, f"{prefix}b")
    assert 600_000 < store.pttl(longer) <= 5_000_000


async def test_fifty_concurrent_mixture_requests_run_the_mixture_once(
    make_service: Service, sim: SimulatorServer, redis_url: str
) -> None:
    for name in ("prop-a", "prop-b", "prop-c"):
        patch_model(sim, name, ttft_s=0.5)  # long enough for every request to arrive while it runs
    # A generous Redis timeout: this test is about single flight, not about a loaded machine's latency.
    base = make_service(redis_url=redis_url, cache={"timeout_ms": 2000})
    payload = {
        "model": "moa-router",
        "messages": [{"role": "user", "content": "Prove that sqrt(2) is irrational."}],
        "temperature": 0,
    }
    limits = httpx.Limits(max_connections=60)
    async with httpx.AsyncClient(base_url=base, timeout=30, limits=limits) as client:
        responses = await asyncio.gather(
            *(client.post("/v1/chat/completions", json=payload, headers={"x-moa-route": "mixture"}) for _ in range(50))
        )
    assert [r.status_code for r in responses] == [200] * 50
    statuses = sorted(r.headers["x-moa-cache"] for r in responses)
    assert statuses == ["hit"] * 49 + ["miss"]
    assert calls(sim) == PROPOSERS_AND_AGGREGATOR
    assert len({r.json()["choices"][0]["message"]["content"] for r in responses}) == 1


def test_redis_stopped_mid_test_bypasses_then_hits_resume(
    make_service: Service, sim: SimulatorServer, own_redis: EmbeddedRedis
) -> None:
    base = make_service(redis_url=own_redis.url)
    assert chat(base).headers["x-moa-cache"] == "miss"
    assert chat(base).headers["x-moa-cache"] == "hit"
    own_redis.stop()
    down = [chat(base) for _ in range(5)]
    assert [r.status_code for r in down] == [200] * 5
    assert [r.headers["x-moa-cache"] for r in down] == ["bypass"] * 5
    assert calls(sim) == {"cheap-1": 6}
    own_redis.start()
    deadline = time.monotonic() + 10
    while (status := chat(base).headers["x-moa-cache"]) != "hit" and time.monotonic() < deadline:
        time.sleep(0.1)  # the cache skips Redis for a moment after a failure, then tries again
    assert status == "hit"  # the entry stored before the stop (Redis kept it in its append-only file)


def test_failed_requests_leave_no_entry(
    make_service: Service, sim: SimulatorServer, redis_url: str, store: redis.Redis, prefix: str
) -> None:
    base = make_service(redis_url=redis_url, redis_prefix=prefix)
    patch_model(sim, "cheap-1", error_rate=1.0)  # fails every attempt, retries included
    failed = chat(base)
    assert failed.status_code == 502
    assert entries(store, prefix) == []
    patch_model(sim, "cheap-1", error_rate=0.0)
    retried = chat(base)
    assert (retried.status_code, retried.headers["x-moa-cache"]) == (200, "miss")


def test_cut_off_stream_leaves_no_entry(
    make_service: Service, sim: SimulatorServer, redis_url: str, store: redis.Redis, prefix: str
) -> None:
    base = make_service(redis_url=redis_url, redis_prefix=prefix)
    patch_model(sim, "cheap-1", drop_stream_rate=1.0)
    cut = chat(base, stream=True)
    assert cut.headers["x-moa-cache"] == "miss"
    assert "upstream_error" in cut.text and all(
        e["choices"][0]["finish_reason"] is None for e in sse_events(cut) if e.get("choices")
    )
    assert entries(store, prefix) == []
    patch_model(sim, "cheap-1", drop_stream_rate=0.0)
    assert chat(base, stream=True).headers["x-moa-cache"] == "miss"  # the lease was freed, not left held
    assert len(entries(store, prefix)) == 1


def test_mixture_fallback_answer_is_not_kept(
    make_service: Service, sim: SimulatorServer, redis_url: str, store: redis.Redis, prefix: str
) -> None:
    base = make_service(redis_url=redis_url, redis_prefix=prefix)
    patch_model(sim, "agg-1", error_rate=1.0)
    degraded = chat(base, route="mixture")
    assert degraded.status_code == 200 and degraded.headers["x-moa-fallback"] == "proposer"
    assert entries(store, prefix) == []
    patch_model(sim, "agg-1", error_rate=0.0)
    assert chat(base, route="mixture").headers["x-moa-cache"] == "miss"
    assert chat(base, route="mixture").headers["x-moa-cache"] == "hit"


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
def test_an_answer_of_a_stand_in_model_or_a_short_mixture_is_not_kept(
    make_service: Service,
    sim: SimulatorServer,
    sim_url: str,
    redis_url: str,
    store: redis.Redis,
    prefix: str,
    stream: bool,
) -> None:
    backup = entry(sim_url, "judge-1")
    base = make_service(
        redis_url=redis_url,
        redis_prefix=prefix,
        resilience={"max_attempts": 1},
        cheap=entry(sim_url, "cheap-1", fallback=backup),
    )
    patch_model(sim, "cheap-1", error_rate=1.0)  # its fallback entry answers in its place
    stood_in = chat(base, stream=stream)
    assert stood_in.status_code == 200 and "judge-1" in stood_in.text
    patch_model(sim, "prop-a", error_rate=1.0)  # the mixture answers with two proposers of three
    assert chat(base, route="mixture", stream=stream).status_code == 200
    assert entries(store, prefix) == []
    patch_model(sim, "cheap-1", error_rate=0.0)
    patch_model(sim, "prop-a", error_rate=0.0)
    for route in ("cheap", "mixture"):  # once the configured models answer, their answer is kept
        assert chat(base, route=route, stream=stream).headers["x-moa-cache"] == "miss"
        assert chat(base, route=route, stream=stream).headers["x-moa-cache"] == "hit"


async def test_waiting_on_another_request_spends_the_requests_own_timeout(
    make_service: Service, sim: SimulatorServer, redis_url: str
) -> None:
    patch_model(sim, "cheap-1", ttft_s=10.0)  # every request of the queue times out in turn
    base = make_service(redis_url=redis_url, limits={"request_timeout_s": 1.5})
    payload = {"model": "moa-router", "messages": ASK, "temperature": 0}

    async def timed(client: httpx.AsyncClient) -> tuple[int, float]:
        started = time.perf_counter()
        response = await client.post("/v1/chat/completions", json=payload, headers={"x-moa-route": "cheap"})
        return response.status_code, time.perf_counter() - started

    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        results = await asyncio.gather(*(timed(client) for _ in range(4)))
    assert [status for status, _ in results] == [504] * 4
    # Each waited on the one before it, then led with what was left: none takes two timeouts (it took
    # 1.5, 3, 4.5 and 6 s when each waiter got a full timeout of its own after waiting).
    assert max(elapsed for _, elapsed in results) < 2 * 1.5


def test_streamed_miss_is_stored_and_hits_replay_as_sse(
    make_service: Service, sim: SimulatorServer, redis_url: str
) -> None:
    base = make_service(redis_url=redis_url)
    streamed = chat(base, stream=True)
    assert streamed.headers["x-moa-cache"] == "miss"
    plain = chat(base)
    assert plain.headers["x-moa-cache"] == "hit"
    assert plain.json()["choices"][0]["message"]["content"] == streamed_text(streamed)
    replay = chat(base, stream=True)
    assert replay.headers["x-moa-cache"] == "hit"
    assert replay.headers["content-type"].startswith("text/event-stream")
    assert streamed_text(replay) == streamed_text(streamed)
    events = sse_events(replay)
    assert [e["choices"][0]["finish_reason"] for e in events if e.get("choices")][-1] == "stop"
    assert events[-1]["usage"] == plain.json()["usage"]
    assert events[-1]["moa"]["cost_usd"] == 0 and events[-1]["moa"]["saved_usd"] > 0
    assert calls(sim) == {"cheap-1": 1}


async def identical_requests(base: str, count: int, stream: bool = False) -> list[tuple[int, float]]:
    """`count` identical requests sent together: each one's status and how long it took."""
    payload: dict[str, Any] = {"model": "moa-router", "messages": ASK, "temperature": 0, "stream": stream}

    async def timed(client: httpx.AsyncClient) -> tuple[int, float]:
        started = time.perf_counter()
        response = await client.post("/v1/chat/completions", json=payload, headers={"x-moa-route": "cheap"})
        return response.status_code, time.perf_counter() - started

    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        return await asyncio.gather(*(timed(client) for _ in range(count)))


def peak_in_flight(sim: SimulatorServer, model: str) -> int:
    peak: int = sim_stats(sim)["models"][model]["max_in_flight"]
    return peak


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
async def test_when_the_leader_fails_its_waiters_try_at_once_not_one_after_another(
    make_service: Service, sim: SimulatorServer, redis_url: str, stream: bool
) -> None:
    attempt_s = 0.8
    patch_model(sim, "cheap-1", ttft_s=attempt_s, error_rate=1.0)  # every attempt fails after attempt_s
    base = make_service(redis_url=redis_url, resilience={"max_attempts": 1}, cache={"timeout_ms": 2000})
    results = await identical_requests(base, 4, stream)
    assert [status for status, _ in results] == [502] * 4
    assert calls(sim) == {"cheap-1": 4}
    # The leader's attempt, then the three waiters' together (they queued one after another: 4 attempts).
    assert peak_in_flight(sim, "cheap-1") == 3
    assert max(elapsed for _, elapsed in results) < 3 * attempt_s


async def test_when_the_leaders_answer_cannot_be_kept_its_waiters_compute_at_once(
    make_service: Service, sim: SimulatorServer, sim_url: str, redis_url: str
) -> None:
    attempt_s = 0.8
    patch_model(sim, "cheap-1", error_rate=1.0)  # a stand-in answers, and a stand-in's answer is not kept
    patch_model(sim, "judge-1", ttft_s=attempt_s)
    base = make_service(
        redis_url=redis_url,
        resilience={"max_attempts": 1},
        cache={"timeout_ms": 2000},
        cheap=entry(sim_url, "cheap-1", fallback=entry(sim_url, "judge-1")),
    )
    results = await identical_requests(base, 4)
    assert [status for status, _ in results] == [200] * 4
    assert calls(sim) == {"cheap-1": 4, "judge-1": 4}
    assert peak_in_flight(sim, "judge-1") == 3
    assert max(elapsed for _, elapsed in results) < 3 * attempt_s


async def test_when_the_leaders_client_leaves_one_waiter_computes_for_the_others(
    make_service: Service, sim: SimulatorServer, redis_url: str
) -> None:
    patch_model(sim, "cheap-1", per_token_s=0.02)  # a stream of a few seconds
    base = make_service(redis_url=redis_url, cache={"timeout_ms": 2000})
    payload: dict[str, Any] = {"model": "moa-router", "messages": ASK, "temperature": 0}
    headers = {"x-moa-route": "cheap"}
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        async with client.stream(
            "POST", "/v1/chat/completions", json={**payload, "stream": True}, headers=headers
        ) as leader:
            assert leader.headers["x-moa-cache"] == "miss"
            await anext(leader.aiter_bytes())  # the leader is streaming: it holds the lease
            waiters = [
                asyncio.create_task(client.post("/v1/chat/completions", json=payload, headers=headers))
                for _ in range(3)
            ]
            await asyncio.sleep(0.3)
            assert not any(waiter.done() for waiter in waiters)
        # The leader's client left mid-stream. Nothing failed: one waiter computes, the others get its answer.
        answers = await asyncio.gather(*waiters)
    assert [a.status_code for a in answers] == [200] * 3
    assert sorted(a.headers["x-moa-cache"] for a in answers) == ["hit", "hit", "miss"]
    assert calls(sim) == {"cheap-1": 2}
