"""The budget guard: caps on mixture spend per UTC day and per UTC calendar month, overall and per
tenant. Once any configured cap is reached, escalations go to the configured fallback (the cheap model
or one strong model) until the period whose cap was reached ends (the day at 00:00 UTC, the month on
the 1st at 00:00 UTC).

The guard sits on the request path, so `state()` reads memory only. Each replica keeps its own running
totals of mixture spend for the period (overall and per tenant) and, every `sync_interval_s`, writes
them as absolute values to its own field (a random replica id) of one Redis hash per total, then reads
the hashes back and adds up the other replicas' fields. Writing totals rather than increments makes a
sync idempotent: one that failed, timed out after Redis applied it, or ran twice leaves the right sums.
A cap is therefore soft by up to one sync interval of traffic plus the requests already in flight when
it is reached.

Each sync also adds the tenants this replica has served to a set per period (`<prefix>:budget:tenants:
{day|month}:<label>`) and reads the set back, so that every replica reads the totals of every tenant,
not only of those it has served: /v1/stats lists them all, and a tenant's cap holds on a replica from
the tenant's first request there.

The hashes are named `<prefix>:budget:spend:...`; before, the totals were strings named
`<prefix>:budget:mixture:...` and added to with INCRBYFLOAT. An upgrade therefore starts the day's and
the month's shared totals afresh (old and new replicas do not see each other's spend meanwhile).
"""

from __future__ import annotations

import asyncio
import calendar
import contextlib
import logging
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from router.config import BudgetSettings
from router.events import RequestEvent
from router.policy import BudgetState
from router.tasks import cancel_and_wait

if TYPE_CHECKING:
    from contextlib import AsyncExitStack

    from redis.asyncio import Redis
    from redis.asyncio.client import Pipeline

    from router.state import AppState

logger = logging.getLogger(__name__)

PeriodName = Literal["day", "month"]

_DAY_S = 86400
# Keys outlive their period a little, so a replica that syncs late still writes to the right total.
_KEY_TTL_S: dict[PeriodName, int] = {"day": 3 * _DAY_S, "month": 35 * _DAY_S}
# Tenants whose totals a replica reads back without having served them (named by the tenant set, or
# watched from their first request here); past this many, one is read from its first spend here.
# Tenants are the operator's (one per issued key), so this bounds a misconfiguration, not a client.
_MAX_TENANTS = 10_000


def day_of(at: float) -> str:
    return time.strftime("%Y%m%d", time.gmtime(at))


def month_of(at: float) -> str:
    return time.strftime("%Y%m", time.gmtime(at))


def _bounds(name: PeriodName, now: float) -> tuple[str, float, float]:
    """The period containing `now`: its label, and when it starts and ends (UTC, epoch seconds)."""
    if name == "day":
        starts = now // _DAY_S * _DAY_S
        return day_of(now), starts, starts + _DAY_S
    t = time.gmtime(now)
    year, month = (t.tm_year + 1, 1) if t.tm_mon == 12 else (t.tm_year, t.tm_mon + 1)
    starts = calendar.timegm((t.tm_year, t.tm_mon, 1, 0, 0, 0))
    return month_of(now), float(starts), float(calendar.timegm((year, month, 1, 0, 0, 0)))


