"""The logged prompt hash: keyed, the key shared by replicas through Redis or given by the operator."""

from __future__ import annotations

import asyncio
import hashlib
import os
import subprocess
import sys
import uuid
from contextlib import AsyncExitStack
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
import yaml
from redis.asyncio import Redis

from router.config import settings_from_mapping
from router.prompt_hash import PromptHasher, configured_key, redis_key_name, start_prompt_hash
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


async def test_an_operators_key_wins(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_PROMPT_HASH_KEY", "s" * 40)
    state = replica(tmp_path, None, "unused", prompt_hash_key_env="TEST_PROMPT_HASH_KEY")
    async with AsyncExitStack() as stack:
        await start_prompt_hash(state, stack)
    assert state.prompt_hasher.of(MESSAGES) == PromptHasher(b"s" * 40).of(MESSAGES)
    assert state.prompt_hasher.key_id == PromptHasher(b"s" * 40).key_id != PromptHasher(b"t" * 40).key_id


@pytest.mark.parametrize("value", [None, "short"])
def test_a_missing_or_short_operator_key_stops_the_service_only(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch, value: str | None
) -> None:
    monkeypatch.delenv("TEST_PROMPT_HASH_KEY", raising=False)
    if value is not None:
        monkeypatch.setenv("TEST_PROMPT_HASH_KEY", value)
    # The config loads: commands that read the log (train --from-log, export, report) never hash.
    state = replica(tmp_path, None, "unused", prompt_hash_key_env="TEST_PROMPT_HASH_KEY")
    with pytest.raises(ValueError, match=r"ledger\.prompt_hash_key_env: \$TEST_PROMPT_HASH_KEY"):
        configured_key(state.settings)


def test_serve_refuses_to_start_without_the_operators_key(tmp_path: Any) -> None:
    config = tmp_path / "config.yaml"
    data = settings_dict("http://127.0.0.1:1/v1", tmp_path / "data", ledger={"prompt_hash_key_env": "UNSET_KEY_VAR"})
    config.write_text(yaml.safe_dump(data))
    env = {k: v for k, v in os.environ.items() if k != "UNSET_KEY_VAR"}
    done = subprocess.run(
        [sys.executable, "-m", "router", "serve", "--config", str(config), "--port", str(free_port())],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert done.returncode == 2 and "$UNSET_KEY_VAR must hold a key" in done.stderr


async def test_without_redis_at_startup_a_replica_hashes_under_its_own_key_until_it_can(
    redis_url: str, tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    prefix = f"t{uuid.uuid4().hex[:10]}"
    down = Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=0.5)
    up = Redis.from_url(redis_url)
    state = replica(tmp_path, down, prefix)
    own = state.prompt_hasher.key_id
    try:
        async with AsyncExitStack() as stack:
            await start_prompt_hash(state, stack, retry_s=0.05)  # a degraded start, not a failed one
            assert state.prompt_hasher.key_id == own and f"its own (key id {own})" in caplog.text
            state.redis = up  # Redis answers again
            for _ in range(100):
                if state.prompt_hasher.key_id != own:
                    break
                await asyncio.sleep(0.05)
        shared = replica(tmp_path, up, prefix)
        async with AsyncExitStack() as stack:
            await start_prompt_hash(shared, stack)
        assert state.prompt_hasher.key_id == shared.prompt_hasher.key_id != own
    finally:
        await down.aclose()
        await up.aclose()
