"""The shadow budget: the day's shadow spend in Redis, shared by every replica.

A run reserves what it may cost before it starts and settles its actual cost when it ends, both in one
script call, so concurrent runs on any replica cannot all pass a nearly spent budget. What a run may
cost is the most a run of that route has cost so far, kept in Redis for all replicas (a fresh replica
knows it too). While no run of a route has finished, its cost is unknown and a run reserves the whole
rest of the day's budget: the first run goes alone, and later ones reserve what it cost. Spend can pass
the budget only by what a run costs beyond the most any run cost before.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

_SPEND_TTL_S = 3 * 86400
_COST_TTL_S = 7 * 86400  # forgotten after a week without shadow runs (prices and models change)

# The spend is added to with GET and SET, not INCRBYFLOAT: Redis before 7.0 rewrites an INCRBYFLOAT called
# from a script into a longer SET for replication, past the end of the script's argument array, and
# corrupts its heap (redis-server 6.2 crashed in the tests).
# KEYS: the day's spend, the hash of the largest run cost per route; ARGV: budget, route, spend ttl.
# Returns [amount reserved (a string: Lua numbers come back as integers), 1 when the route's cost was
# known], or nil when over budget.
_RESERVE = """
local spent = tonumber(redis.call('GET', KEYS[1]) or '0')
local budget = tonumber(ARGV[1])
if spent >= budget then return false end
local known = redis.call('HGET', KEYS[2], ARGV[2])
local amount = budget - spent
if known then
  amount = tonumber(known)
  if spent + amount > budget then return false end
end
local reserved = string.format('%.17g', amount)
redis.call('SET', KEYS[1], string.format('%.17g', spent + amount), 'EX', ARGV[3])
return {reserved, known and 1 or 0}
"""

# KEYS: the day's spend, the cost hash; ARGV: actual minus reserved, route, actual cost (or '' when the run
# was cut off and says nothing about what a run costs), cost ttl.
_SETTLE = """
local spent = redis.call('GET', KEYS[1])
if spent then  -- else the day's total expired: nothing to settle against
  redis.call('SET', KEYS[1], string.format('%.17g', tonumber(spent) + tonumber(ARGV[1])), 'KEEPTTL')
end
if ARGV[3] ~= '' then
  if tonumber(ARGV[3]) > tonumber(redis.call('HGET', KEYS[2], ARGV[2]) or '-1') then
    redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
  end
  redis.call('EXPIRE', KEYS[2], ARGV[4])
end
return 0
"""


@dataclass(frozen=True, slots=True)
class Reservation:
    key: str  # the day's spend key it was taken from (a run past midnight settles on its own day)
    route: str
    amount: float
    cost_known: bool  # False: the route's cost was unknown and the rest of the budget was reserved


class ShadowBudget:
    """`reserve` before a run, `settle` after it; `spent` is the day's total so far."""

    def __init__(self, redis: Any, prefix: str, daily_usd: float) -> None:
        self._redis = redis
        self._prefix = prefix
        self.daily_usd = daily_usd
        self._costs_key = f"{prefix}:shadow:run_cost"
        self._reserve = redis.register_script(_RESERVE)
        self._settle = redis.register_script(_SETTLE)

    @property
    def costs_key(self) -> str:
        """The hash of the largest cost of a run, per route the shadow runs."""
        return self._costs_key

    def key(self, now: float | None = None) -> str:
        day = datetime.fromtimestamp(time.time() if now is None else now, UTC).strftime("%Y-%m-%d")
        return f"{self._prefix}:shadow:spend:{day}"

    async def spent(self) -> float:
        value = await self._redis.get(self.key())
        return float(value) if value is not None else 0.0

    async def reserve(self, route: str) -> Reservation | None:
        """What a run of `route` (the route the shadow runs) may cost, taken from the day's budget; None
        when it does not fit in what is left."""
        key = self.key()
        reply = await self._reserve(keys=[key, self._costs_key], args=[repr(self.daily_usd), route, _SPEND_TTL_S])
        if reply is None:
            return None
        reserved, known = reply
        return Reservation(key, route, float(reserved), bool(known))

    async def settle(self, reservation: Reservation, actual: float, finished: bool = True) -> None:
        """Count `actual` instead of the reservation; a finished run's cost also raises the route's known
        cost when it is the largest yet."""
        await self._settle(
            keys=[reservation.key, self._costs_key],
            args=[repr(actual - reservation.amount), reservation.route, repr(actual) if finished else "", _COST_TTL_S],
        )