@dataclass
class _Period:
    """One budget period (the UTC day or month): its caps, its bounds, this replica's own totals and
    the other replicas' totals as read at the last sync."""

    name: PeriodName
    cap: float | None
    tenant_cap: float | None
    label: str = ""  # YYYYMMDD or YYYYMM
    starts: float = 0.0
    ends: float = 0.0
    own_all: float = 0.0
    others_all: float = 0.0
    own: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))
    # Its keys are also the tenants watched: read back at each sync, with other replicas' spend.
    others: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))

    def roll(self, now: float) -> None:
        self.label, self.starts, self.ends = _bounds(self.name, now)
        self.own_all = self.others_all = 0.0
        self.own, self.others = defaultdict(float), defaultdict(float)

    def key(self, prefix: str, tenant: str | None = None) -> str:
        base = f"{prefix}:budget:spend:{self.name}:{self.label}"
        return base if tenant is None else f"{base}:tenant:{tenant}"

    def tenants_key(self, prefix: str) -> str:
        """A set of the tenants with spend in this period on any replica: each sync adds its own and reads
        the others', so every replica reports and caps every tenant, not only those it has served."""
        return f"{prefix}:budget:tenants:{self.name}:{self.label}"

    def spent(self, tenant: str | None = None) -> float:
        if tenant is None:
            return self.others_all + self.own_all
        return self.others.get(tenant, 0.0) + self.own.get(tenant, 0.0)

    @property
    def capped(self) -> bool:
        return self.cap is not None or self.tenant_cap is not None

    def allows(self, tenant: str) -> bool:
        if self.tenant_cap is not None and tenant not in self.others and len(self.others) < _MAX_TENANTS:
            # Read back at the next sync, even if no replica records it in the tenant set (an older version).
            self.others[tenant] = 0.0
        if self.cap is not None and self.spent() >= self.cap:
            return False
        return self.tenant_cap is None or self.spent(tenant) < self.tenant_cap

    def figures(self, top: int) -> dict[str, Any]:
        spent = self.spent()
        tenants = {tenant: self.spent(tenant) for tenant in set(self.others) | set(self.own)}
        busiest = sorted(tenants.items(), key=lambda item: (-item[1], item[0]))[:top]  # ties by name: a stable list
        cap = self.tenant_cap
        over_cap = {tenant for tenant, amount in tenants.items() if cap is not None and amount >= cap}
        return {
            self.name: self.label,
            "resets_at": self.ends,
            "mixture_spent_usd": spent,
            "mixture_cap_usd": self.cap,
            "used_rate": spent / self.cap if self.cap else None,
            "mixture_allowed": self.cap is None or spent < self.cap,
            "per_tenant_cap_usd": self.tenant_cap,
            "tenants_over_cap": len(over_cap),  # of every tenant, not only of the `top` listed
            "tenants": [
                {"tenant": tenant, "mixture_spent_usd": amount, "over_cap": tenant in over_cap}
                for tenant, amount in busiest
            ],
        }


