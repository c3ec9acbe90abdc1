"""Per-tenant requests and tokens per minute in Redis: 429 with retry-after; fails open without Redis."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis
from redis.crc import key_slot

from router.api.errors import APIError
from router.auth import hash_key
from router.config import AuthSettings
from router.events import RequestEvent
from router.mixture import CallRecord
from router.providers.base import Usage
from router.ratelimit import WINDOW_S, RateLimiter, seconds_until_room, window_key
from router.redis_client import make_redis_client
from router.redis_server import EmbeddedRedis, free_port
from router.simulator.runner import SimulatorServer
from tests.conftest import sim_stats
from tests.support.slow_proxy import SlowProxy

CHAT = {"model": "moa-router", "messages": [{"role": "user", "content": "Name a prime number."}]}


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = make_redis_client(redis_url, 1.0)
    yield client
    await client.aclose()


def limiter(client: Any, clock: Clock, **auth: Any) -> RateLimiter:
    return RateLimiter(lambda: client, f"t{uuid.uuid4().hex[:10]}", AuthSettings.model_validate(auth), clock)


async def refusal(limiter: RateLimiter, tenant: str) -> APIError:
    with pytest.raises(APIError) as raised:
        await limiter.admit(tenant)
    return raised.value


def test_room_comes_back_as_the_window_slides() -> None:
    # 10 in the previous window, 0 now, 30 s into this one: weight 0.5, so 5 counted.
    assert seconds_until_room(0, 10, 30.0, room=5) == 0.0
    assert seconds_until_room(0, 10, 30.0, room=4) == pytest.approx(6.0)  # 10 * (1 - 36/60) = 4
    # Over the room in this window alone: only the next window helps, and this one then fades out.
    assert seconds_until_room(4, 0, 15.0, room=3) == pytest.approx(45.0 + 15.0)
    assert seconds_until_room(1, 0, 0.0, room=0) == pytest.approx(120.0)


async def test_requests_over_the_limit_get_429_with_retry_after(redis: Redis) -> None:
    clock = Clock(1_000 * WINDOW_S + 10.0)
    rl = limiter(redis, clock, requests_per_minute=3)
    for _ in range(3):
        await rl.admit("acme")
    error = await refusal(rl, "acme")
    assert (error.status, error.code, error.type) == (429, "rate_limit_exceeded", "rate_limit_error")
    retry_after = int(error.headers["retry-after"])
    assert 1 <= retry_after <= 2 * WINDOW_S
    # Waiting as told is enough; a refused request did not count against the tenant.
    clock.now += retry_after - 1
    await refusal(rl, "acme")
    clock.now += 1
    await rl.admit("acme")


async def test_tenants_are_limited_apart(redis: Redis) -> None:
    rl = limiter(redis, Clock(2_000 * WINDOW_S), requests_per_minute=1)
    await rl.admit("a")
    await refusal(rl, "a")
    await rl.admit("b")


async def test_a_tenant_may_have_its_own_limits(redis: Redis) -> None:
    rl = limiter(
        redis,
        Clock(3_000 * WINDOW_S),
        requests_per_minute=1,
        tenant_limits=[{"tenant": "big", "requests_per_minute": 5}, {"tenant": "tok", "tokens_per_minute": 10}],
    )
    for _ in range(5):
        await rl.admit("big")
    await refusal(rl, "big")
    assert rl.limits_for("tok").requests_per_minute == 1  # unset fields take the default


async def test_tokens_used_are_charged_and_then_refused(redis: Redis) -> None:
    clock = Clock(4_000 * WINDOW_S + 5.0)
    rl = limiter(redis, clock, tokens_per_minute=100)
    await rl.admit("acme")
    rl.record(event("acme", clock.now, Usage(60, 50)))
    rl.record(event("other", clock.now, Usage(1, 1)))
    await rl.flush()
    error = await refusal(rl, "acme")
    assert "tokens per minute" in error.message
    await rl.admit("other")
    clock.now += int(error.headers["retry-after"])
    await rl.admit("acme")


async def test_tokens_count_in_the_minute_the_request_finished(redis: Redis) -> None:
    started = 8_000 * WINDOW_S + 55.0
    clock = Clock(started + 65.0)  # a long mixture run: it ends two windows after the one it started in
    rl = limiter(redis, clock, tokens_per_minute=10_000)
    rl.record(event("acme", started, Usage(20_000, 30_000)))
    await rl.flush()
    error = await refusal(rl, "acme")
    assert int(error.headers["retry-after"]) > WINDOW_S  # all of it in this window: it fades out over the next
    clock.now += 30.0
    await refusal(rl, "acme")


async def test_a_charge_whose_reply_comes_too_late_is_counted_once(
    redis_url: str, redis: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    prefix = f"t{uuid.uuid4().hex[:10]}"
    clock = Clock(9_000 * WINDOW_S + 5.0)
    async with SlowProxy(redis_url).running() as proxy:
        slow = make_redis_client(proxy.url, 0.3)
        try:
            rl = RateLimiter(lambda: slow, prefix, AuthSettings(tokens_per_minute=100_000), clock)
            await slow.ping()
            rl.record(event("acme", clock.now, Usage(600, 400)))
            proxy.hold_next_reply(0.6)  # Redis applies the charge; its reply comes after the client gave up
            await rl.flush()
            assert "rate limits unavailable (TimeoutError" in caplog.text
            await rl.flush()  # the charge again, as the client cannot know whether Redis applied it
            await rl.flush()
        finally:
            await slow.aclose()
    assert int(await redis.get(f"{prefix}:rl:{{t:acme}}:tok:9000")) == 1_000


async def test_charges_made_while_redis_is_down_are_written_when_it_is_back(own_redis: EmbeddedRedis) -> None:
    prefix = f"t{uuid.uuid4().hex[:10]}"
    clock = Clock(10_000 * WINDOW_S + 1.0)
    client = make_redis_client(own_redis.url, 0.2)
    try:
        rl = RateLimiter(lambda: client, prefix, AuthSettings(tokens_per_minute=100_000), clock)
        own_redis.stop()
        rl.record(event("acme", clock.now, Usage(60, 40)))
        await rl.flush()  # fails: kept for the next flush
        rl.record(event("acme", clock.now, Usage(30, 20)))  # sent after it, in the same pipeline
        own_redis.start()
        await rl.flush()
        await rl.flush()
        assert int(await client.get(f"{prefix}:rl:{{t:acme}}:tok:10000")) == 150
        rl.record(event("acme", clock.now, Usage(1, 1)))
        clock.now += 2 * WINDOW_S  # by the flush, its window no longer counts: not written
        await rl.flush()
        assert int(await client.get(f"{prefix}:rl:{{t:acme}}:tok:10000")) == 150
    finally:
        await client.aclose()


def event(tenant: str, at: float, usage: Usage) -> RequestEvent:
    call = CallRecord("openai/cheap-1", "cheap", "ok", 0.1, usage)
    return RequestEvent(request_id=uuid.uuid4().hex, tenant=tenant, started_at=at, calls=[call])


async def test_without_redis_requests_are_let_through() -> None:
    dead = make_redis_client(f"redis://127.0.0.1:{free_port()}/0", 0.2)
    rl = limiter(dead, Clock(5_000 * WINDOW_S), requests_per_minute=1, rate_limit_timeout_ms=200)
    for _ in range(3):
        await rl.admit("acme")
    assert rl.failed_open == 3
    rl.record(event("acme", 5_000 * WINDOW_S, Usage(5, 5)))
    await dead.aclose()


async def test_limits_come_back_when_redis_does(own_redis: EmbeddedRedis) -> None:
    client = make_redis_client(own_redis.url, 0.2)
    rl = limiter(client, Clock(6_000 * WINDOW_S), requests_per_minute=1, rate_limit_timeout_ms=500)
    await rl.admit("acme")
    own_redis.stop()
    await rl.admit("acme")  # Redis is down: let through
    own_redis.start()  # the append-only file brings the count back
    await refusal(rl, "acme")
    await client.aclose()


def test_the_service_refuses_with_429_before_calling_upstream(
    make_service: Any, redis_url: str, sim: SimulatorServer
) -> None:
    base = make_service(redis_url=redis_url, auth={"requests_per_minute": 2})
    with httpx.Client(base_url=base, timeout=10) as client:
        statuses = [client.post("/v1/chat/completions", json=CHAT).status_code for _ in range(2)]
        refused = client.post("/v1/chat/completions", json=CHAT)
    assert statuses == [200, 200]
    assert refused.status_code == 429
    assert int(refused.headers["retry-after"]) >= 1
    assert refused.headers["x-request-id"]
    assert refused.json()["error"]["type"] == "rate_limit_error"
    assert sim_stats(sim)["total_calls"] == 2


def test_replicas_share_a_tenants_limit(make_service: Any, redis_url: str) -> None:
    prefix = f"t{uuid.uuid4().hex[:10]}"
    auth = {"open": False, "keys": [{"tenant": "acme", "key_sha256": hash_key("sk-acme")}], "requests_per_minute": 3}
    replicas = [make_service(redis_url=redis_url, redis_prefix=prefix, auth=auth) for _ in range(2)]
    headers = {"authorization": "Bearer sk-acme"}
    statuses = [
        httpx.post(f"{replicas[i % 2]}/v1/chat/completions", json=CHAT, headers=headers, timeout=10).status_code
        for i in range(5)
    ]
    assert statuses == [200, 200, 200, 429, 429]


@pytest.mark.parametrize("tenant", ["acme", "}acme", "{acme}", "a}b", ""])
def test_all_keys_of_a_tenant_share_one_cluster_slot(tenant: str) -> None:
    # The admit and charge scripts touch both kinds and two windows in one call: a Redis Cluster refuses
    # a script whose keys lie in different slots.
    keys = [
        window_key("moa", tenant, kind, window).encode() for kind in ("req", "tok", "tokseq") for window in (100, 101)
    ]
    assert len({key_slot(key) for key in keys}) == 1
