"""The streamed answer's response: its end runs however the response ends, even when the body never
started (the client left before the first write)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from router.api.chat_stream import SSEResponse

SCOPE = {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "method": "POST", "headers": []}


async def test_the_end_runs_when_the_client_left_before_the_body_started() -> None:
    started: list[bool] = []
    ended: list[bool] = []

    async def body() -> AsyncIterator[bytes]:
        started.append(True)
        yield b"data: x\n\n"

    async def end() -> None:
        ended.append(True)

    async def receive() -> dict[str, Any]:
        return {"type": "http.disconnect"}  # gone at once

    async def send(message: dict[str, Any]) -> None:
        await asyncio.sleep(0.05)  # a write that yields: the disconnect is seen first

    await SSEResponse(body(), end, {})(SCOPE, receive, send)
    # The server cancelled the response before iterating the body, so the body's own `finally` never ran:
    # only the response's end logs the request and frees its cache lease.
    assert started == [] and ended == [True]


async def test_the_end_runs_once_after_a_finished_body() -> None:
    ended: list[bool] = []
    sent: list[dict[str, Any]] = []

    async def end() -> None:
        ended.append(True)

    async def body() -> AsyncIterator[bytes]:
        try:
            yield b"data: x\n\n"
        finally:
            await end()  # as _sse does; the response's own call then finds it done

    async def receive() -> dict[str, Any]:
        await asyncio.sleep(10)
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    calls = 0

    async def counted_end() -> None:
        nonlocal calls
        calls += 1

    await SSEResponse(body(), counted_end, {})(SCOPE, receive, send)
    assert ended == [True] and calls == 1  # the response calls its end once; idempotence is the end's own
    assert sent[-1] == {"type": "http.response.body", "body": b"", "more_body": False}
