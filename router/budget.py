"""The budget guard: daily caps on mixture spend, overall and per tenant. Once a cap is reached,
escalations go to the configured fallback (the cheap model or one strong model) until the UTC day ends.

The guard sits on the request path, so `state()` reads memory only. Each replica counts its own
mixture spend as events arrive and, every `sync_interval_s`, adds it to the day's totals in Redis
(INCRBYFLOAT returns the new total, which includes every other replica's spend) and reads back the
totals of the tenants it serves. A cap is therefore soft by up to one sync interval of traffic plus
the requests already in flight when it is reached.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from router.config import BudgetSettings
from router.events import RequestEvent
from router.policy import BudgetState
from router.tasks import cancel_and_wait

if TYPE_CHECKING:
    from contextlib import AsyncExitStack

    from redis.asyncio import Redis

    from router.state import AppState

logger = logging.getLogger(__name__)

_DAY_S = 86400
_KEY_TTL_S = 3 * _DAY_S
_MAX_TENANTS = 10_000  # tenants whose totals a replica keeps; more are forgotten at the next sync


def day_of(at: float) -> str:
    return time.strftime("%Y%m%d", time.gmtime(at))


class BudgetGuard:
    """`state(tenant)` for the policy; `record(event)` as an EventSink; `run()` syncs with Redis."""

    def __init__(
        self,
        settings: BudgetSettings,
        redis: Redis | None,
        prefix: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self._redis = redis
        self._prefix = prefix
        self._clock = clock
        self._day = ""
        self._day_ends = 0.0
        self._roll(clock())

    def _roll(self, now: float) -> None:
        self._day = day_of(now)
        self._day_ends = (now // _DAY_S + 1) * _DAY_S
        # Totals from Redis at the last sync, and this replica's spend since then.
        self._synced_all = 0.0
        self._pending_all = 0.0
        self._synced: dict[str, float] = defaultdict(float)
        self._pending: dict[str, float] = defaultdict(float)

    def _today(self) -> None:
        now = self._clock()
        if now >= self._day_ends:
            self._roll(now)

    def _key(self, tenant: str | None = None) -> str:
        base = f"{self._prefix}:budget:mixture:{self._day}"
        return base if tenant is None else f"{base}:tenant:{tenant}"

    @property
    def enabled(self) -> bool:
        return self.settings.mixture_daily_usd is not None or self.settings.mixture_daily_usd_per_tenant is not None

    def spent(self, tenant: str | None = None) -> float:
        """Today's mixture spend, overall or of one tenant, as this replica knows it."""
        self._today()
        if tenant is None:
            return self._synced_all + self._pending_all
        return self._synced.get(tenant, 0.0) + self._pending.get(tenant, 0.0)

    def state(self, tenant: str) -> BudgetState:
        allowed = True
        overall, per_tenant = self.settings.mixture_daily_usd, self.settings.mixture_daily_usd_per_tenant
        if overall is not None and self.spent() >= overall:
            allowed = False
        if per_tenant is not None:
            if tenant not in self._synced and len(self._synced) < _MAX_TENANTS:
                self._synced[tenant] = 0.0  # read back at the next sync, with other replicas' spend
            if self.spent(tenant) >= per_tenant:
                allowed = False
        return BudgetState(mixture_allowed=allowed, fallback=self.settings.fallback)

    def record(self, event: RequestEvent) -> None:
        if event.route != "mixture":
            return
        cost = event.cost_usd
        if cost <= 0:
            return
        self._today()
        if event.started_at < self._day_ends - _DAY_S:
            return  # started yesterday: yesterday's budget
        self._pending_all += cost
        self._pending[event.tenant] += cost

    async def sync(self) -> None:
        """Add this replica's spend to the shared totals and read back everyone's."""
        self._today()
        if self._redis is None:
            return
        day = self._day
        pending_all, self._pending_all = self._pending_all, 0.0
        pending, self._pending = self._pending, defaultdict(float)
        tenants = sorted(set(self._synced) | set(pending))
        pipe = self._redis.pipeline(transaction=False)
        pipe.incrbyfloat(self._key(), pending_all)
        pipe.expire(self._key(), _KEY_TTL_S)
        for tenant in tenants:
            pipe.incrbyfloat(self._key(tenant), pending.get(tenant, 0.0))
            pipe.expire(self._key(tenant), _KEY_TTL_S)
        from redis.exceptions import RedisError

        try:
            replies = await pipe.execute()
        except (RedisError, OSError):
            if day == self._day:  # keep the spend for the next attempt
                self._pending_all += pending_all
                for tenant, amount in pending.items():
                    self._pending[tenant] += amount
            raise
        if day != self._day:
            return  # the day ended while syncing: the totals read are yesterday's
        self._synced_all = float(replies[0])
        self._synced = defaultdict(float, {tenant: float(replies[2 + 2 * i]) for i, tenant in enumerate(tenants)})

    async def run(self) -> None:
        """Sync every `sync_interval_s` until cancelled."""
        from redis.exceptions import RedisError

        last_log = 0.0
        while True:
            await asyncio.sleep(self.settings.sync_interval_s)
            try:
                await self.sync()
            except (RedisError, OSError) as exc:
                if time.monotonic() - last_log > 30:
                    last_log = time.monotonic()
                    logger.warning("budget: cannot sync with Redis (%s); counting this replica's spend only", exc)

    def snapshot(self, top: int = 10) -> dict[str, Any]:
        """Today's budget use, for /v1/stats and the dashboard."""
        self._today()
        overall, per_tenant = self.settings.mixture_daily_usd, self.settings.mixture_daily_usd_per_tenant
        spent = self.spent()
        tenants = {tenant: self.spent(tenant) for tenant in set(self._synced) | set(self._pending)}
        busiest = sorted(tenants.items(), key=lambda item: item[1], reverse=True)[:top]
        return {
            "period": "day",
            "day": self._day,
            "resets_at": self._day_ends,
            "enabled": self.enabled,
            "fallback": self.settings.fallback,
            "mixture_spent_usd": spent,
            "mixture_cap_usd": overall,
            "used_rate": spent / overall if overall else None,
            "mixture_allowed": overall is None or spent < overall,
            "per_tenant_cap_usd": per_tenant,
            "tenants": [
                {
                    "tenant": tenant,
                    "mixture_spent_usd": amount,
                    "over_cap": per_tenant is not None and amount >= per_tenant,
                }
                for tenant, amount in busiest
            ],
        }


async def start_budget(state: AppState, stack: AsyncExitStack) -> None:
    """Startup step: when a cap is configured, the guard as `state.budget` and an event sink, synced
    with Redis in the background (in memory only, per replica, without Redis)."""
    guard = BudgetGuard(state.settings.budget, state.redis, state.settings.redis_prefix)
    if not guard.enabled:
        return
    state.budget = guard
    state.components["budget"] = guard
    state.sinks.append(guard)
    if state.redis is None:
        logger.warning("budget caps are counted per replica: no Redis is configured to share them")
        return
    from redis.exceptions import RedisError

    with contextlib.suppress(RedisError, OSError):
        await guard.sync()  # start from today's totals, not from zero
    task = asyncio.create_task(guard.run(), name="budget-sync")

    async def stop() -> None:
        await cancel_and_wait(task)
        with contextlib.suppress(RedisError, OSError):
            await guard.sync()

    stack.push_async_callback(stop)
