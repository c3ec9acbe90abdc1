"""Per-tenant rate limits: requests and tokens per minute, counted in Redis so that every replica shares
them. Over a limit, a request gets a 429 in OpenAI's error shape with `retry-after`.

Each limit is a sliding-window counter: the current minute's count plus the previous minute's, weighted
by how much of it still lies within the last 60 s. Admitting a request is one script call to Redis;
tokens are charged after the request from its event (the upstream usage of all its calls, so a mixture
uses more of the quota than a cheap answer) to the minute the request finished in, in batches off the
request path. A request is admitted while the tokens used in the window are under the limit. When Redis
is down or slow, requests are let through (fail open): rate limits protect the budget, they must not
take the service down with Redis. Windows are minutes of the replicas' clocks, which should be kept in
sync (NTP).

A batch of charges that failed is sent again, but a charge whose reply was lost may have been applied:
each carries this replica's id and a sequence number, and Redis applies a charge only when its number
is above the last one it applied for that replica, tenant and window (charges are sent in order).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import uuid
from collections import defaultdict, deque
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from redis.exceptions import RedisError

from router.api.errors import APIError
from router.config import AuthSettings
from router.events import RequestEvent
from router.tasks import cancel_and_wait

if TYPE_CHECKING:
    from router.state import AppState

logger = logging.getLogger(__name__)

WINDOW_S = 60
COMPONENT = "ratelimit"  # its name in `state.components`
_KEY_TTL_S = 3 * WINDOW_S
_MAX_PENDING_CHARGES = 100_000
_FLUSH_INTERVAL_S = 0.1
_REDIS_FAILURES = (RedisError, OSError, TimeoutError)
_LOG_INTERVAL_S = 30.0

# KEYS: requests now, requests in the previous window, tokens now, tokens previous.
# ARGV: requests per minute (0: none), tokens per minute (0: none), weight of the previous window, key TTL.
# Returns {verdict (0 admitted, 1 requests, 2 tokens), requests now, requests prev, tokens now, tokens prev}.
_ADMIT_LUA = """
local rpm, tpm, weight = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local req_now = tonumber(redis.call('GET', KEYS[1]) or '0')
local req_prev = tonumber(redis.call('GET', KEYS[2]) or '0')
local tok_now = tonumber(redis.call('GET', KEYS[3]) or '0')
local tok_prev = tonumber(redis.call('GET', KEYS[4]) or '0')
if rpm > 0 and req_prev * weight + req_now + 1 > rpm then
  return {1, req_now, req_prev, tok_now, tok_prev}
end
if tpm > 0 and tok_prev * weight + tok_now >= tpm then
  return {2, req_now, req_prev, tok_now, tok_prev}
end
req_now = redis.call('INCR', KEYS[1])
redis.call('EXPIRE', KEYS[1], ARGV[4])
return {0, req_now, req_prev, tok_now, tok_prev}
"""


# KEYS: the window's token count, the last charge applied to it per replica (a hash).
# ARGV: replica id, charge number, tokens, key TTL. A charge sent again after a lost reply is skipped.
_CHARGE_LUA = """
local last = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0')
if tonumber(ARGV[2]) > last then
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
  redis.call('INCRBY', KEYS[1], ARGV[3])
