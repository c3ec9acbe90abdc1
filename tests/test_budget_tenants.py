"""Budget across replicas: every replica reports and caps every tenant, whichever replica served it."""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any, cast

import httpx
import pytest

from router.budget import BudgetGuard
from router.config import BudgetSettings
from tests.support.budget import DAY, Clock, chat_on_mixture, mixture_event, utc


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[Any]:
    from redis.asyncio import Redis

    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()


class RoundTrips:
    """A real Redis client that counts the pipelines it sends (one round trip each)."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.count = 0

    def pipeline(self, transaction: bool = True) -> Any:
        pipe = self.client.pipeline(transaction=transaction)
        execute = pipe.execute

        async def counted(raise_on_error: bool = True) -> list[Any]:
            self.count += 1
            replies: list[Any] = await execute(raise_on_error)
            return replies

        pipe.execute = counted
        return pipe


async def test_stats_list_the_tenants_only_another_replica_has_served(redis_client: Any) -> None:
    prefix = f"tbudget{uuid.uuid4().hex[:8]}"
    clock = Clock(utc(2025, 7, 9, 10))
    settings = BudgetSettings(mixture_daily_usd=10.0, mixture_monthly_usd=100.0)  # no per-tenant cap
    first = BudgetGuard(settings, redis_client, prefix, clock)
    second = BudgetGuard(settings, redis_client, prefix, clock)
    first.record(mixture_event("a", 0.1, clock.now))
    second.record(mixture_event("b", 0.75, clock.now))  # b is served by the second replica only
    second.record(mixture_event("a", 0.05, clock.now))
    await second.sync()
    await first.sync()
    assert first.spent("b") == pytest.approx(0.75) and first.spent("b", period="month") == pytest.approx(0.75)
    snapshot = first.snapshot()
    assert snapshot["tenants"] == [
        {"tenant": "b", "mixture_spent_usd": pytest.approx(0.75), "over_cap": False},
        {"tenant": "a", "mixture_spent_usd": pytest.approx(0.15), "over_cap": False},
    ]
    assert [entry["tenant"] for entry in snapshot["month"]["tenants"]] == ["b", "a"]
    assert [entry["tenant"] for entry in first.snapshot(top=1)["tenants"]] == ["b"]  # the top N, as before


async def test_a_tenant_cap_holds_at_the_tenants_first_request_on_another_replica(redis_client: Any) -> None:
    prefix = f"tbudget{uuid.uuid4().hex[:8]}"
    clock = Clock(utc(2025, 7, 9, 10))
    settings = BudgetSettings(mixture_daily_usd_per_tenant=0.5, mixture_monthly_usd_per_tenant=2.0)
    running = BudgetGuard(settings, redis_client, prefix, clock)
    await running.sync()
    serving = BudgetGuard(settings, redis_client, prefix, clock)
    serving.record(mixture_event("b", 0.75, clock.now))
    await serving.sync()
    await running.sync()  # its next sync
    assert not running.state("b").mixture_allowed  # b's first request there
    starting = BudgetGuard(settings, redis_client, prefix, clock)
    await starting.sync()  # the sync at startup
    assert not starting.state("b").mixture_allowed and starting.state("c").mixture_allowed
    day = starting.snapshot(top=0)
    assert day["tenants"] == [] and day["tenants_over_cap"] == 1  # of all tenants, not of the top listed
    assert day["month"]["tenants_over_cap"] == 0  # under the month's cap


async def test_a_sync_takes_one_round_trip_however_many_tenants(redis_client: Any) -> None:
    prefix = f"tbudget{uuid.uuid4().hex[:8]}"
    clock = Clock(time.time())
    settings = BudgetSettings(mixture_daily_usd_per_tenant=1.0, mixture_monthly_usd_per_tenant=5.0)
    serving = BudgetGuard(settings, redis_client, prefix, clock)
    for number in range(40):
        serving.record(mixture_event(f"t{number}", 0.01 * (number + 1), clock.now))
    await serving.sync()
    redis = RoundTrips(redis_client)
    reading = BudgetGuard(settings, cast(Any, redis), prefix, clock)
    reading.record(mixture_event("own", 0.2, clock.now))
    await reading.sync()
    assert redis.count == 2  # the second reads the totals of the tenants the first found in the tenant sets
    assert reading.spent("t39") == pytest.approx(0.4) and reading.spent("t39", period="month") == pytest.approx(0.4)
    await reading.sync()
    assert redis.count == 3
    serving.record(mixture_event("new", 0.3, clock.now))
    await serving.sync()
    await reading.sync()
    await reading.sync()
    assert redis.count == 6 and reading.spent("new") == pytest.approx(0.3)
    assert len(reading.snapshot(top=100)["tenants"]) == 42


async def test_the_tenant_set_expires_with_its_period_and_is_written_again(redis_client: Any) -> None:
    prefix = f"tbudget{uuid.uuid4().hex[:8]}"
    clock = Clock(utc(2025, 7, 9, 10))
    guard = BudgetGuard(BudgetSettings(mixture_daily_usd=1.0, mixture_monthly_usd=9.0), redis_client, prefix, clock)
    guard.record(mixture_event("a", 0.5, clock.now))
    await guard.sync()
    day, month = f"{prefix}:budget:tenants:day:20250709", f"{prefix}:budget:tenants:month:202507"
    assert await redis_client.smembers(day) == await redis_client.smembers(month) == {b"a"}
    assert 2 * DAY < await redis_client.ttl(day) <= 3 * DAY and await redis_client.ttl(month) > 31 * DAY
    await redis_client.delete(day)  # e.g. a Redis restarted without persistence
    await guard.sync()
    assert await redis_client.smembers(day) == {b"a"}


async def test_tenants_read_back_are_bounded(redis_client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("router.budget._MAX_TENANTS", 3)
    prefix = f"tbudget{uuid.uuid4().hex[:8]}"
    clock = Clock(time.time())
    settings = BudgetSettings(mixture_daily_usd=10.0)
    serving = BudgetGuard(settings, redis_client, prefix, clock)
    for tenant in "abcde":
        serving.record(mixture_event(tenant, 0.1, clock.now))
    await serving.sync()
    reading = BudgetGuard(settings, redis_client, prefix, clock)
    reading.record(mixture_event("own", 0.1, clock.now))
    await reading.sync()
    assert [entry["tenant"] for entry in reading.snapshot()["tenants"]] == ["a", "b", "own"]
    assert reading.spent() == pytest.approx(0.6)  # the overall total counts every tenant's spend


def test_stats_and_caps_of_two_replicas_cover_each_others_tenants(make_service: Any, redis_url: str) -> None:
    keys = {"small": "key-small", "big": "key-big"}
    admin = "key-admin"
    settings = {
        "redis_url": redis_url,
        "redis_prefix": f"tbudget{uuid.uuid4().hex[:8]}",
        "budget": {"mixture_daily_usd_per_tenant": 1e-9, "fallback": "cheap", "sync_interval_s": 0.05},
        "auth": {
            "open": False,
            "keys": [{"tenant": t, "key_sha256": hashlib.sha256(k.encode()).hexdigest()} for t, k in keys.items()],
            "admin_key_sha256": hashlib.sha256(admin.encode()).hexdigest(),
        },
    }
    first, second = make_service(**settings), make_service(**settings)
    assert (
        chat_on_mixture(second, keys["big"], "Outline Gödel's incompleteness proof.").headers["x-moa-route"]
        == "mixture"
    )
    deadline = time.monotonic() + 10
    while True:  # the event is recorded a moment after the answer, then both replicas sync
        budget = httpx.get(f"{first}/v1/stats", headers={"authorization": f"Bearer {admin}"}, timeout=10).json()
        tenants = {entry["tenant"]: entry for entry in budget["budget"]["tenants"]}
        if "big" in tenants or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert tenants["big"]["over_cap"] and tenants["big"]["mixture_spent_usd"] > 0
    held_back = chat_on_mixture(
        first, keys["big"], "Outline Gödel's incompleteness proof, again."
    )  # big's first request here
    assert held_back.headers["x-moa-route"] == "cheap" and held_back.headers["x-moa-route-reason"] == "budget"
