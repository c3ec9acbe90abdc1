"""A streamed answer (`stream: true`): the route's first delta awaited before the reply starts, then
server-sent events; the request's event is logged and its cache lease freed however the stream ends."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass

from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from router.api import sse
from router.api.exchange import STORABLE_FINISH, Exchange, release
from router.api.schemas import ChatRequest
from router.cache_types import CachedAnswer, CacheSession
from router.mixture import CallRecord, QuorumError
from router.providers.base import CompletionRequest, ProviderError
from router.routes import (
    RouteResult,
    abandoned_call,
    answered_as_configured,
    call_latency,
    stand_in,
    stream_route,
)

logger = logging.getLogger(__name__)


async def start_stream(ex: Exchange, chat: ChatRequest, session: CacheSession, upstream: CompletionRequest) -> Response:
    """Waits for the first delta before answering, so that a mixture whose proposers all fail is a
    502 with a JSON error rather than a 200 stream that breaks."""
    state = ex.state
    result = RouteResult()
    deltas = stream_route(ex.event.route, upstream, state.providers, state.engine, result)
    try:
        first: str | None = await asyncio.wait_for(anext(deltas), upstream.timeout_s)
    except StopAsyncIteration:
        first = None
    except (ProviderError, QuorumError, TimeoutError) as exc:
        await deltas.aclose()  # first: closing records the proposers it cut off as "late" (it ended: no wait)
        error = ex.failed(exc, result)  # before waiting on the cache: a cancel may follow
        await session.abandon()
        raise error from exc
    except asyncio.CancelledError:  # the route was cancelled with it: its proposers are logged
        ex.cancelled(result)
        raise
    fallback = stand_in(ex.event.route, state.providers, result)  # known with the first delta
    if fallback:  # said before the body starts
        ex.headers["x-moa-fallback"] = fallback
    stream = _Stream(ex, session, deltas, result, upstream, [first] if first else [])
    return SSEResponse(_sse(stream, chat, first), stream.end, ex.headers)


class SSEResponse(StreamingResponse):
    """An event stream that runs `end` however the response ends, even when its body never started: a
    server cancels the response of a client that left before the first write, and a body generator
    that never started runs no `finally`."""

    def __init__(
        self, content: AsyncIterator[bytes], end: Callable[[], Awaitable[None]], headers: Mapping[str, str]
    ) -> None:
        super().__init__(content, media_type="text/event-stream", headers=headers)
        self._end = end

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self._end()


@dataclass(slots=True)
class _Stream:
    """One streamed answer's state, and its end (run once)."""

    ex: Exchange
    session: CacheSession
    deltas: AsyncGenerator[str, None]
    result: RouteResult
    upstream: CompletionRequest
    sent: list[str]  # what the client was sent: the in-flight call's output if it leaves
    completed: bool = False  # the finish chunk was sent
    noted: bool = False  # the result's calls are in the event
    ended: bool = False

    async def end(self) -> None:
        if self.ended:
            return
        self.ended = True
        ex, result = self.ex, self.result
        if not self.completed and ex.event.error is None:
            ex.event.status, ex.event.error = 499, "client_disconnected"
        if not self.noted:  # the client left: the calls that finished (the proposers') were still paid for
            ex.event.calls.extend(result.calls)
            try:
                cut_off = abandoned_call(
                    ex.event.route, self.upstream, ex.state.providers, result, "".join(self.sent), time.perf_counter()
                )
            except Exception:  # an estimate must never cost the request its event
                logger.exception("cannot estimate the cut-off call of %s", ex.event.request_id)
                cut_off = None
            if cut_off is not None:  # and so was the one still answering (its usage never arrived)
                ex.event.calls.append(cut_off)
        # Recorded before any await: when the client is gone the response is cancelled through a cancel
        # scope, which cancels every later await in this block again.
        ex.finish()
        await release(self.session, upstream_failed=ex.event.error == "upstream_stream_error")
        await self.deltas.aclose()  # an unfinished upstream stream lets go of its connection now


async def _sse(stream: _Stream, chat: ChatRequest, first: str | None) -> AsyncIterator[bytes]:
    ex, result = stream.ex, stream.result
    rid, created = ex.event.request_id, int(time.time())
    model = result.model
    try:
        # Events that are ready together go out in one write (each write costs a trip through the server).
        opening = sse.chunk(rid, model, created, {"role": "assistant", "content": ""})
        yield opening + sse.chunk(rid, model, created, {"content": first}) if first else opening
        try:
            async for delta in stream.deltas:
                stream.sent.append(delta)
                yield sse.chunk(rid, model, created, {"content": delta})
        except ProviderError as exc:
            result.finish_reason = "error"
            ex.event.status, ex.event.error = 502, "upstream_stream_error"
            # Billed for what it sent (its partial). Kept in `result`, so that a client leaving from here on
            # does not add an estimate of the same call (abandoned_call).
            result.calls.append(CallRecord.from_error(exc, ex.event.route, call_latency(result, time.perf_counter())))
            yield sse.error_event(f"upstream model {exc.model} failed mid-stream ({exc.kind})", "upstream_error")
        ex.note_result(result)
        stream.noted = True
        if result.finish_reason == "error" and ex.event.error is None:
            # The aggregator was cut off mid-answer: tell the client, as the single-model path does.
            ex.event.status, ex.event.error = 502, "upstream_stream_error"
            yield sse.error_event("the answer was cut off upstream", "upstream_error")
        if result.finish_reason in STORABLE_FINISH:
            closing = sse.chunk(rid, model, created, {}, result.finish_reason)
            if chat.stream_options and chat.stream_options.include_usage:
                closing += sse.usage_chunk(rid, model, created, ex.event.usage, ex.extra())
            yield closing
            if answered_as_configured(ex.event.route, ex.state.providers, result):
                await stream.session.store(
                    CachedAnswer(
                        result.text, result.finish_reason, ex.event.usage, ex.event.cost_usd, model, ex.event.route
                    )
                )
            stream.completed = True
        yield sse.DONE
    finally:
        await stream.end()
