"""The response cache on Redis: exact-match answers for repeated prompts, with single flight.

A request's session is one of: a hit (the stored answer); a miss that holds the key's single-flight
lease (it computes, then stores or abandons, and the lease goes); a miss without the lease (no-cache,
a wait that ran out, or a holder that gave up); or a bypass (not cacheable, or Redis unreachable or
slow). Identical requests that arrive while a lease is held wait for its answer, bounded by
`cache.single_flight_wait_s` and by their own deadline; when the holder gives up (it failed, or its answer
cannot be kept), they all compute their own at once (router/single_flight.py says why).

Every Redis call is bounded by `cache.timeout_ms`; a failure is a bypass, never a failed request.
Once Redis is judged down (a refused connection, or several timeouts in a row) the cache is skipped
for a moment, then tried again: it recovers by itself.
"""

from __future__ import annotations

import asyncio
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
from router.single_flight import (
    FIRST_POLL_S,
    FOUND,
    HELD_ELSEWHERE,
    LEADER_GAVE_UP,
    LEASE_MS,
    LEASED,
    MAX_POLL_S,
    LeaseScripts,
    LocalFlights,
    keep_lease,
)
from router.tasks import cancel_and_wait

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from router.config import Settings
    from router.state import AppState

logger = logging.getLogger(__name__)

T = TypeVar("T")

DOWN_RETRY_S = 0.5  # once Redis is judged down, requests bypass without trying for this long
# A refused connection means Redis is gone; one timeout may be this process's own busy event loop, so
# only a run of failures with no success between them pauses the cache.
FAILURES_BEFORE_PAUSE = 3
_LOG_EVERY_S = 10.0
_ENTRY_VERSION = 1
_STORABLE_FINISH = frozenset({"stop", "length"})
_REDIS_FAILURES = (RedisError, OSError, TimeoutError)

_MAX_TTL_DIGITS = 12  # more than any ttl allowed has; a longer one is refused as over the limit
_HEADER_HELP = "use no-cache, no-store and ttl=<seconds>, separated by commas"


def _header_seconds(digits: str) -> int:
    # int() refuses more than 4300 digits (ValueError: a 500); a number that long is over any limit anyway.
    significant = digits.lstrip("0") or "0"
    return int(significant) if len(significant) <= _MAX_TTL_DIGITS else 10**_MAX_TTL_DIGITS


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
            fields["ttl_s"] = _header_seconds(directive[4:])
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

    async def hand_off(self) -> None:
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
        """Frees the lease without storing: the requests waiting on it compute their own answers at once.
        A no-op after `store`."""
        if not self._ended:
            self._ended = True
            await self.cache._end(self, None)

    async def hand_off(self) -> None:
        """Frees the lease without storing, for one waiting request to take over (the others wait for it).
        A no-op after `store` or `abandon`."""
        if not self._ended:
            self._ended = True
            await self.cache._end(self, None, tell_waiters=False)


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
        self._scripts = LeaseScripts(redis)
        self._flights = LocalFlights()
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
        found = await self._call(self._scripts.lookup(key, token, lead, ""))
        deadline = time.monotonic() + wait_s
        pause = FIRST_POLL_S
        while lead and found.outcome == HELD_ELSEWHERE:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                # The holder is slow: compute too rather than wait without end; either answer is stored.
                return _Miss(self, key, ttl_ms, "", "wait-expired", storable=True)
            await self._flights.pause(key, min(pause, remaining))
            pause = min(pause * 1.5, MAX_POLL_S)
            # Waits on whoever holds the lease now: a lease that lapsed may have passed to another.
            found = await self._call(self._scripts.lookup(key, token, lead, found.value.decode()))
        if found.outcome == FOUND:
            answer = decode_answer(found.value)
            if answer is not None:
                return _Hit(answer)
            self._log.warning("cache: unreadable entry under %s; it will be recomputed", key)
        if not lead:
            return _Miss(self, key, ttl_ms, "", "no-store", storable=False)
        if found.outcome == LEASED:
            return self._lead(key, ttl_ms, token)
        if found.outcome == LEADER_GAVE_UP:
            # Its upstream failed or its answer cannot be kept: computing at once, beside the others that
            # waited, beats taking the lease in turn and each waiting out the same failure behind the last.
            return _Miss(self, key, ttl_ms, "", "leader-gave-up", storable=True)
        return _Miss(self, key, ttl_ms, "", "unreadable-entry", storable=True)

    def _lead(self, key: str, ttl_ms: int, token: str) -> _Miss:
        session = _Miss(self, key, ttl_ms, token, "", storable=True)
        session.flight = self._flights.begin(key)
        keeper = keep_lease(lambda: self._renew(key, token), self._max_hold_s)
        session.keeper = asyncio.create_task(keeper, name="moa-cache-lease")
        self._keepers.add(session.keeper)
        session.keeper.add_done_callback(self._keepers.discard)
        return session

    async def _renew(self, key: str, token: str) -> bool:
        try:
            return bool(await self._call(self._scripts.renew(key, token)))
        except _REDIS_FAILURES:
            return True  # the lease may lapse: then a waiter computes too, which is safe, only wasteful

    async def _end(self, session: _Miss, entry: bytes | None, tell_waiters: bool = True) -> None:
        if session.keeper is not None:
            session.keeper.cancel()
        try:
            if entry is not None:
                await self._call(self._scripts.store(session.key, entry, session.ttl_ms, session.token))
            elif session.token:
                await self._call(self._scripts.give_up(session.key, session.token, tell_waiters))
        except _REDIS_FAILURES as exc:
            self._failed(exc, "store" if entry is not None else "give-up")
        finally:
            if session.flight is not None:
                self._flights.end(session.key, session.flight)

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


async def start_cache(state: AppState, stack: AsyncExitStack) -> None:
    """Startup step (after the Redis client's): the Redis cache in place of NoCache when enabled."""
    if not state.settings.cache.enabled or state.redis is None:
        return
    cache = ResponseCache(state.redis, state.settings)
    state.cache = cache
    state.components["cache"] = cache
    stack.push_async_callback(cache.close)
