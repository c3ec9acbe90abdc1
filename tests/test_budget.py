"""The budget guard: daily and monthly mixture caps, overall and per tenant, shared by replicas through Redis."""

from __future__ import annotations

import calendar
import hashlib
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any, cast

import httpx
import pytest

from router.budget import BudgetGuard
from router.config import BudgetSettings, ConfigError, settings_from_mapping
from router.events import RequestEvent
from router.mixture import CallRecord
from router.providers.base import Usage
from router.redis_client import make_redis_client
from tests.support.slow_proxy import SlowProxy

DAY = 86400.0


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> float:
    return float(calendar.timegm((year, month, day, hour, minute, second)))


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def mixture_event(tenant: str, cost: float, at: float, route: str = "mixture") -> RequestEvent:
    event = RequestEvent(request_id=uuid.uuid4().hex, tenant=tenant, started_at=at, route=route)
    event.calls.append(CallRecord("openai/agg", "aggregator", "ok", 0.1, Usage(10, 10), cost))
    return event


async def shared_total(client: Any, key: str) -> float:
    """A total in Redis: the sum of every replica's field."""
    return sum(float(value) for value in (await client.hgetall(key)).values())


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[Any]:
    from redis.asyncio import Redis

    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()


def test_overall_cap_degrades_to_the_fallback_until_the_day_ends() -> None:
    clock = Clock(20 * DAY + 3600)
    guard = BudgetGuard(BudgetSettings(mixture_daily_usd=1.0, fallback="strong"), None, "p", clock)
    assert guard.state("a").mixture_allowed
    guard.record(mixture_event("a", 0.6, clock.now))
    guard.record(mixture_event("b", 0.6, clock.now, route="cheap"))  # cheap spend is not mixture spend
    assert guard.state("b").mixture_allowed
    guard.record(mixture_event("b", 0.4, clock.now))
    state = guard.state("c")
    assert not state.mixture_allowed and state.fallback == "strong"
    assert guard.snapshot()["mixture_spent_usd"] == pytest.approx(1.0)
    clock.now = 21 * DAY + 1  # a new UTC day: a new budget
    assert guard.state("c").mixture_allowed
    assert guard.spent() == 0.0


def test_per_tenant_cap_holds_back_only_that_tenant() -> None:
    clock = Clock(30 * DAY)
    guard = BudgetGuard(BudgetSettings(mixture_daily_usd_per_tenant=0.5), None, "p", clock)
    guard.record(mixture_event("heavy", 0.5, clock.now))
    assert not guard.state("heavy").mixture_allowed
    assert guard.state("light").mixture_allowed
    snapshot = guard.snapshot()
    assert snapshot["tenants"][0] == {"tenant": "heavy", "mixture_spent_usd": 0.5, "over_cap": True}
    assert snapshot["mixture_allowed"]  # no overall cap


async def test_replicas_share_the_totals_through_redis(redis_client: Any) -> None:
    prefix = f"tbudget{uuid.uuid4().hex[:8]}"
    clock = Clock(time.time())
    settings = BudgetSettings(mixture_daily_usd=1.0, mixture_daily_usd_per_tenant=0.7)
    first = BudgetGuard(settings, redis_client, prefix, clock)
    second = BudgetGuard(settings, redis_client, prefix, clock)
    assert second.state("acme").mixture_allowed  # the second replica serves acme too
    first.record(mixture_event("acme", 0.4, clock.now))
    first.record(mixture_event("other", 0.3, clock.now))
    second.record(mixture_event("acme", 0.3, clock.now))
    assert first.state("acme").mixture_allowed and second.state("acme").mixture_allowed  # neither knows yet
    await first.sync()
    await second.sync()
    await first.sync()
    for guard in (first, second):
        assert guard.spent() == pytest.approx(1.0)
        assert guard.spent("acme") == pytest.approx(0.7)
        assert not guard.state("acme").mixture_allowed
    # A third replica starting now reads today's totals at its first sync.
    third = BudgetGuard(settings, redis_client, prefix, clock)
    third.state("other")
    await third.sync()
    assert third.spent() == pytest.approx(1.0) and third.spent("other") == pytest.approx(0.3)


async def test_spend_is_kept_while_redis_is_down(own_redis: Any) -> None:
    from redis.asyncio import Redis
    from redis.exceptions import RedisError

    client = Redis.from_url(own_redis.url, socket_timeout=1, socket_connect_timeout=1)
    try:
        guard = BudgetGuard(BudgetSettings(mixture_daily_usd=1.0), client, "tdown")
        own_redis.stop()
        guard.record(mixture_event("a", 0.25, time.time()))
        with pytest.raises((RedisError, OSError)):
            await guard.sync()
        assert guard.spent() == pytest.approx(0.25)  # still counted locally
        own_redis.start()
        await guard.sync()
        day = guard.snapshot()["day"]
        assert await shared_total(client, f"tdown:budget:spend:day:{day}") == pytest.approx(0.25)
    finally:
        await client.aclose()


