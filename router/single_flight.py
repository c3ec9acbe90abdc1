"""Single flight on Redis: of identical requests (one cache key), one computes the answer, the others wait.

The one computing holds the key's lease: a Redis key holding a random token, a few seconds long and renewed
while its holder works, so it never outlives a holder that died. The holder ends by storing the answer (the
entry is written before the lease goes, so a waiter never sees neither) or by giving up: its upstream failed
or timed out, or its answer cannot be kept (a stand-in model's, a cut-off one).

Giving up leaves a marker for a few seconds that names the lease it ends. The requests that were waiting on
that lease then compute their own answers at once, side by side, as they would without a cache: taking the
lease in turn made each run the failing call again behind the one before it (N requests, N timeouts for the
last). The marker carries no answer (a request released by it computes its own, or fails on its own), and it
releases only the waiters of that one lease: a request arriving later leads afresh. Both keys sit beside the
entry's, so they are as tenant- and namespace-scoped as the entry.

A holder whose own client left (nothing failed) hands the lease off instead, without a marker: one waiter
takes it and computes, the others wait for that one. Releasing all of them would run a mixture once per
waiter for an answer one run gives.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from redis.asyncio import Redis

LEASE_MS = 5000  # renewed every third of it while the holder computes
# Waiters poll every FIRST_POLL_S..MAX_POLL_S (those in the holder's process wake at once): a marker that
# lives this long is seen by every waiter of its lease; one that missed it anyway takes the lease, as before.
GAVE_UP_MS = 5000
FIRST_POLL_S, MAX_POLL_S = 0.005, 0.05

# What a lookup found, in the order it looks.
FOUND, LEASED, HELD_ELSEWHERE, LEADER_GAVE_UP = 1, 2, 0, 3

# KEYS: entry, lease, and (while waiting) the gave-up marker of the lease waited on. ARGV: token, lease
# ms, "1" to take a free lease. Returns the answer; or that the lease waited on was given up; or that this
# request took the lease; or that another holds it, and its token.
_LOOKUP_LUA = """
local value = redis.call('GET', KEYS[1])
if value then return {1, value} end
if KEYS[3] and redis.call('EXISTS', KEYS[3]) == 1 then return {3, ''} end
if ARGV[3] == '1' and redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then return {2, ''} end
return {0, redis.call('GET', KEYS[2]) or ''}
"""
_STORE_LUA = """
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
if ARGV[3] ~= '' and redis.call('GET', KEYS[2]) == ARGV[3] then redis.call('DEL', KEYS[2]) end
return 1
"""
# The marker is written before the lease goes, so a waiter never finds the lease free without it. Written
# even when the lease lapsed meanwhile: it concerns only the requests still waiting on this token. ARGV[3]
# "0" (a hand-off) frees the lease without it.
_GIVE_UP_LUA = """
if ARGV[3] == '1' then redis.call('SET', KEYS[2], '1', 'PX', ARGV[2]) end
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
_RENEW_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""


class Lookup(NamedTuple):
    outcome: int  # FOUND, LEASED, HELD_ELSEWHERE or LEADER_GAVE_UP
    value: bytes  # FOUND: the stored entry; HELD_ELSEWHERE: the holder's token; otherwise empty


def lease_key(key: str) -> str:
    return f"{key}:lease"


def gave_up_key(key: str, token: str) -> str:
    return f"{key}:gave-up:{token}"


class LeaseScripts:
    """The single-flight operations on one Redis client. Each returns the pending call, for the cache to
    bound in time and count as a success or failure of Redis."""

    def __init__(self, redis: Redis) -> None:
        self._lookup = redis.register_script(_LOOKUP_LUA)
        self._store = redis.register_script(_STORE_LUA)
        self._give_up = redis.register_script(_GIVE_UP_LUA)
        self._renew = redis.register_script(_RENEW_LUA)

    async def lookup(self, key: str, token: str, lead: bool, waited_on: str) -> Lookup:
        """The entry; else, when `lead`, the lease if free. `waited_on`: the holder this request waits on."""
        keys = [key, lease_key(key)] + ([gave_up_key(key, waited_on)] if waited_on else [])
        outcome, value = await self._lookup(keys=keys, args=[token, LEASE_MS, "1" if lead else "0"])
        return Lookup(int(outcome), bytes(value))

    def store(self, key: str, entry: bytes, ttl_ms: int, token: str) -> Awaitable[Any]:
        """Writes the entry, then frees the lease if `token` still holds it."""
        return self._store(keys=[key, lease_key(key)], args=[entry, ttl_ms, token])

    def give_up(self, key: str, token: str, tell_waiters: bool = True) -> Awaitable[Any]:
        """Frees the lease without an answer, telling the requests waiting on it to compute their own; or,
        without `tell_waiters`, leaving it for one of them to take (a hand-off: the others wait for that one)."""
        keys = [lease_key(key), gave_up_key(key, token)]
        return self._give_up(keys=keys, args=[token, GAVE_UP_MS, "1" if tell_waiters else "0"])

    def renew(self, key: str, token: str) -> Awaitable[Any]:
        return self._renew(keys=[lease_key(key)], args=[token, LEASE_MS])


async def keep_lease(renew: Callable[[], Awaitable[bool]], hold_s: float) -> None:
    """Renews a lease until it is lost or `hold_s` has passed (the holder is then presumed gone).
    `renew` returns whether the lease is still held, True when Redis could not say."""
    give_up = time.monotonic() + hold_s
    while time.monotonic() < give_up:
        await asyncio.sleep(LEASE_MS / 3000)
        if not await renew():
            return


class LocalFlights:
    """The leases held in this process, so that its own waiters wake as soon as a holder ends."""

    def __init__(self) -> None:
        self._ends: dict[str, asyncio.Event] = {}

    def begin(self, key: str) -> asyncio.Event:
        ended = self._ends[key] = asyncio.Event()
        return ended

    def end(self, key: str, ended: asyncio.Event) -> None:
        ended.set()
        if self._ends.get(key) is ended:
            del self._ends[key]

    async def pause(self, key: str, seconds: float) -> None:
        """Sleeps between polls; wakes at once when a lease holder in this process ends."""
        ended = self._ends.get(key)
        if ended is None:
            await asyncio.sleep(seconds)
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(ended.wait(), seconds)
