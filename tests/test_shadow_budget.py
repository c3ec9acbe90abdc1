"""The shadow budget in Redis: reservations and settlements of the day's shadow spend, and shadow
evaluation held to it across runs, replicas and shutdown."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis as AsyncRedis

from router.shadow_budget import ShadowBudget
from tests.support.shadow import (
    RUN_COST,
    Harness,
    cheap_event,
    judge_preferring,
    make_settings,
    wait_until,
)


@pytest.fixture
def prefix() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Any]:
    client: Any = AsyncRedis.from_url(redis_url)
    yield client
    await client.aclose()


async def test_a_run_reserves_then_settles_its_cost_within_the_days_key(redis: Any) -> None:
    budget = ShadowBudget(redis, f"t{uuid.uuid4().hex[:10]}", daily_usd=0.01)
    first = await budget.reserve("mixture")
    assert first is not None and not first.cost_known and first.amount == pytest.approx(0.01)  # the rest of the day
    assert await budget.reserve("mixture") is None  # the first run goes alone
    await budget.settle(first, 0.003)
    assert await budget.spent() == pytest.approx(0.003)
    ttl = await redis.ttl(budget.key())
    assert 0 < ttl <= 3 * 86400  # settling kept the day's expiry
    second = await budget.reserve("mixture")
    assert second is not None and second.cost_known and second.amount == pytest.approx(0.003)
    await budget.settle(second, 0.002)
    assert await budget.spent() == pytest.approx(0.005)
    assert 0 < await redis.ttl(budget.key()) <= 3 * 86400


async def test_many_runs_add_up_exactly_enough(redis: Any) -> None:
    budget = ShadowBudget(redis, f"t{uuid.uuid4().hex[:10]}", daily_usd=1.0)
    first = await budget.reserve("cheap")
    assert first is not None
    await budget.settle(first, 0.001)
    for _ in range(200):
        reservation = await budget.reserve("cheap")
        assert reservation is not None
        await budget.settle(reservation, 0.001)
    assert await budget.spent() == pytest.approx(0.201, abs=1e-12)


async def test_settling_after_the_days_total_expired_leaves_no_key_behind(redis: Any) -> None:
    budget = ShadowBudget(redis, f"t{uuid.uuid4().hex[:10]}", daily_usd=0.01)
    reservation = await budget.reserve("mixture")
    assert reservation is not None
    await redis.delete(reservation.key)
    await budget.settle(reservation, 0.004)
    assert await redis.exists(reservation.key) == 0  # not a total without an expiry


async def test_the_daily_budget_stops_shadow_runs(tmp_path: Path, prefix: str, redis: AsyncRedis) -> None:
    # One run costs 0.005; the budget allows the first and not the second.
    async with Harness(make_settings(tmp_path, prefix, daily_budget_usd=0.004), redis, judge_preferring(None)) as h:
        h.shadow.record(cheap_event(1))
        deadline = time.monotonic() + 5
        while h.shadow.counters.completed < 1:
            assert time.monotonic() < deadline, "the first shadow run did not finish"
            await asyncio.sleep(0.01)
        for i in range(2, 5):
            h.shadow.record(cheap_event(i))
        outcomes = await h.settle()
    assert len(outcomes) == 1 and h.shadow.counters.over_budget == 3
    assert await h.shadow.budget.spent() == pytest.approx(0.005)
    assert h.judge.calls == 1


async def test_zero_budget_means_no_shadow_runs(tmp_path: Path, prefix: str, redis: AsyncRedis) -> None:
    async with Harness(make_settings(tmp_path, prefix, daily_budget_usd=0.0), redis, judge_preferring(None)) as h:
        h.shadow.record(cheap_event(1))
        outcomes = await h.settle()
    assert outcomes == [] and h.shadow.counters.over_budget == 1 and h.aggregator.calls == 0


async def test_concurrent_runs_stay_within_the_budget(tmp_path: Path, prefix: str, redis: AsyncRedis) -> None:
    # A run costs 0.005 and the budget holds two. Four samples at once on a fresh deployment: no run's cost
    # is known yet, so they must not all pass (each reserved nothing, and 0.02 was spent).
    gate = asyncio.Event()
    settings = make_settings(tmp_path, prefix, daily_budget_usd=0.012, concurrency=4)
    async with Harness(settings, redis, judge_preferring(None), gate=gate) as h:
        for i in range(4):
            h.shadow.record(cheap_event(i))
        await asyncio.sleep(0.2)  # every worker has reserved (or been refused) before any run ends
        gate.set()
        await wait_until(lambda: h.shadow.counters.completed + h.shadow.counters.over_budget == 4, "samples left")
        # The cost of a run is known now: of four more, as many run as fit in what is left.
        gate.clear()
        for i in range(4, 8):
            h.shadow.record(cheap_event(i))
        await asyncio.sleep(0.2)
        gate.set()
        await h.settle()
        spent = await h.shadow.budget.spent()
    assert h.judge.calls == 2 and spent == pytest.approx(0.010)


async def test_a_new_replica_reserves_what_runs_cost_on_the_others(
    tmp_path: Path, prefix: str, redis: AsyncRedis
) -> None:
    # Replica A has run one sample (0.005 of 0.012 spent). Replica B starts and gets four samples at once:
    # the cost it reserves per run is shared, not learned again in each process from zero.
    settings = make_settings(tmp_path, prefix, daily_budget_usd=0.012, concurrency=4)
    async with Harness(settings, redis, judge_preferring(None)) as a:
        a.shadow.record(cheap_event(0))
        await a.settle()
    gate = asyncio.Event()
    async with Harness(settings, redis, judge_preferring(None), gate=gate) as b:
        for i in range(1, 5):
            b.shadow.record(cheap_event(i))
        await asyncio.sleep(0.2)
        gate.set()
        await b.settle()
        spent = await b.shadow.budget.spent()
    assert b.judge.calls == 1 and b.shadow.counters.over_budget == 3 and spent == pytest.approx(0.010)


async def test_a_run_cut_off_at_shutdown_is_still_charged(tmp_path: Path, prefix: str, redis: AsyncRedis) -> None:
    # Its calls were under way and are billed: it keeps what it reserved (the cost of a run), where it
    # used to settle at nothing.
    gate = asyncio.Event()  # never set: the proposers are still answering at shutdown
    settings = make_settings(tmp_path, prefix, stop_grace_s=0.1)
    async with Harness(settings, redis, judge_preferring(None), gate, RUN_COST) as h:
        h.shadow.record(cheap_event(0))
        await wait_until(lambda: [p.calls for p in h.proposers] == [1, 1, 1], "the run did not start")
        await h.shadow.close()
    assert await h.shadow.budget.spent() == pytest.approx(RUN_COST["mixture"])
    assert h.shadow.counters.completed == 0
