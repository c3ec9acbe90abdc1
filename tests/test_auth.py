"""API keys -> tenants (from the config and from Redis, stored hashed), the admin key, and 401/403."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from router.api.errors import APIError
from router.auth import OPEN_TENANT, Authenticator, hash_key, parse_redis_keys, redis_keys_name, revoke_key, store_key
from router.config import AuthSettings

CHAT = {"model": "moa-router", "messages": [{"role": "user", "content": "What is two plus two?"}]}


def settings(**fields: Any) -> AuthSettings:
    return AuthSettings.model_validate(
        {
            "keys": [{"tenant": "acme", "key_sha256": hash_key("sk-acme")}],
            "admin_key_sha256": hash_key("sk-admin"),
            **fields,
        }
    )


def bearer(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


def refused(call: Any) -> APIError:
    with pytest.raises(APIError) as raised:
        call()
    return raised.value


def test_a_configured_key_resolves_to_its_tenant() -> None:
    auth = Authenticator(settings())
    assert auth.tenant(bearer("sk-acme")) == "acme"
    assert auth.tenant({"authorization": "bearer   sk-acme  "}) == "acme"


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({}, "missing_api_key"),
        ({"authorization": "Basic c2stYWNtZQ=="}, "missing_api_key"),
        (bearer("sk-acm"), "invalid_api_key"),
        (bearer("sk-admin"), "invalid_api_key"),  # the admin key is not a client key
        (bearer(hash_key("sk-acme")), "invalid_api_key"),  # the stored hash is not a key
    ],
    ids=["none", "basic", "near-miss", "admin", "hash"],
)
async def test_other_keys_are_refused_with_401(headers: dict[str, str], code: str) -> None:
    error = refused(lambda: Authenticator(settings()).tenant(headers))
    assert (error.status, error.code, error.type) == (401, code, "authentication_error")


@pytest.mark.parametrize(
    ("headers", "status", "code"),
    [
        ({}, 401, "missing_api_key"),
        (bearer("sk-wrong"), 401, "invalid_api_key"),  # no one's key: authentication failed
        (bearer(hash_key("sk-admin")), 401, "invalid_api_key"),  # the stored hash is not the key
        (bearer("sk-acme"), 403, "admin_required"),  # a client, but not the admin
    ],
    ids=["none", "unknown", "hash", "client"],
)
def test_the_admin_key_is_checked_apart(headers: dict[str, str], status: int, code: str) -> None:
    auth = Authenticator(settings())
    auth.require_admin(bearer("sk-admin"))
    error = refused(lambda: auth.require_admin(headers))
    assert (error.status, error.code, error.type) == (
        status,
        code,
        "authentication_error" if status == 401 else "permission_error",
    )


def test_without_an_admin_key_no_one_is_admin() -> None:
    auth = Authenticator(settings(admin_key_sha256=None))
    assert refused(lambda: auth.require_admin(bearer("sk-admin"))).status == 401
    assert refused(lambda: auth.require_admin(bearer("sk-acme"))).status == 403


def test_open_mode_accepts_anyone_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="router.auth"):
        auth = Authenticator(AuthSettings(), open_mode=True)
    assert auth.is_open and auth.tenant({}) == OPEN_TENANT and auth.tenant(bearer("anything")) == OPEN_TENANT
    auth.require_admin({})  # no admin key configured: the admin endpoints are open too
    auth.require_admin(bearer("anything"))
    assert any(
        "auth is OPEN" in record.getMessage() and "no admin key is configured" in record.getMessage()
        for record in caplog.records
    )


def test_open_mode_keeps_a_configured_admin_key(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="router.auth"):
        auth = Authenticator(settings(open=True))
    assert auth.tenant({}) == OPEN_TENANT and auth.tenant(bearer("sk-wrong")) == OPEN_TENANT
    assert auth.tenant(bearer("sk-acme")) == "acme"  # an issued key keeps its tenant's cache, budget and limits
    assert refused(lambda: auth.require_admin({})).status == 401
    assert refused(lambda: auth.require_admin(bearer("sk-wrong"))).code == "invalid_api_key"
    assert refused(lambda: auth.require_admin(bearer("sk-acme"))).status == 403
    auth.require_admin(bearer("sk-admin"))
    assert any("still need the admin key" in record.getMessage() for record in caplog.records)


def test_only_hashes_are_kept() -> None:
    auth = Authenticator(settings())
    assert "sk-acme" not in repr(vars(auth)) and hash_key("sk-acme") in repr(vars(auth))


def test_malformed_redis_entries_are_skipped() -> None:
    good = hash_key("k1")
    raw = {good.encode(): b"t1", b"not-a-hash": b"t2", hash_key("k3").encode(): b"", hash_key("k4"): "x" * 65}
    assert parse_redis_keys(raw) == {good: "t1"}


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()


async def test_keys_issued_and_revoked_in_redis(redis: Redis) -> None:
    prefix = f"t{uuid.uuid4().hex[:10]}"
    auth = Authenticator(settings())
    await store_key(redis, prefix, "globex", "sk-globex")
    assert await redis.hget(redis_keys_name(prefix), hash_key("sk-globex")) == b"globex"
    assert b"sk-globex" not in b"".join(await redis.hkeys(redis_keys_name(prefix)))
    assert await auth.load_redis_keys(redis, prefix) == 1
    assert auth.tenant(bearer("sk-globex")) == "globex"
    assert auth.tenant(bearer("sk-acme")) == "acme"  # config keys stay
    assert await revoke_key(redis, prefix, "sk-globex")
    await auth.load_redis_keys(redis, prefix)
    assert refused(lambda: auth.tenant(bearer("sk-globex"))).status == 401


async def test_a_config_key_wins_over_the_same_key_in_redis(redis: Redis) -> None:
    prefix = f"t{uuid.uuid4().hex[:10]}"
    auth = Authenticator(settings())
    await store_key(redis, prefix, "intruder", "sk-acme")
    await auth.load_redis_keys(redis, prefix)
    assert auth.tenant(bearer("sk-acme")) == "acme"


def keyed_service(make_service: Any, redis_url: str, prefix: str) -> str:
    base: str = make_service(
        redis_url=redis_url,
        redis_prefix=prefix,
        auth={
            "open": False,
            "keys": [{"tenant": "acme", "key_sha256": hash_key("sk-acme")}],
            "admin_key_sha256": hash_key("sk-admin"),
            "redis_refresh_s": 0.1,
        },
    )
    return base


def test_the_service_answers_401_in_openai_shape(make_service: Any, redis_url: str) -> None:
    base = keyed_service(make_service, redis_url, f"t{uuid.uuid4().hex[:10]}")
    with httpx.Client(base_url=base, timeout=10) as client:
        for headers, code in (({}, "missing_api_key"), (bearer("sk-wrong"), "invalid_api_key")):
            response = client.post("/v1/chat/completions", json=CHAT, headers=headers)
            assert response.status_code == 401
            assert response.json() == {
                "error": {
                    "message": response.json()["error"]["message"],
                    "type": "authentication_error",
                    "code": code,
                    "param": None,
                }
            }
            assert "sk-wrong" not in response.text
        assert client.get("/v1/models").status_code == 401
        assert client.post("/v1/chat/completions", json=CHAT, headers=bearer("sk-acme")).status_code == 200


async def test_a_key_issued_in_redis_works_on_a_running_service(
    make_service: Any, redis_url: str, redis: Redis
) -> None:
    prefix = f"t{uuid.uuid4().hex[:10]}"
    base = await asyncio.to_thread(keyed_service, make_service, redis_url, prefix)
    async with httpx.AsyncClient(base_url=base, timeout=10) as client:
        assert (await client.post("/v1/chat/completions", json=CHAT, headers=bearer("sk-new"))).status_code == 401
        await store_key(redis, prefix, "newco", "sk-new")
        assert await _eventually_status(client, "sk-new", 200)
        await revoke_key(redis, prefix, "sk-new")
        assert await _eventually_status(client, "sk-new", 401)


async def _eventually_status(client: httpx.AsyncClient, key: str, status: int, within_s: float = 10.0) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        response = await client.post("/v1/chat/completions", json=CHAT, headers=bearer(key))
        if response.status_code == status:
            return True
        await asyncio.sleep(0.05)
    return False


def _error(response: httpx.Response) -> tuple[int, str, str]:
    body = response.json()
    assert set(body["error"]) == {"message", "type", "code", "param"}
    return response.status_code, body["error"]["type"], body["error"]["code"]


def test_stats_refuse_unknown_keys_with_401_and_client_keys_with_403(make_service: Any, redis_url: str) -> None:
    base = keyed_service(make_service, redis_url, f"t{uuid.uuid4().hex[:10]}")
    with httpx.Client(base_url=base, timeout=10) as client:
        # The same statuses, types and codes as the chat endpoint's auth errors.
        assert _error(client.get("/v1/stats")) == (401, "authentication_error", "missing_api_key")
        unknown = client.get("/v1/stats", headers=bearer("sk-wrong"))
        assert _error(unknown) == _error(client.post("/v1/chat/completions", json=CHAT, headers=bearer("sk-wrong")))
        assert _error(unknown) == (401, "authentication_error", "invalid_api_key")
        client_key = client.get("/v1/stats", headers=bearer("sk-acme"))
        assert _error(client_key) == (403, "permission_error", "admin_required")
        assert client.get("/v1/stats", headers=bearer("sk-admin")).status_code == 200


def test_open_mode_with_an_admin_key_opens_only_the_client_api(make_service: Any, redis_url: str) -> None:
    base: str = make_service(
        redis_url=redis_url,
        auth={"open": True, "admin_key_sha256": hash_key("sk-admin")},
        ledger={"store_prompts": True},  # stats then list request previews: they must stay behind the key
    )
    with httpx.Client(base_url=base, timeout=10) as client:
        assert client.post("/v1/chat/completions", json=CHAT).status_code == 200
        assert _error(client.get("/v1/stats")) == (401, "authentication_error", "missing_api_key")
        assert _error(client.get("/v1/stats", headers=bearer("sk-wrong"))) == (
            401,
            "authentication_error",
            "invalid_api_key",
        )
        stats = client.get("/v1/stats", headers=bearer("sk-admin"))
        assert stats.status_code == 200 and stats.json()["totals"]["requests"] == 1


def _seconds_per_check(auth: Authenticator, key: str) -> float:
    """The fastest of several rounds of checks of `key` (refused or not): the least noisy measure."""
    rounds = []
    for _ in range(7):
        started = time.perf_counter()
        for _ in range(50):
            with contextlib.suppress(APIError):
                auth.tenant(bearer(key))
        rounds.append((time.perf_counter() - started) / 50)
    return min(rounds)


def test_checking_a_key_costs_the_same_however_many_keys_are_issued() -> None:
    # Every request, with any made-up key, was compared with every issued key: 100k keys in Redis cost
    # 40 ms of the event loop per refused request, a flood anyone can send. The bound is loose (50x,
    # the old way was thousands of times slower); a lookup is about as fast with 100k keys as with one.
    few, many = Authenticator(settings()), Authenticator(settings())
    issued = {hash_key(f"sk-{i}"): f"tenant-{i % 100}" for i in range(100_000)}
    many.set_redis_keys(issued)
    assert many.tenant(bearer("sk-99999")) == "tenant-99" and many.tenant(bearer("sk-acme")) == "acme"
    for key in ("sk-made-up", "sk-acme"):
        assert _seconds_per_check(many, key) < 50 * _seconds_per_check(few, key)


async def test_open_mode_keeps_issued_keys_apart_from_anyone_else(
    make_service: Any, redis_url: str, redis: Redis
) -> None:
    # Open while keys are being rolled out: a caller with an issued key (config or Redis) is its own tenant,
    # so it does not share cached answers (nor budget and limits) with everyone else, as it did.
    prefix = f"t{uuid.uuid4().hex[:10]}"
    base = await asyncio.to_thread(
        make_service,
        redis_url=redis_url,
        redis_prefix=prefix,
        auth={"open": True, "keys": [{"tenant": "acme", "key_sha256": hash_key("sk-acme")}], "redis_refresh_s": 0.1},
    )
    ask = {**CHAT, "temperature": 0}
    await store_key(redis, prefix, "newco", "sk-new")
    async with httpx.AsyncClient(base_url=base, timeout=10) as client:

        async def cache_status(headers: dict[str, str]) -> str:
            response = await client.post("/v1/chat/completions", json=ask, headers=headers)
            assert response.status_code == 200
            return response.headers["x-moa-cache"]

        assert await cache_status({}) == "miss"
        assert await cache_status(bearer("anything")) == "hit"  # every unknown caller is the open tenant
        assert await cache_status(bearer("sk-acme")) == "miss"
        assert await cache_status(bearer("sk-acme")) == "hit"
        deadline = time.monotonic() + 10
        while await cache_status(bearer("sk-new")) == "hit":  # until the Redis keys are read: the open tenant
            assert time.monotonic() < deadline, "the key issued in Redis was never read in open mode"
            await asyncio.sleep(0.05)
        assert await cache_status(bearer("sk-new")) == "hit"  # newco's own entry now
