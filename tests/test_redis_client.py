"""The Redis startup step: REDIS_URL when given, else an embedded, persistent redis-server; one path."""

from __future__ import annotations

import socket
import uuid
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import httpx
import pytest

from router.app import create_app
from router.background_server import BackgroundServer
from router.config import Settings, settings_from_mapping
from router.redis_client import connect_redis, make_redis_client, socket_timeout_s
from router.state import AppState
from tests.conftest import settings_dict
from tests.support.slow_proxy import SlowProxy


@dataclass
class _State:
    settings: Settings
    redis: Any = None


def make_settings(tmp_path: Path, upstream: str = "http://127.0.0.1:9/v1", **overrides: Any) -> Settings:
    return settings_from_mapping(settings_dict(upstream, tmp_path / "data", **overrides))


@pytest.fixture
def no_redis_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REDIS_URL", raising=False)


def refuses(url: str) -> bool:
    host_port = url.removeprefix("redis://").split("/", 1)[0]
    host, port = host_port.split(":")
    try:
        socket.create_connection((host, int(port)), timeout=1).close()
    except OSError:
        return True
    return False


async def test_a_command_whose_reply_times_out_is_not_sent_again(redis_url: str) -> None:
    from redis.exceptions import TimeoutError as RedisTimeout

    key = f"tslow{uuid.uuid4().hex[:10]}:count"
    async with SlowProxy(redis_url).running() as proxy:
        client = make_redis_client(proxy.url, 0.3)
        try:
            await client.ping()  # connected, so that the held reply is the command's
            proxy.hold_next_reply(0.6)
            with pytest.raises(RedisTimeout):
                await client.incr(key)
            assert int(await client.get(key)) == 1  # Redis applied it once; the client did not send it again
            await client.delete(key)
        finally:
            await client.aclose()


def test_socket_timeout_follows_the_cache_timeout(tmp_path: Path) -> None:
    assert socket_timeout_s(make_settings(tmp_path, cache={"timeout_ms": 200})) == pytest.approx(2.0)
    assert socket_timeout_s(make_settings(tmp_path, cache={"timeout_ms": 5})) == pytest.approx(0.5)


async def test_connects_to_the_configured_redis(redis_url: str, tmp_path: Path) -> None:
    state = _State(make_settings(tmp_path, redis_url=redis_url))
    async with AsyncExitStack() as stack:
        await connect_redis(cast(AppState, state), stack)
        assert await state.redis.ping() is True
        kwargs = state.redis.connection_pool.connection_kwargs
        assert (kwargs["host"], kwargs["socket_timeout"]) == ("127.0.0.1", pytest.approx(0.5))
    assert not (tmp_path / "data" / "redis").exists()  # no embedded server when a URL is given


async def test_embedded_redis_when_no_url_persists_and_stops(tmp_path: Path, no_redis_url: None) -> None:
    settings = make_settings(tmp_path)
    assert settings.redis_url is None
    state = _State(settings)
    async with AsyncExitStack() as stack:
        await connect_redis(cast(AppState, state), stack)
        await state.redis.set(f"{settings.redis_prefix}:probe", b"kept")
        url = state.redis.connection_pool.connection_kwargs
        address = f"redis://{url['host']}:{url['port']}/0"
        assert not refuses(address)
    assert refuses(address)  # stopped at shutdown
    assert (tmp_path / "data" / "redis" / "redis.log").exists()

    again = _State(settings)
    async with AsyncExitStack() as stack:
        await connect_redis(cast(AppState, again), stack)
        assert await again.redis.get(f"{settings.redis_prefix}:probe") == b"kept"  # from the append-only file


def test_service_with_embedded_redis_keeps_cached_answers_across_restarts(
    sim_url: str, tmp_path: Path, no_redis_url: None
) -> None:
    settings = make_settings(tmp_path, sim_url, redis_prefix="restart")
    payload = {
        "model": "m",
        "messages": [{"role": "user", "content": "Name three sorting algorithms."}],
        "temperature": 0,
    }
    statuses = []
    for _ in range(2):
        with BackgroundServer(create_app(settings)) as server:
            response = httpx.post(
                f"{server.url}/v1/chat/completions", json=payload, timeout=30, headers={"x-moa-route": "cheap"}
            )
            assert response.status_code == 200, response.text
            statuses.append(response.headers["x-moa-cache"])
    assert statuses == ["miss", "hit"]


async def test_two_processes_cannot_share_one_embedded_redis_directory(tmp_path: Path, no_redis_url: None) -> None:
    settings = make_settings(tmp_path)
    async with AsyncExitStack() as stack:
        await connect_redis(cast(AppState, _State(settings)), stack)
        with pytest.raises(RuntimeError, match="REDIS_URL"):
            async with AsyncExitStack() as second:
                await connect_redis(cast(AppState, _State(settings)), second)
    async with AsyncExitStack() as stack:  # free again once the first has shut down
        state = _State(settings)
        await connect_redis(cast(AppState, state), stack)
        assert await state.redis.ping() is True


def test_a_redis_url_asking_for_decoded_replies_still_serves_cached_answers(
    sim_url: str, redis_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # redis-py lets a URL's options override the client's: `?decode_responses=true` turned every reply into
    # str, and the cache, stats and budget failed on their first read.
    settings = settings_from_mapping(
        settings_dict(sim_url, tmp_path / "data", redis_url=f"{redis_url}?decode_responses=true")
    )
    chat = {"model": "m", "messages": [{"role": "user", "content": "hello there"}], "temperature": 0}
    with caplog.at_level("WARNING", logger="router.redis_client"), BackgroundServer(create_app(settings)) as server:
        statuses = []
        for _ in range(2):
            reply = httpx.post(
                f"{server.url}/v1/chat/completions", json=chat, headers={"x-moa-route": "cheap"}, timeout=30
            )
            assert reply.status_code == 200
            statuses.append(reply.headers["x-moa-cache"])
    assert statuses == ["miss", "hit"]
    assert "decode_responses: ignored" in caplog.text