async def test_a_sync_whose_reply_comes_too_late_counts_the_spend_once(redis_url: str, redis_client: Any) -> None:
    from redis.exceptions import RedisError

    prefix = f"tbudget{uuid.uuid4().hex[:8]}"
    clock = Clock(time.time())
    settings = BudgetSettings(mixture_daily_usd=10.0, mixture_daily_usd_per_tenant=5.0)
    async with SlowProxy(redis_url).running() as proxy:
        slow = make_redis_client(proxy.url, 0.3)
        try:
            guard = BudgetGuard(settings, slow, prefix, clock)
            await slow.ping()
            guard.record(mixture_event("acme", 1.0, clock.now))
            proxy.hold_next_reply(0.6)  # Redis applies the sync; its reply comes after the client gave up
            with pytest.raises(RedisError):
                await guard.sync()
            await guard.sync()  # the same totals again
            await guard.sync()
        finally:
            await slow.aclose()
    assert guard.spent() == pytest.approx(1.0) and guard.spent("acme") == pytest.approx(1.0)
    other = BudgetGuard(settings, redis_client, prefix, clock)
    other.state("acme")
    await other.sync()
    assert other.spent() == pytest.approx(1.0) and other.spent("acme") == pytest.approx(1.0)


async def test_totals_lost_in_redis_are_written_again_at_the_next_sync(redis_client: Any) -> None:
    prefix = f"tbudget{uuid.uuid4().hex[:8]}"
    clock = Clock(time.time())
    guard = BudgetGuard(BudgetSettings(mixture_daily_usd=1.0), redis_client, prefix, clock)
    guard.record(mixture_event("a", 0.5, clock.now))
    await guard.sync()
    key = f"{prefix}:budget:spend:day:{guard.snapshot()['day']}"
    await redis_client.delete(key)  # e.g. a Redis restarted without persistence
    await guard.sync()
    assert await shared_total(redis_client, key) == pytest.approx(0.5)


