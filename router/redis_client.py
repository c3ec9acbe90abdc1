"""The service's one Redis client: connected at startup to REDIS_URL, or to an embedded redis-server
started under the data directory when it is unset. Every Redis user (cache, outcome log, stats, rate
limits) shares this client and its connection pool through `state.redis`."""

from __future__ import annotations

import asyncio
import fcntl
import logging
from contextlib import AsyncExitStack
from pathlib import Path
from typing import IO, TYPE_CHECKING

from router.redis_server import EmbeddedRedis

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from router.config import Settings
    from router.state import AppState

logger = logging.getLogger(__name__)

MAX_CONNECTIONS = 128
# The socket timeout is a backstop for every user of the client; the cache bounds each lookup more
# tightly itself (settings.cache.timeout_ms). Batched writes (outcome log) need more than one lookup.
_MIN_SOCKET_TIMEOUT_S = 0.5
_SOCKET_TIMEOUT_FACTOR = 10


def socket_timeout_s(settings: Settings) -> float:
    return max(_MIN_SOCKET_TIMEOUT_S, _SOCKET_TIMEOUT_FACTOR * settings.cache.timeout_ms / 1000)


def make_redis_client(url: str, timeout_s: float) -> Redis:
    """A client with one bounded connection pool. One immediate retry, on a connection error only: it
    replaces a pooled connection that a Redis restart closed; redis-py's default (10 retries with
    backoff, up to 1 s apart) would hold requests up for seconds while Redis is down. Never on a
    timeout: Redis may already have applied the command (or the whole pipeline), so sending it again
    would apply a write twice."""
    from redis.asyncio import BlockingConnectionPool, Redis
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff
    from redis.exceptions import ConnectionError as RedisConnectionError

    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=MAX_CONNECTIONS,
        timeout=timeout_s,  # the wait for a free pooled connection
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
    )
    # The service reads bytes everywhere (cached answers, Lua replies); a URL's `?decode_responses=true`
    # would override the default and break the cache, stats and budget at their first reply.
    if pool.connection_kwargs.pop("decode_responses", False):
        logger.warning("REDIS_URL asks for decode_responses: ignored (the service decodes replies itself)")
    return Redis.from_pool(pool)


def claim_directory(directory: Path) -> IO[bytes]:
    """An exclusive lock on the embedded Redis's directory, held while the server runs: two servers on
    one append-only file would corrupt it (e.g. several workers started without REDIS_URL)."""
    directory.mkdir(parents=True, exist_ok=True)
    handle = (directory / "owner.lock").open("wb")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        handle.close()
        raise RuntimeError(
            f"another process already runs the embedded Redis in {directory}; "
            "to run several workers or services, run one Redis and set REDIS_URL"
        ) from exc
    return handle


async def connect_redis(state: AppState, stack: AsyncExitStack) -> None:
    """Startup step: sets `state.redis`. Does not wait for Redis to answer: an unreachable Redis is a
    degraded service (cache bypass), not a failed start (later steps' first calls, such as reading the
    prompt hash key, each wait up to the socket timeout for it, then go on without it)."""
    settings = state.settings
    url = settings.redis_url
    if url is None:
        server = EmbeddedRedis(settings.data_dir / "redis", persist=True)
        stack.callback(claim_directory(server.directory).close)
        url = await asyncio.to_thread(server.start)
        stack.callback(server.stop)  # registered before the client, so it runs after the client is closed
        logger.info("embedded Redis started at %s with its data under %s", url, server.directory)
    client = make_redis_client(url, socket_timeout_s(settings))
    stack.push_async_callback(client.aclose)
    state.redis = client