@dataclass
class _Readback:
    """One period's part of a sync: where the replies are, and the other replicas' totals read from them."""

    period: _Period
    label: str  # the period's when the sync was sent
    tenants: list[str]  # the tenants whose totals are read, in the order of `reads[1:]`
    members_at: int = 0  # the tenant set's SMEMBERS reply
    reads: list[int] = field(default_factory=list)  # the overall total's HGETALL reply, then each tenant's
    others: list[float] = field(default_factory=list)  # the other replicas' totals, in the order of `reads`

    @property
    def current(self) -> bool:
        return self.label == self.period.label  # else the period ended while syncing: the totals read are stale


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
        self._replica = uuid.uuid4().hex  # this guard's field in the shared hashes
        self._day = _Period("day", settings.mixture_daily_usd, settings.mixture_daily_usd_per_tenant)
        self._month = _Period("month", settings.mixture_monthly_usd, settings.mixture_monthly_usd_per_tenant)
        # The day is always counted (its figures are the snapshot's top level); the month only when it
        # has a cap, so that a daily-only config costs no more Redis work than before months existed.
        self._periods = (self._day, self._month) if self._month.capped else (self._day,)
        now = clock()
        for period in (self._day, self._month):
            period.roll(now)

    def _current(self) -> None:
        now = self._clock()
        for period in (self._day, self._month):
            if now >= period.ends:
                period.roll(now)

    @property
    def enabled(self) -> bool:
        return self._day.capped or self._month.capped

    def spent(self, tenant: str | None = None, period: PeriodName = "day") -> float:
        """This day's (or month's) mixture spend, overall or of one tenant, as this replica knows it."""
        self._current()
        return (self._day if period == "day" else self._month).spent(tenant)

    def state(self, tenant: str) -> BudgetState:
        self._current()
        allowed = [period.allows(tenant) for period in self._periods]  # no short cut: each notes the tenant
        return BudgetState(mixture_allowed=all(allowed), fallback=self.settings.fallback)

    def record(self, event: RequestEvent) -> None:
        if event.route != "mixture":
            return
        cost = event.cost_usd
        if cost <= 0:
            return
        self._current()
        for period in self._periods:
            if event.started_at < period.starts:
                continue  # started in the previous period: that period's budget
            period.own_all += cost
            period.own[event.tenant] += cost

    async def sync(self) -> None:
        """Write this replica's totals of the day and the month and read back everyone's, in one round
        trip; in two when another replica has recorded a tenant this one has not read yet, so that one sync
        (the one at startup too) leaves every tenant's spend known before its first request here.
        Idempotent: a failed or repeated sync leaves nothing to put back or to undo."""
        self._current()
        if self._redis is None:
            return
        pipe = self._redis.pipeline(transaction=False)
        readbacks = [self._write_and_read(pipe, period) for period in self._periods]
        replies = await pipe.execute()
        readbacks = [readback for readback in readbacks if readback.current]
        late = self._redis.pipeline(transaction=False)
        for readback in readbacks:
            readback.others = [self._others_in(replies[at]) for at in readback.reads]
            known = set(readback.tenants)
            members = {
                member.decode() if isinstance(member, bytes) else member for member in replies[readback.members_at]
            }
            for tenant in sorted(members - known)[: max(_MAX_TENANTS - len(known), 0)]:
                readback.tenants.append(tenant)
                late.hgetall(readback.period.key(self._prefix, tenant))
        if len(late):
            late_replies = iter(await late.execute())
            for readback in readbacks:  # in the order the late reads were queued
                unread = len(readback.tenants) + 1 - len(readback.others)  # the overall total is others[0]
                readback.others += [self._others_in(next(late_replies)) for _ in range(unread)]
        for readback in readbacks:
            if readback.current:
                readback.period.others_all = readback.others[0]
                readback.period.others = defaultdict(float, zip(readback.tenants, readback.others[1:], strict=True))

    def _write_and_read(self, pipe: Pipeline, period: _Period) -> _Readback:
        """Queue on `pipe` this replica's totals of `period`, its tenants, and the reads of the tenant set
        and of every total it knows of."""
        readback = _Readback(period, period.label, sorted(set(period.others) | set(period.own)))
        ttl = _KEY_TTL_S[period.name]
        tenants_key = period.tenants_key(self._prefix)
        if period.own:  # at every sync, so that a set lost in Redis is written again
            pipe.sadd(tenants_key, *period.own)
            pipe.expire(tenants_key, ttl)
        readback.members_at = len(pipe)
        pipe.smembers(tenants_key)
        totals = [period.own_all, *(period.own.get(tenant, 0.0) for tenant in readback.tenants)]
        keys = [period.key(self._prefix), *(period.key(self._prefix, tenant) for tenant in readback.tenants)]
        for key, total in zip(keys, totals, strict=True):
            if total > 0:  # a watched tenant this replica has not served gets no field
                pipe.hset(key, self._replica, repr(total))
                pipe.expire(key, ttl)
            readback.reads.append(len(pipe))
            pipe.hgetall(key)
        return readback

    def _others_in(self, fields: dict[bytes | str, bytes | str]) -> float:
        """The other replicas' spend in one HGETALL reply."""
        mine = (self._replica, self._replica.encode())
        return sum(float(value) for replica, value in fields.items() if replica not in mine)

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
        """Today's budget use (top-level fields) and, when the month is capped, this month's (`month`), for
        /v1/stats and the dashboard. The top-level `mixture_allowed` is whether the overall caps of both
        periods allow the mixture; each period's own is in its figures."""
        self._current()
        day = self._day.figures(top)
        month = self._month.figures(top) if self._month.capped else None
        return {
            "period": "day",
            **day,
            "mixture_allowed": day["mixture_allowed"] and (month is None or month["mixture_allowed"]),
            "day_mixture_allowed": day["mixture_allowed"],
            "enabled": self.enabled,
            "fallback": self.settings.fallback,
            "month": month,
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