def _chat(base: str, key: str, content: str) -> httpx.Response:
    response = httpx.post(
        f"{base}/v1/chat/completions",
        headers={"authorization": f"Bearer {key}", "x-moa-route": "mixture"},
        json={"model": "moa-router", "messages": [{"role": "user", "content": content}]},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    return response


def test_service_degrades_escalations_once_a_tenant_reaches_its_cap(make_service: Any, redis_url: str) -> None:
    keys = {"small": "key-small", "big": "key-big"}
    admin = "key-admin"
    base = make_service(
        redis_url=redis_url,
        # Far below one mixture run's cost: the first run uses the whole budget.
        budget={"mixture_daily_usd_per_tenant": 1e-9, "fallback": "cheap"},
        auth={
            "open": False,
            "keys": [{"tenant": t, "key_sha256": hashlib.sha256(k.encode()).hexdigest()} for t, k in keys.items()],
            "admin_key_sha256": hashlib.sha256(admin.encode()).hexdigest(),
        },
    )
    first = _chat(base, keys["small"], "Explain the proof of the four colour theorem.")
    assert first.headers["x-moa-route"] == "mixture"
    held_back = _chat(base, keys["small"], "Explain the proof of the four colour theorem, again.")
    assert held_back.headers["x-moa-route"] == "cheap"
    assert held_back.headers["x-moa-route-reason"] == "budget"
    # Another tenant keeps its own budget.
    assert _chat(base, keys["big"], "Outline Gödel's incompleteness proof.").headers["x-moa-route"] == "mixture"

    stats = httpx.get(f"{base}/v1/stats?window=hour", headers={"authorization": f"Bearer {admin}"}, timeout=10).json()
    assert stats["totals"]["budget_degraded"] == 1
    assert stats["totals"]["reasons"]["budget"] == 1
    budget = stats["budget"]
    tenants = {entry["tenant"]: entry for entry in budget["tenants"]}
    assert tenants["small"]["over_cap"] and tenants["big"]["over_cap"]
    assert tenants["small"]["mixture_spent_usd"] == pytest.approx(float(first.headers["x-moa-cost-usd"]), abs=1e-8)


# ---- monthly caps ----


def test_monthly_cap_degrades_to_the_fallback_while_the_daily_cap_is_not_reached() -> None:
    clock = Clock(utc(2025, 3, 10, 12))
    guard = BudgetGuard(
        BudgetSettings(mixture_daily_usd=10.0, mixture_monthly_usd=1.0, fallback="strong"), None, "p", clock
    )
    guard.record(mixture_event("a", 0.6, clock.now))
    clock.now = utc(2025, 3, 11, 9)  # a new day, the same month
    assert guard.spent() == 0.0 and guard.spent(period="month") == pytest.approx(0.6)
    assert guard.state("a").mixture_allowed
    guard.record(mixture_event("b", 0.5, clock.now))
    state = guard.state("c")
    assert not state.mixture_allowed and state.fallback == "strong"
    snapshot = guard.snapshot()
    assert snapshot["mixture_spent_usd"] == pytest.approx(0.5) and snapshot["day_mixture_allowed"]  # the day's
    month = snapshot["month"]
    assert month["month"] == "202503" and month["resets_at"] == utc(2025, 4, 1)
    assert month["mixture_spent_usd"] == pytest.approx(1.1) and month["mixture_cap_usd"] == 1.0
    assert month["used_rate"] == pytest.approx(1.1) and not month["mixture_allowed"]
    clock.now = utc(2025, 3, 31, 23, 59, 59)
    assert not guard.state("c").mixture_allowed  # until the month ends


def test_per_tenant_monthly_cap_holds_back_only_that_tenant() -> None:
    clock = Clock(utc(2025, 6, 2, 8))
    guard = BudgetGuard(
        BudgetSettings(mixture_daily_usd_per_tenant=0.5, mixture_monthly_usd_per_tenant=0.5), None, "p", clock
    )
    guard.record(mixture_event("heavy", 0.3, clock.now))
    clock.now += DAY
    guard.record(mixture_event("heavy", 0.3, clock.now))
    guard.record(mixture_event("light", 0.1, clock.now))
    assert guard.spent("heavy") == pytest.approx(0.3)  # under the daily cap
    assert not guard.state("heavy").mixture_allowed
    assert guard.state("light").mixture_allowed
    snapshot = guard.snapshot()
    assert snapshot["mixture_allowed"] and snapshot["month"]["mixture_allowed"]  # no overall cap
    assert not any(entry["over_cap"] for entry in snapshot["tenants"])
    month_tenants = {entry["tenant"]: entry for entry in snapshot["month"]["tenants"]}
    assert snapshot["month"]["per_tenant_cap_usd"] == 0.5
    assert month_tenants["heavy"]["over_cap"] and month_tenants["heavy"]["mixture_spent_usd"] == pytest.approx(0.6)
    assert not month_tenants["light"]["over_cap"]


async def test_month_rolls_over_on_the_first(redis_client: Any) -> None:
    prefix = f"tbudget{uuid.uuid4().hex[:8]}"
    clock = Clock(utc(2024, 12, 31, 23))  # the last day of a year, so the month after is January
    guard = BudgetGuard(BudgetSettings(mixture_daily_usd=5.0, mixture_monthly_usd=1.0), redis_client, prefix, clock)
    guard.record(mixture_event("a", 1.0, clock.now))
    await guard.sync()
    assert not guard.state("a").mixture_allowed
    assert guard.snapshot()["month"]["resets_at"] == utc(2025, 1, 1)
    assert await shared_total(redis_client, f"{prefix}:budget:spend:day:20241231") == pytest.approx(1.0)
    assert await shared_total(redis_client, f"{prefix}:budget:spend:month:202412") == pytest.approx(1.0)
    assert await shared_total(redis_client, f"{prefix}:budget:spend:month:202412:tenant:a") == pytest.approx(1.0)
    assert await redis_client.ttl(f"{prefix}:budget:spend:month:202412") > 31 * DAY
    assert 2 * DAY < await redis_client.ttl(f"{prefix}:budget:spend:day:20241231") <= 3 * DAY

    clock.now = utc(2025, 1, 1)  # 00:00 UTC on the 1st: a new month and a new day
    assert guard.state("a").mixture_allowed
    assert guard.spent(period="month") == 0.0 and guard.snapshot()["month"]["month"] == "202501"
    guard.record(mixture_event("a", 0.25, clock.now))
    await guard.sync()
    assert await shared_total(redis_client, f"{prefix}:budget:spend:day:20250101") == pytest.approx(0.25)
    assert await shared_total(redis_client, f"{prefix}:budget:spend:month:202501") == pytest.approx(0.25)
    assert await shared_total(redis_client, f"{prefix}:budget:spend:month:202412") == pytest.approx(1.0)
    assert guard.spent() == pytest.approx(0.25) and guard.spent(period="month") == pytest.approx(0.25)


async def test_replicas_share_the_monthly_totals_through_redis(redis_client: Any) -> None:
    prefix = f"tbudget{uuid.uuid4().hex[:8]}"
    clock = Clock(utc(2025, 5, 14, 22))
    settings = BudgetSettings(mixture_monthly_usd=2.0, mixture_monthly_usd_per_tenant=1.0)
    first = BudgetGuard(settings, redis_client, prefix, clock)
    second = BudgetGuard(settings, redis_client, prefix, clock)
    assert second.state("acme").mixture_allowed  # the second replica serves acme too
    first.record(mixture_event("acme", 0.6, clock.now))
    await first.sync()
    clock.now += DAY  # the next day: the month's totals carry on
    assert first.state("acme").mixture_allowed  # the first replica serves acme today too
    second.record(mixture_event("acme", 0.5, clock.now))
    assert second.state("acme").mixture_allowed  # does not know of the first replica's spend yet
    await second.sync()
    await first.sync()
    for guard in (first, second):
        assert guard.spent(period="month") == pytest.approx(1.1)
        assert guard.spent("acme", period="month") == pytest.approx(1.1)
        assert guard.spent() == pytest.approx(0.5)  # today's (per tenant only with a daily per-tenant cap)
        assert not guard.state("acme").mixture_allowed
        assert guard.state("other").mixture_allowed
    # A third replica starting now reads the month's totals at its first sync.
    third = BudgetGuard(settings, redis_client, prefix, clock)
    third.state("acme")
    await third.sync()
    assert third.spent(period="month") == pytest.approx(1.1) and not third.state("acme").mixture_allowed


def test_an_event_started_last_month_is_not_counted_in_this_one() -> None:
    clock = Clock(utc(2025, 3, 1, 0, 0, 5))
    guard = BudgetGuard(BudgetSettings(mixture_monthly_usd=1.0), None, "p", clock)
    guard.record(mixture_event("a", 0.5, utc(2025, 2, 28, 23, 59, 50)))  # started in February
    assert guard.spent(period="month") == 0.0 and guard.spent() == 0.0
    guard.record(mixture_event("a", 0.25, utc(2025, 3, 1, 0, 0, 1)))
    assert guard.spent(period="month") == pytest.approx(0.25)
    clock.now = utc(2025, 3, 2, 0, 0, 5)
    guard.record(mixture_event("a", 0.125, utc(2025, 3, 1, 23, 59, 59)))  # yesterday, but this month
    assert guard.spent() == 0.0
    assert guard.spent(period="month") == pytest.approx(0.375)


def test_monthly_caps_in_the_config() -> None:
    base = {
        "cheap": {"model": "openai/gpt-4o-mini"},
        "proposers": [{"model": "anthropic/claude-sonnet-4-5"}, {"model": "gemini/gemini-2.5-pro"}],
        "aggregator": {"model": "openai/gpt-4o"},
    }
    budget = {"mixture_monthly_usd": 300, "mixture_monthly_usd_per_tenant": 25.5}
    settings = settings_from_mapping({**base, "budget": budget})
    assert settings.budget.mixture_monthly_usd == 300.0 and settings.budget.mixture_monthly_usd_per_tenant == 25.5
    assert settings.budget.mixture_daily_usd is None
    assert BudgetGuard(settings.budget, None, "p").enabled  # a monthly cap alone turns the guard on
    assert not BudgetGuard(BudgetSettings(), None, "p").enabled
    for field in budget:
        with pytest.raises(ConfigError) as info:
            settings_from_mapping({**base, "budget": {field: -1}})
        assert f"budget.{field}" in str(info.value)


# ---- every replica knows every tenant ----


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
    assert _chat(second, keys["big"], "Outline Gödel's incompleteness proof.").headers["x-moa-route"] == "mixture"
    deadline = time.monotonic() + 10
    while True:  # the event is recorded a moment after the answer, then both replicas sync
        budget = httpx.get(f"{first}/v1/stats", headers={"authorization": f"Bearer {admin}"}, timeout=10).json()
        tenants = {entry["tenant"]: entry for entry in budget["budget"]["tenants"]}
        if "big" in tenants or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert tenants["big"]["over_cap"] and tenants["big"]["mixture_spent_usd"] > 0
    held_back = _chat(first, keys["big"], "Outline Gödel's incompleteness proof, again.")  # big's first request here
    assert held_back.headers["x-moa-route"] == "cheap" and held_back.headers["x-moa-route-reason"] == "budget"