end
redis.call('EXPIRE', KEYS[1], ARGV[4])
redis.call('EXPIRE', KEYS[2], ARGV[4])
return 0
"""


@dataclass(frozen=True, slots=True)
class Limits:
    requests_per_minute: int | None
    tokens_per_minute: int | None

    @property
    def any(self) -> bool:
        return self.requests_per_minute is not None or self.tokens_per_minute is not None


def limits_by_tenant(settings: AuthSettings) -> tuple[Limits, dict[str, Limits]]:
    """The default limits and each tenant's own; a tenant's unset field takes the default."""
    default = Limits(settings.requests_per_minute, settings.tokens_per_minute)
    own = {
        entry.tenant: Limits(
            entry.requests_per_minute or default.requests_per_minute,
            entry.tokens_per_minute or default.tokens_per_minute,
        )
        for entry in settings.tenant_limits
    }
    return default, own


def seconds_until_room(now_count: float, prev_count: float, elapsed_s: float, room: float) -> float:
    """How long until `prev * weight + now <= room`, as the window slides on without new traffic."""
    if now_count > room:
        # Only the next window helps: there this window's count is the previous one and fades out.
        return (WINDOW_S - elapsed_s) + WINDOW_S * (1 - max(room, 0.0) / now_count)
    if prev_count <= 0:
        return 0.0
    return max(0.0, WINDOW_S * (1 - (room - now_count) / prev_count) - elapsed_s)


def window_key(prefix: str, tenant: str, kind: str, window: int) -> str:
    # The braces make every key of one tenant land in one Redis Cluster slot, as a script requires. The
    # "t:" keeps the hash tag non-empty whatever the name: a tag ends at the first "}", so a tenant named
    # "}x" would otherwise have an empty tag, which Redis ignores (each key hashed whole, slots apart).
    return f"{prefix}:rl:{{t:{tenant}}}:{kind}:{window}"


class RateLimiter:
    """Admits requests against the tenant's limits; charges used tokens later (it is an EventSink)."""

    def __init__(
        self,
        redis: Callable[[], Any],
        prefix: str,
        settings: AuthSettings,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._redis = redis  # read at each use: the client is made by another startup step
        self._prefix = prefix
        self._default, self._own = limits_by_tenant(settings)
        self._timeout_s = settings.rate_limit_timeout_ms / 1000
        self._clock = clock
        self._script: Any = None
        self._script_client: Any = None
        # (tenant, window, tokens, charge number: 0 until first sent)
        self._pending: deque[tuple[str, int, int, int]] = deque(maxlen=_MAX_PENDING_CHARGES)
        self._replica = uuid.uuid4().hex[:16]
        self._charges = 0  # the last charge number given out
        self._failing = False
        self._failures_unlogged = 0
        self._next_log_at = 0.0
        self.failed_open = 0  # requests let through because Redis did not answer
        self.limited = 0

    def limits_for(self, tenant: str) -> Limits:
        return self._own.get(tenant, self._default)

    def _admit_script(self, client: Any) -> Any:
        if self._script is None or self._script_client is not client:
            self._script, self._script_client = client.register_script(_ADMIT_LUA), client
        return self._script

    def _note_redis_failure(self, exc: BaseException) -> None:
        self._failing = True
        self._failures_unlogged += 1
        now = time.monotonic()
        if now >= self._next_log_at:  # at most one line per interval, however flaky Redis is
            logger.warning(
                "rate limits unavailable (%s, %d times since the last such line): requests are let through",
                type(exc).__name__,
                self._failures_unlogged,
            )
            self._failures_unlogged = 0
            self._next_log_at = now + _LOG_INTERVAL_S

    def _note_redis_ok(self) -> None:
        if self._failing:
            logger.info("rate limits enforced again: Redis answers")
        self._failing = False

    async def admit(self, tenant: str) -> None:
        """Raises APIError 429 (with `retry-after`) when the tenant is over one of its limits."""
        limits = self.limits_for(tenant)
        client = self._redis()
        if not limits.any or client is None:
            return
        now = self._clock()
        window = int(now // WINDOW_S)
        elapsed = now - window * WINDOW_S
        # Rounded down, so that a client waiting exactly its retry-after is not refused by a rounding error.
        weight = math.floor((1 - elapsed / WINDOW_S) * 1e6) / 1e6
        keys = [window_key(self._prefix, tenant, kind, w) for kind in ("req", "tok") for w in (window, window - 1)]
        args = [limits.requests_per_minute or 0, limits.tokens_per_minute or 0, f"{weight:.6f}", _KEY_TTL_S]
        try:
            reply = await asyncio.wait_for(self._admit_script(client)(keys=keys, args=args), self._timeout_s)
        except _REDIS_FAILURES as exc:
            self.failed_open += 1
            self._note_redis_failure(exc)
            return
        self._note_redis_ok()
        verdict, req_now, req_prev, tok_now, tok_prev = (int(v) for v in reply)
        if verdict == 0:
            return
        self.limited += 1
        if verdict == 1:
            limit = limits.requests_per_minute or 0
            wait = seconds_until_room(req_now, req_prev, elapsed, limit - 1)
            what = f"{limit} requests per minute"
        else:
            limit = limits.tokens_per_minute or 0
            wait = seconds_until_room(tok_now, tok_prev, elapsed, limit - 1)
            what = f"{limit} tokens per minute"
        retry_after = max(1, math.ceil(wait))
        raise APIError(
            429,
            f"rate limit reached for this API key: {what}; retry after {retry_after} s",
            "rate_limit_exceeded",
            headers={"retry-after": str(retry_after)},
        )

    def record(self, event: RequestEvent) -> None:
        """EventSink: queue the request's tokens against its tenant's window (never blocks). The window is
        the current minute, in which the request finished: a long mixture run's tokens charged to the
        minute it started in could land in a window that no longer counts."""
        tokens = event.usage.total_tokens
        if tokens <= 0 or not event.tenant or self.limits_for(event.tenant).tokens_per_minute is None:
            return
        self._pending.append((event.tenant, int(self._clock() // WINDOW_S), tokens, 0))

    async def flush(self) -> None:
        """Write the queued token charges, summed per tenant and window, in one pipeline."""
        client = self._redis()
        if not self._pending or client is None:
            return
        self._charges += 1
        oldest = int(self._clock() // WINDOW_S) - 1  # older windows no longer count
        batch: dict[tuple[str, int, int], int] = defaultdict(int)
        while self._pending:
            tenant, window, tokens, charge = self._pending.popleft()
            if window >= oldest:
                batch[(tenant, window, charge or self._charges)] += tokens
        if not batch:
            return
        pipe = client.pipeline(transaction=False)
        for (tenant, window, charge), tokens in batch.items():
            keys = (window_key(self._prefix, tenant, "tok", window), window_key(self._prefix, tenant, "tokseq", window))
            pipe.eval(_CHARGE_LUA, 2, *keys, self._replica, charge, tokens, _KEY_TTL_S)
        try:
            await asyncio.wait_for(pipe.execute(), max(self._timeout_s, 1.0))
        except _REDIS_FAILURES as exc:
            self._note_redis_failure(exc)
            # Put the charges back, numbered and in order, so a short outage loses none of them and one
            # that Redis applied although its reply was lost is not applied again.
            self._pending.extendleft(
                (tenant, window, tokens, charge) for (tenant, window, charge), tokens in reversed(batch.items())
            )
            return
        self._note_redis_ok()

    async def run(self) -> None:
        while True:
            await asyncio.sleep(_FLUSH_INTERVAL_S)
            await self.flush()


def rate_limiter(state: AppState) -> RateLimiter | None:
    limiter = state.components.get(COMPONENT)
    return limiter if isinstance(limiter, RateLimiter) else None


async def check_rate_limit(state: AppState, tenant: str) -> None:
    """The request path's check, right after the tenant is known; a no-op when no limit is configured."""
    limiter = rate_limiter(state)
    if limiter is not None:
        await limiter.admit(tenant)


async def start_rate_limiter(state: AppState, stack: AsyncExitStack) -> None:
    """Startup step: installs the limiter when the config sets any limit."""
    settings = state.settings.auth
    limiter = RateLimiter(lambda: state.redis, state.settings.redis_prefix, settings)
    if not limiter.limits_for("").any and not any(
        limiter.limits_for(entry.tenant).any for entry in settings.tenant_limits
    ):
        return
    state.components[COMPONENT] = limiter
    state.sinks.append(limiter)
    task = asyncio.create_task(limiter.run(), name="moa-ratelimit-flush")

    async def stop() -> None:
        await cancel_and_wait(task)
        await limiter.flush()  # the last requests' tokens (runs before the Redis client closes)

    stack.push_async_callback(stop)
