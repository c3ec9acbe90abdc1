"""A request the service cancels before its answer (it stops, and the request outlasts the shutdown grace)
is logged as failed, with the upstream calls it paid for: it was logged as a 200 that cost nothing."""

from __future__ import annotations

import concurrent.futures
import uuid
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from redis import Redis

from router.app import create_app
from router.background_server import BackgroundServer
from router.config import settings_from_mapping
from router.ledger import LedgerKeys
from router.simulator.runner import SimulatorServer
from tests.conftest import TEST_MODELS, settings_dict
from tests.test_chat_api import chat, patch_model
from tests.test_shutdown import _wait_for_upstream_in_flight


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
def test_a_request_cancelled_by_the_stopping_service_is_logged_as_failed_with_its_calls(
    sim: SimulatorServer, sim_url: str, redis_url: str, tmp_path: Path, stream: bool
) -> None:
    patch_model(sim, "cheap-1", ttft_s=30.0)  # still answering when the shutdown grace (1 s) is over
    prefix = f"t{uuid.uuid4().hex[:10]}"
    settings = settings_from_mapping(
        settings_dict(sim_url, tmp_path / "data", redis_url=redis_url, redis_prefix=prefix)
    )
    server = BackgroundServer(create_app(settings), graceful_s=1)
    base = server.start()
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        asking = pool.submit(chat, base, "cheap", stream)
        _wait_for_upstream_in_flight(sim, minimum=1)
        server.stop()  # the request outlasts the grace: the server cancels it
        with pytest.raises(httpx.HTTPError):  # the connection closes without an answer
            asking.result(timeout=30).raise_for_status()
    client: Any = Redis.from_url(redis_url)
    try:
        [event] = [orjson.loads(fields[b"e"]) for _, fields in client.xrange(LedgerKeys(prefix).events)]
    finally:
        client.close()
    assert event["status"] >= 500 and event["error"] is not None  # was 200, no error
    [call] = event["calls"]  # was none
    _, price_in, _ = TEST_MODELS["cheap-1"]
    assert (call["model"], call["status"]) == ("openai/cheap-1", "error")
    assert call["prompt_tokens"] > 0 and call["cost_usd"] == pytest.approx(call["prompt_tokens"] * price_in)
    assert event["cost_usd"] == call["cost_usd"]


async def test_a_request_cancelled_before_its_route_ran_is_not_logged_as_answered(
    sim_url: str, redis_url: str, tmp_path: Path
) -> None:
    # Cancelled while it still read its body (or waited in single flight for an identical request): it was
    # logged as a 200 with no calls, an answer that no client got.
    import asyncio

    prefix = f"t{uuid.uuid4().hex[:10]}"
    app = create_app(
        settings_from_mapping(settings_dict(sim_url, tmp_path / "data", redis_url=redis_url, redis_prefix=prefix))
    )
    headers = [(b"content-type", b"application/json"), (b"content-length", b"100")]
    scope: dict[str, Any] = {"type": "http", "method": "POST", "path": "/v1/chat/completions", "root_path": ""}
    scope["headers"] = headers
    scope |= {"query_string": b"", "http_version": "1.1", "scheme": "http", "server": ("127.0.0.1", 80), "app": app}
    body_read = asyncio.Event()

    async def receive() -> MutableMapping[str, Any]:  # the body never comes
        body_read.set()
        await asyncio.Event().wait()
        return {"type": "http.disconnect"}

    async def send(message: MutableMapping[str, Any]) -> None:
        raise AssertionError(f"nothing is sent to a cancelled request: {message}")

    async with app.router.lifespan_context(app):
        handling = asyncio.create_task(app(scope, receive, send))
        await asyncio.wait_for(body_read.wait(), 10)
        handling.cancel()
        with pytest.raises(asyncio.CancelledError):
            await handling
    # Leaving the lifespan flushed the outcome log.
    client: Any = Redis.from_url(redis_url)
    try:
        [event] = [orjson.loads(fields[b"e"]) for _, fields in client.xrange(LedgerKeys(prefix).events)]
    finally:
        client.close()
    assert (event["status"], event["error"]) == (500, "internal_error")  # was (200, None)
    assert event["calls"] == [] and event["cost_usd"] == 0
