"""The budget guard: daily and monthly mixture caps, overall and per tenant, shared by replicas through Redis."""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from router.budget import BudgetGuard
from router.config import BudgetSettings, ConfigError, settings_from_mapping
from router.redis_client import make_redis_client
from tests.support.budget import DAY, Clock, chat_on_mixture, mixture_event, shared_total, utc
from tests.support.slow_proxy import SlowProxy


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
    first = chat_on_mixture(base, keys["small"], "Explain the proof of the four colour theorem.")
    assert first.headers["x-moa-route"] == "mixture"
    held_back = chat_on_mixture(base, keys["small"], "Explain the proof of the four colour theorem, again.")
    assert held_back.headers["x-moa-route"] == "cheap"
    assert held_back.headers["x-moa-route-reason"] == "budget"
    # Another tenant keeps its own budget.
    assert (
        chat_on_mixture(base, keys["big"], "Outline Gödel's incompleteness proof.").headers["x-moa-route"] == "mixture"
    )

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


def test_the_strong_fallback_answers_escalations_once_the_cap_is_reached_and_is_not_counted_as_mixture_spend(
    make_service: Any, sim_url: str, redis_url: str
) -> None:
    from tests.conftest import entry

    admin = "key-admin"
    base = make_service(
        redis_url=redis_url,
        strong=entry(sim_url, "judge-1"),  # a model of its own, to tell its answers apart
        budget={"mixture_daily_usd": 1e-9, "fallback": "strong"},  # the first mixture run uses it all
        auth={"open": True, "admin_key_sha256": hashlib.sha256(admin.encode()).hexdigest()},
    )
    first = chat_on_mixture(base, "any", "Explain the proof of the four colour theorem.")
    assert first.headers["x-moa-route"] == "mixture"

    def spent() -> float:
        stats = httpx.get(f"{base}/v1/stats?window=hour", headers={"authorization": f"Bearer {admin}"}, timeout=10)
        return float(stats.json()["budget"]["mixture_spent_usd"])

    spent_on_mixture = spent()
    assert spent_on_mixture == pytest.approx(float(first.headers["x-moa-cost-usd"]), abs=1e-8)
    # The client asks for the mixture: it cannot spend past the cap; the strong model answers.
    forced = chat_on_mixture(base, "any", "Explain the proof of the four colour theorem, again.")
    assert (forced.headers["x-moa-route"], forced.headers["x-moa-route-reason"]) == ("strong", "budget")
    assert forced.json()["model"] == "openai/judge-1" and float(forced.headers["x-moa-cost-usd"]) > 0
    easy = httpx.post(
        f"{base}/v1/chat/completions",
        headers={"x-moa-route": "auto"},
        json={"model": "moa-router", "messages": [{"role": "user", "content": "hi"}]},
        timeout=30,
    )
    assert easy.headers["x-moa-route"] == "cheap"  # a query that was not escalated is not sent to the strong model
    assert spent() == spent_on_mixture  # what the strong model cost is not mixture spend
