"""The response cache on Redis: exact-match answers for repeated prompts, with single flight.

A request's session is one of: a hit (the stored answer); a miss that holds the key's single-flight
lease (it computes, then stores or abandons, and the lease goes); a miss without the lease (no-cache,
or a wait that ran out); or a bypass (not cacheable, or Redis unreachable or slow). Identical requests
that arrive while a lease is held wait for its answer, bounded by `cache.single_flight_wait_s`; when
the holder fails, they try again and one of them takes the lease. A lease lasts a few seconds and is
renewed while its holder works, so it never outlives a holder that died.

Every Redis call is bounded by `cache.timeout_ms`; a failure is a bypass, never a failed request.
Once Redis is judged down (a refused connection, or several timeouts in a row) the cache is skipped
for a moment, then tried again: it recovers by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import secrets
import time
from collections import Counter
from collections.abc import Awaitable, Mapping, Sequence
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any, TypeVar

import orjson
from pydantic import ValidationError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from router.api.errors import APIError
from router.api.schemas import CacheControl, ChatRequest
from router.cache_key import cache_key
from router.cache_types import BypassSession, CachedAnswer, CacheSession, CacheStatus
from router.prompts import AGGREGATE_INSTRUCTIONS
from router.providers.base import Usage
from router.tasks import cancel_and_wait

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from router.config import Settings
    from router.state import AppState

logger = logging.getLogger(__name__)

T = TypeVar("T")

LEASE_MS = 5000  # renewed every third of it while the holder computes
DOWN_RETRY_S = 0.5  # once Redis is judged down, requests bypass without trying for this long
# A refused connection means Redis is gone; one timeout may be this process's own busy event loop, so
# only a run of failures with no success between them pauses the cache.
FAILURES_BEFORE_PAUSE = 3
_FIRST_POLL_S, _MAX_POLL_S = 0.005, 0.05
_LOG_EVERY_S = 10.0
_ENTRY_VERSION = 1
_STORABLE_FINISH = frozenset({"stop", "length"})
_REDIS_FAILURES = (RedisError, OSError, TimeoutError)

# The answer when there is one; otherwise, when asked (ARGV[3] = "1"), the lease if it is free.
_LOOKUP_LUA = """
local value = redis.call('GET', KEYS[1])
if value then return {1, value} end
if ARGV[3] == '1' and redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then return {2, ''} end
return {0, ''}
"""
# The entry is written before the lease goes, so a waiter never sees neither.
_STORE_LUA = """
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
if ARGV[3] ~= '' and redis.call('GET', KEYS[2]) == ARGV[3] then redis.call('DEL', KEYS[2]) end
return 1
"""
_RELEASE_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
_RENEW_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""

_FOUND, _LEASED, _HELD_ELSEWHERE = 1, 2, 0
_HEADER_HELP = "use no-cache, no-store and ttl=<seconds>, separated by commas"


def request_controls(chat: ChatRequest, headers: Mapping[str, str]) -> CacheControl:
    """The request's cache controls: the body's `cache` field, then the `x-moa-cache-control` and
    `x-moa-cache-namespace` headers (flags add up; the header's ttl and namespace win)."""
    body = chat.cache or CacheControl()
    directives, namespace = headers.get("x-moa-cache-control"), headers.get("x-moa-cache-namespace")
    if directives is None and namespace is None:
        return body
    fields: dict[str, Any] = body.model_dump()
    for part in (directives or "").split(","):
        directive = part.strip().lower()
        if directive in ("no-cache", "no-store"):
            fields[directive.replace("-", "_")] = True
        elif directive.startswith("ttl=") and directive[4:].isascii() and directive[4:].isdigit():  # not "²"
            fields["ttl_s"] = int(directive[4:])
        elif directive:
            raise APIError(
                400, f"x-moa-cache-control: unknown directive {part.strip()!r}; {_HEADER_HELP}",
                "invalid_cache_control", "x-moa-cache-control",
            )  # fmt: skip
    if namespace is not None:
        fields["namespace"] = namespace.strip()
    try:
        return CacheControl.model_validate(fields)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = "x-moa-cache-namespace" if error["loc"][0] == "namespace" else "x-moa-cache-control"
        raise APIError(400, f"{where}: {error['msg']}", "invalid_cache_control", where) from exc


def is_deterministic(chat: ChatRequest) -> bool:
    return chat.temperature == 0 or chat.seed is not None


def encode_answer(answer: CachedAnswer) -> bytes:
    usage = answer.usage
    return orjson.dumps(
        [_ENTRY_VERSION, answer.text, answer.finish_reason, usage.prompt_tokens, usage.completion_tokens,
         answer.cost_usd, answer.model, answer.route]
    )  # fmt: skip


def decode_answer(raw: bytes) -> CachedAnswer | None:
    """The stored answer, or None for an entry this version cannot read (it is then recomputed)."""
    try:
        version, text, finish, prompt_tokens, completion_tokens, cost, model, route = orjson.loads(raw)
    except (orjson.JSONDecodeError, ValueError, TypeError):
        return None
    if version != _ENTRY_VERSION or not isinstance(text, str):
        return None
    return CachedAnswer(text, finish, Usage(prompt_tokens, completion_tokens), cost, model, route)


class _ThrottledLog:
    """At most one warning per interval, saying how many were held back since the last one."""

    def __init__(self, every_s: float) -> None:
        self._every_s = every_s
        self._next = 0.0
        self._held = 0

    def warning(self, message: str, *args: object) -> None:
        now = time.monotonic()
        if now < self._next:
            self._held += 1
            return
        self._next, held, self._held = now + self._every_s, self._held, 0
        logger.warning(message + " (%d similar warnings held back)", *args, held)


class _Hit:
    status: CacheStatus = "hit"
    detail = ""

    def __init__(self, answer: CachedAnswer) -> None:
        self.answer: CachedAnswer | None = answer

    async def store(self, answer: CachedAnswer) -> None:
        return None

    async def abandon(self) -> None:
        return None


class _Miss:
    """A miss: the caller computes the answer. With a lease token it is the key's single flight."""

    status: CacheStatus = "miss"
    answer: CachedAnswer | None = None

    def __init__(self, cache: ResponseCache, key: str, ttl_ms: int, token: str, detail: str, storable: bool) -> None:
        self.cache, self.key, self.ttl_ms, self.token = cache, key, ttl_ms, token
        self.detail, self.storable = detail, storable
        self.flight: asyncio.Event | None = None
        self.keeper: asyncio.Task[None] | None = None
        self._ended = False

    async def store(self, answer: CachedAnswer) -> None:
        """Stores a finished answer (and frees the lease); a failed or cut-off one is only abandoned."""
        if self._ended:
            return
        if not self.storable or answer.finish_reason not in _STORABLE_FINISH:
            await self.abandon()
            return
        self._ended = True
        await self.cache._end(self, encode_answer(answer))

    async def abandon(self) -> None:
        """Frees the lease without storing, so waiters try for themselves. A no-op after `store`."""
        if not self._ended:
            self._ended = True
            await self.cache._end(self, None)


class ResponseCache:
    """`CacheFront` on Redis. Never raises for a Redis problem: the request bypasses the cache."""

    def __init__(self, redis: Redis, settings: Settings) -> None:
        self._redis = redis
        self._settings = settings.cache
        self._prefix = settings.redis_prefix
        self._timeout_s = settings.cache.timeout_ms / 1000
        # A holder stops renewing its lease after the longest a request may take, whatever happens.
        self._max_hold_s = settings.limits.request_timeout_s + LEASE_MS / 1000
        prompt = hashlib.sha256(AGGREGATE_INSTRUCTIONS.encode()).hexdigest()[:16]
        self._mixture_settings = {
            **settings.mixture.model_dump(exclude={"proposer_deadline_s", "quorum"}),
            "aggregate_prompt": prompt,
        }
        self._lookup = redis.register_script(_LOOKUP_LUA)
        self._store = redis.register_script(_STORE_LUA)
        self._release = redis.register_script(_RELEASE_LUA)
        self._renew = redis.register_script(_RENEW_LUA)
        self._flights: dict[str, asyncio.Event] = {}  # leases held in this process, for local waiters
        self._keepers: set[asyncio.Task[None]] = set()
        self._down_until = 0.0
        self._down_reason = ""
        self._failures_in_row = 0
        self._log = _ThrottledLog(_LOG_EVERY_S)
        self.counts: Counter[str] = Counter()  # statuses and failure kinds, for metrics and tests

    async def begin(
        self,
        tenant: str,
        chat: ChatRequest,
        route: str,
        models: Sequence[str],
        headers: Mapping[str, str],
        wait_s: float | None = None,
    ) -> CacheSession:
        controls = request_controls(chat, headers)
        wait = self._settings.single_flight_wait_s
        if wait_s is not None:
            wait = max(0.0, min(wait, wait_s))
        session = await self._begin(tenant, chat, route, models, controls, wait)
        self.counts[session.status] += 1
        return session

    async def _begin(
        self, tenant: str, chat: ChatRequest, route: str, models: Sequence[str], controls: CacheControl, wait_s: float
    ) -> CacheSession:
        if self._settings.deterministic_only and not is_deterministic(chat):
            return BypassSession("not-deterministic")
        if controls.no_cache and controls.no_store:
            return BypassSession("no-cache,no-store")
        if time.monotonic() < self._down_until:
            return BypassSession(self._down_reason)
        route_settings = self._mixture_settings if route == "mixture" else None
        key = cache_key(self._prefix, tenant, controls.namespace or "", chat, route, models, route_settings)
        ttl_ms = self._ttl_s(controls.ttl_s) * 1000
        if controls.no_cache:
            return _Miss(self, key, ttl_ms, "", "no-cache", storable=True)
        try:
            return await self._lookup_or_wait(key, ttl_ms, not controls.no_store, wait_s)
        except _REDIS_FAILURES as exc:
            return BypassSession(self._failed(exc, "lookup"))

    def _ttl_s(self, asked_s: int | None) -> int:
        """The request's TTL, within the operator's cap; the configured one when it asks none."""
        if asked_s is None:
            return self._settings.ttl_s
        cap = self._settings.ttl_s if self._settings.max_ttl_s is None else self._settings.max_ttl_s
        return min(asked_s, cap)

    async def _lookup_or_wait(self, key: str, ttl_ms: int, lead: bool, wait_s: float) -> CacheSession:
        token = secrets.token_hex(8)
        outcome = await self._try(key, token, lead)
        if not lead and isinstance(outcome, int):
            return _Miss(self, key, ttl_ms, "", "no-store", storable=False)
        deadline = time.monotonic() + wait_s
        pause = _FIRST_POLL_S
        while outcome == _HELD_ELSEWHERE:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                # The holder is slow: compute too rather than wait without end; either answer is stored.
                return _Miss(self, key, ttl_ms, "", "wait-expired", storable=True)
            await self._pause(key, min(pause, remaining))
            pause = min(pause * 1.5, _MAX_POLL_S)
            outcome = await self._try(key, token, lead)
        if isinstance(outcome, CachedAnswer):
            return _Hit(outcome)
        if outcome == _LEASED:
            return self._lead(key, ttl_ms, token)
        return _Miss(self, key, ttl_ms, "", "unreadable-entry", storable=True)

    async def _try(self, key: str, token: str, lead: bool) -> CachedAnswer | int:
        """The answer, or whether this request now holds the lease (`_LEASED`) or another does."""
        found, raw = await self._call(
            self._lookup(keys=[key, _lease_key(key)], args=[token, LEASE_MS, "1" if lead else "0"])
        )
        if found != _FOUND:
            return int(found)
        answer = decode_answer(raw)
        if answer is None:
            self._log.warning("cache: unreadable entry under %s; it will be recomputed", key)
            return -1
        return answer

    async def _pause(self, key: str, seconds: float) -> None:
        """Sleeps between polls; wakes at once when a lease holder in this process finishes."""
        flight = self._flights.get(key)
        if flight is None:
            await asyncio.sleep(seconds)
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(flight.wait(), seconds)

    def _lead(self, key: str, ttl_ms: int, token: str) -> _Miss:
        session = _Miss(self, key, ttl_ms, token, "", storable=True)
        session.flight = self._flights[key] = asyncio.Event()
        session.keeper = asyncio.create_task(self._keep_lease(key, token), name="moa-cache-lease")
        self._keepers.add(session.keeper)
        session.keeper.add_done_callback(self._keepers.discard)
        return session

    async def _keep_lease(self, key: str, token: str) -> None:
        give_up = time.monotonic() + self._max_hold_s
        while time.monotonic() < give_up:
            await asyncio.sleep(LEASE_MS / 3000)
            try:
                renewed = await self._call(self._renew(keys=[_lease_key(key)], args=[token, LEASE_MS]))
            except _REDIS_FAILURES:
                continue  # the lease may lapse: then a waiter computes too, which is safe, only wasteful
            if not renewed:
                return

    async def _end(self, session: _Miss, entry: bytes | None) -> None:
        if session.keeper is not None:
            session.keeper.cancel()
        lease = _lease_key(session.key)
        try:
            if entry is not None:
                await self._call(self._store(keys=[session.key, lease], args=[entry, session.ttl_ms, session.token]))
            elif session.token:
                await self._call(self._release(keys=[lease], args=[session.token]))
        except _REDIS_FAILURES as exc:
            self._failed(exc, "store" if entry is not None else "release")
        finally:
            if session.flight is not None:
                session.flight.set()
                if self._flights.get(session.key) is session.flight:
                    del self._flights[session.key]

    async def _call(self, operation: Awaitable[T]) -> T:
        async with asyncio.timeout(self._timeout_s):
            result = await operation
        self._failures_in_row = 0
        if self._down_reason:
            logger.info("cache: Redis answers again; the cache is back in use")
            self._down_reason = ""
        return result

    def _failed(self, exc: BaseException, during: str) -> str:
        timed_out = isinstance(exc, TimeoutError | RedisTimeoutError)
        reason = "redis-timeout" if timed_out else "redis-unavailable"
        self.counts[reason] += 1
        self._failures_in_row += 1
        if not timed_out or self._failures_in_row >= FAILURES_BEFORE_PAUSE:
            self._down_reason = reason
            self._down_until = time.monotonic() + DOWN_RETRY_S
        self._log.warning("cache: Redis %s failed (%s: %s); requests bypass the cache", during, reason, exc)
        return reason

    async def close(self) -> None:
        """Stops renewing leases (they then lapse by themselves)."""
        await cancel_and_wait(*self._keepers)


def _lease_key(key: str) -> str:
    return f"{key}:lease"


async def start_cache(state: AppState, stack: AsyncExitStack) -> None:
    """Startup step (after the Redis client's): the Redis cache in place of NoCache when enabled."""
    if not state.settings.cache.enabled or state.redis is None:
        return
    cache = ResponseCache(state.redis, state.settings)
    state.cache = cache
    state.components["cache"] = cache
    stack.push_async_callback(cache.close)
