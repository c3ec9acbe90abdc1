"""The shadow budget in Redis: reservations and settlements of the day's shadow spend."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis as AsyncRedis

from router.shadow_budget import ShadowBudget


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
