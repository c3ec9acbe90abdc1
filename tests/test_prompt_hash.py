"""The logged prompt hash: keyed, the key shared by replicas through Redis or given by the operator."""

from __future__ import annotations

import hashlib
import uuid
from contextlib import AsyncExitStack
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from redis.asyncio import Redis

from router.config import ConfigError, settings_from_mapping
from router.prompt_hash import PromptHasher, redis_key_name, start_prompt_hash
from router.redis_server import free_port
from tests.conftest import settings_dict

MESSAGES = [{"role": "user", "content": "hi"}]


def replica(tmp_path: Any, redis: Any, prefix: str, **ledger: Any) -> Any:
    """What the startup step reads and sets of the app's state."""
    settings = settings_from_mapping(
        settings_dict("http://127.0.0.1:1/v1", tmp_path, redis_prefix=prefix, ledger=ledger)
    )
    return SimpleNamespace(settings=settings, redis=redis, prompt_hasher=PromptHasher.ephemeral())


def test_the_hash_is_keyed() -> None:
    one, other = PromptHasher(b"k" * 32), PromptHasher(b"j" * 32)
    assert one.of(MESSAGES) == PromptHasher(b"k" * 32).of(MESSAGES) != other.of(MESSAGES)
    assert one.of(MESSAGES) != hashlib.sha256(orjson.dumps(MESSAGES)).hexdigest()  # a guess cannot be checked
    assert one.of(MESSAGES) != one.of([{"role": "user", "content": "hi!"}])


async def test_replicas_share_one_key_through_redis(redis_url: str, tmp_path: Any) -> None:
    prefix = f"t{uuid.uuid4().hex[:10]}"
    client = Redis.from_url(redis_url)
    try:
        first, second = replica(tmp_path, client, prefix), replica(tmp_path, client, prefix)
        async with AsyncExitStack() as stack:
            await start_prompt_hash(first, stack)
            await start_prompt_hash(second, stack)
        assert first.prompt_hasher.of(MESSAGES) == second.prompt_hasher.of(MESSAGES)
        assert await client.ttl(redis_key_name(prefix)) == -1  # kept: later hashes stay comparable
    finally:
        await client.aclose()


async def test_an_operators_key_wins(redis_url: str, tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_PROMPT_HASH_KEY", "s" * 40)
    state = replica(tmp_path, None, "unused", prompt_hash_key_env="TEST_PROMPT_HASH_KEY")
    async with AsyncExitStack() as stack:
        await start_prompt_hash(state, stack)
    assert state.prompt_hasher.of(MESSAGES) == PromptHasher(b"s" * 40).of(MESSAGES)


@pytest.mark.parametrize("value", [None, "short"])
def test_a_missing_or_short_operator_key_is_a_config_error(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch, value: str | None
) -> None:
    monkeypatch.delenv("TEST_PROMPT_HASH_KEY", raising=False)
    if value is not None:
        monkeypatch.setenv("TEST_PROMPT_HASH_KEY", value)
    with pytest.raises(ConfigError, match=r"ledger\.prompt_hash_key_env"):
        replica(tmp_path, None, "unused", prompt_hash_key_env="TEST_PROMPT_HASH_KEY")


async def test_without_redis_at_startup_a_replica_hashes_under_its_own_key(
    tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    client = Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=0.5)
    state = replica(tmp_path, client, "down")
    before = state.prompt_hasher.of(MESSAGES)
    try:
        async with AsyncExitStack() as stack:
            await start_prompt_hash(state, stack)  # a degraded start, not a failed one
    finally:
        await client.aclose()
    assert state.prompt_hasher.of(MESSAGES) == before
    assert "uses its own" in caplog.text
