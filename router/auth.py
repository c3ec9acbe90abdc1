"""Client API keys -> tenants, and the admin key. Keys are kept only as SHA-256 hashes.

Keys come from the config file (`auth.keys`) and from Redis: the hash `<prefix>:auth:keys` maps a key's
SHA-256 (hex) to its tenant, so that keys can be issued and revoked on a running fleet:

    redis-cli HSET moa:auth:keys "$(printf %s "$KEY" | sha256sum | cut -d' ' -f1)" tenant-a

Every replica re-reads that hash every `auth.redis_refresh_s` seconds; checking a key never waits on
Redis, and a Redis outage keeps the keys last read.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import re
from collections.abc import Mapping
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any

from redis.exceptions import RedisError

from router.api.errors import APIError
from router.config import AuthSettings
from router.tasks import cancel_and_wait

if TYPE_CHECKING:
    from router.state import AppState

logger = logging.getLogger(__name__)

OPEN_TENANT = "open"
_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
_TENANT_MAX_LEN = 64


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def redis_keys_name(prefix: str) -> str:
    return f"{prefix}:auth:keys"


def bearer_token(headers: Mapping[str, str]) -> str | None:
    value = headers.get("authorization", "")
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def _decode(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def parse_redis_keys(raw: Mapping[Any, Any]) -> dict[str, str]:
    """The usable entries of the Redis key hash; malformed ones are skipped (and counted in the log)."""
    keys: dict[str, str] = {}
    for digest, tenant in raw.items():
        digest_text, tenant_text = _decode(digest).strip().lower(), _decode(tenant).strip()
        if _SHA256_HEX.match(digest_text) and 0 < len(tenant_text) <= _TENANT_MAX_LEN:
            keys[digest_text] = tenant_text
    if len(keys) != len(raw):
        logger.warning("ignored %d malformed entries of the Redis key hash", len(raw) - len(keys))
    return keys


class Authenticator:
    """Resolves the caller's tenant and checks the admin key. In open mode (the demo) any bearer token, or
    none, is accepted on the client API (an issued key still names its own tenant; any other caller is the
    open tenant), and on the admin endpoints too unless an admin key is configured."""

    def __init__(self, settings: AuthSettings, open_mode: bool = False) -> None:
        self._open = open_mode or settings.open
        self._config_keys = {entry.key_sha256: entry.tenant for entry in settings.keys}
        self._tenants_by_digest = dict(self._config_keys)
        self._admin_hash = settings.admin_key_sha256
        if self._open and self._admin_hash is not None:
            logger.warning(
                "auth is OPEN for the client API: any caller is accepted (demo mode or auth.open in the config); "
                "the admin endpoints (/v1/stats, the dashboard) still need the admin key"
            )
        elif self._open:
            logger.warning(
                "auth is OPEN: any caller is accepted (demo mode or auth.open in the config), on the client API "
                "and, as no admin key is configured, on the admin endpoints (/v1/stats, the dashboard)"
            )
        else:
            if not self._config_keys and not settings.redis_keys:
                logger.warning("auth has no client keys: every request will be refused with 401")
            if self._admin_hash is None:
                logger.info("auth has no admin key: /v1/stats and the dashboard refuse every caller")

    @property
    def is_open(self) -> bool:
        return self._open

    def set_redis_keys(self, keys: Mapping[str, str]) -> None:
        """Replace the keys read from Redis (config keys stay); a key removed there is revoked here."""
        # One new table, swapped in whole: a request never sees it half built. A config entry wins over a
        # Redis entry for the same key.
        self._tenants_by_digest = {**keys, **self._config_keys}

    def tenant(self, headers: Mapping[str, str]) -> str:
        token = bearer_token(headers)
        if self._open:
            # A key that was issued keeps its tenant (its cache, budget and limits, e.g. while keys are
            # rolled out to clients); anyone else shares the open tenant.
            known = None if token is None else self._client_tenant(hash_key(token))
            return OPEN_TENANT if known is None else known
        if token is None:
            raise APIError(401, "missing API key: send 'Authorization: Bearer <key>'", "missing_api_key")
        found = self._client_tenant(hash_key(token))
        if found is None:
            raise APIError(401, "invalid API key", "invalid_api_key")
        return found

    def require_admin(self, headers: Mapping[str, str]) -> None:
        """Admit the admin key only: 401 for no key or a key of no one, 403 for a client key.
        Open mode admits anyone here only when no admin key is configured."""
        if self._open and self._admin_hash is None:
            return
        token = bearer_token(headers)
        if token is None:
            raise APIError(401, "missing admin key: send 'Authorization: Bearer <admin key>'", "missing_api_key")
        digest = hash_key(token)
        if self._admin_hash is not None and hmac.compare_digest(self._admin_hash, digest):
            return
        if self._client_tenant(digest) is None:
            raise APIError(401, "invalid API key", "invalid_api_key")
        raise APIError(403, "this endpoint needs the admin key", "admin_required")

    def _client_tenant(self, digest: str) -> str | None:
        # A table lookup, not a comparison with every stored hash: that made each request, refused ones
        # too, cost time in proportion to the keys issued (10k keys: 2 ms, 100k: 40 ms of the event loop
        # per request with any made-up key). The table holds SHA-256 digests and a caller chooses a key,
        # not its digest, so how far a lookup gets tells nothing about how near a guessed key was.
        return self._tenants_by_digest.get(digest)

    async def load_redis_keys(self, redis: Any, prefix: str) -> int:
        """Read the Redis key hash once; returns how many keys it holds. Raises on Redis errors."""
        keys = parse_redis_keys(await redis.hgetall(redis_keys_name(prefix)))
        self.set_redis_keys(keys)
        return len(keys)


async def store_key(redis: Any, prefix: str, tenant: str, key: str) -> None:
    """Issue `key` to `tenant` in Redis (only its hash is stored); replicas see it within a refresh."""
    if not 0 < len(tenant) <= _TENANT_MAX_LEN:
        raise ValueError(f"a tenant name has 1 to {_TENANT_MAX_LEN} characters")
    await redis.hset(redis_keys_name(prefix), hash_key(key), tenant)


async def revoke_key(redis: Any, prefix: str, key: str) -> bool:
    """Revoke `key` in Redis; True if it was there."""
    return bool(await redis.hdel(redis_keys_name(prefix), hash_key(key)))


_REDIS_FAILURES = (RedisError, OSError, TimeoutError)


async def _refresh_forever(state: AppState, interval_s: float) -> None:
    failing = False
    while True:
        await asyncio.sleep(interval_s)
        if state.redis is None:
            continue
        try:
            await asyncio.wait_for(state.auth.load_redis_keys(state.redis, state.settings.redis_prefix), interval_s)
        except _REDIS_FAILURES as exc:
            if not failing:  # one line per outage, not one per refresh
                logger.warning(
                    "cannot refresh API keys from Redis (%s); keeping the keys last read", type(exc).__name__
                )
            failing = True
            continue
        if failing:
            logger.info("API keys from Redis refreshed again")
        failing = False


async def watch_redis_keys(state: AppState, stack: AsyncExitStack) -> None:
    """Startup step: read the Redis key hash now (when Redis answers) and then every `redis_refresh_s`."""
    settings = state.settings.auth
    if not settings.redis_keys:
        return
    if state.redis is not None:
        try:
            count = await asyncio.wait_for(
                state.auth.load_redis_keys(state.redis, state.settings.redis_prefix), settings.redis_refresh_s
            )
            logger.info("auth: %d keys from the config, %d from Redis", len(settings.keys), count)
        except _REDIS_FAILURES as exc:
            logger.warning("cannot read API keys from Redis at startup (%s); will retry", type(exc).__name__)
    task = asyncio.create_task(_refresh_forever(state, settings.redis_refresh_s), name="moa-auth-refresh")

    async def stop() -> None:
        await cancel_and_wait(task)

    stack.push_async_callback(stop)
