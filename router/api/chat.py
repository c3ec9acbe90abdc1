"""POST /v1/chat/completions: authenticate, validate, score, decide, cache, run the route, reply, log."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response, StreamingResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from router.api import sse
from router.api.errors import APIError, error_response
from router.api.schemas import ChatRequest, parse_chat_request
from router.cache_types import CachedAnswer, CacheSession
from router.events import RequestEvent
from router.mixture import CallRecord, QuorumError
from router.policy import ROUTE_OVERRIDES, RouteDecision, RouteOverride, decide
from router.providers.base import CompletionRequest, ProviderError
from router.ratelimit import check_rate_limit
from router.routes import (
    RouteResult,
    abandoned_call,
    call_latency,
    models_for,
    run_route,
    stream_route,
    timed_out_call,
)
from router.state import AppState, get_state

router = APIRouter()

_STORABLE_FINISH = frozenset({"stop", "length"})  # a finished answer; "error" means it was cut off


def _inline_refs(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str):
            return _inline_refs(defs[ref.rsplit("/", 1)[1]], defs)
        return {key: _inline_refs(value, defs) for key, value in node.items()}
    if isinstance(node, list):
        return [_inline_refs(value, defs) for value in node]
    return node


def _chat_openapi() -> dict[str, Any]:
    # The body is parsed by hand (cheaper than FastAPI's dependency machinery), so its schema is given
    # here, self-contained: pydantic's $defs have no place in an OpenAPI operation.
    schema = ChatRequest.model_json_schema()
    defs = schema.pop("$defs", {})
    body_schema = _inline_refs(schema, defs)
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": body_schema}}}}


def parse_override(value: str | None) -> RouteOverride:
    if value is None or value == "":
        return "auto"
    lowered = value.strip().lower()
    for option in ROUTE_OVERRIDES:
        if lowered == option:
            return option
    raise APIError(400, f"x-moa-route must be one of {', '.join(ROUTE_OVERRIDES)}", "invalid_route", "x-moa-route")


def upstream_error(exc: Exception, event: RequestEvent, elapsed_s: float) -> APIError:
    """A failed route as the client sees it: a 5xx in OpenAI's shape that says which part failed.
    `elapsed_s` is how long a single model's failed call took (a fallback's: since it took over)."""
    if isinstance(exc, QuorumError):
        event.calls.extend(call for call in exc.calls if call not in event.calls)
        return APIError(502, f"the mixture could not answer: {exc}", "mixture_quorum_failed")
    if isinstance(exc, ProviderError):
        event.calls.append(CallRecord.from_error(exc, event.route, elapsed_s))
        if exc.kind == "timeout":
            return APIError(504, f"upstream model {exc.model} timed out", "upstream_timeout")
        return APIError(502, f"upstream model {exc.model} failed ({exc.kind})", "upstream_error")
    return APIError(504, "the request took longer than the router's request timeout", "request_timeout")


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isascii() and declared.isdigit() and int(declared) > limit:
        raise APIError(413, f"request body is {declared} bytes; the limit is {limit}", "body_too_large")
    body = bytearray()
    async for part in request.stream():
        body += part
        if len(body) > limit:
            raise APIError(413, f"request body exceeds the limit of {limit} bytes", "body_too_large")
    return bytes(body)


class _Exchange:
    """One request's state as it moves through the path; records its event exactly once."""

    def __init__(self, state: AppState, request: Request) -> None:
        self.state = state
        self.request = request
        self.started = time.perf_counter()
        self.event = RequestEvent(request_id=f"chatcmpl-{uuid.uuid4().hex}", tenant="")
        self.headers: dict[str, str] = {"x-request-id": self.event.request_id}
        self._recorded = False

    def finish(self) -> None:
        if not self._recorded:
            self._recorded = True
            self.event.latency_s = time.perf_counter() - self.started
            self.state.record(self.event)

    def note_decision(self, decision: RouteDecision, difficulty: float, stakes: float, version: str) -> None:
        self.event.route, self.event.reason = decision.route, decision.reason
        self.event.difficulty, self.event.stakes, self.event.classifier_version = difficulty, stakes, version
        self.headers.update(
            {
                "x-moa-route": decision.route,
                "x-moa-route-reason": decision.reason,
                "x-moa-difficulty": f"{difficulty:.4f}",
                "x-moa-stakes": f"{stakes:.4f}",
                "x-moa-classifier-version": version,
            }
        )

    def note_result(self, result: RouteResult) -> None:
        self.event.calls.extend(result.calls)
        self.event.fallback = result.fallback
        self.event.answer_text = result.text  # in-process only (the shadow judge reads it); never logged
        if result.fallback:
            self.headers["x-moa-fallback"] = result.fallback
        if self.event.messages is not None:
            self.event.answer = result.text

    def failed(self, exc: Exception, result: RouteResult) -> APIError:
        """The client's error for a failed route. The calls that finished were paid for, and the one the
        request's timeout cut off is logged too (it never reported back)."""
        now = time.perf_counter()
        self.event.calls.extend(result.calls)
        if isinstance(exc, TimeoutError):
            cut_off = timed_out_call(self.event.route, self.state.providers, result, now)
            if cut_off is not None:
                self.event.calls.append(cut_off)
        return upstream_error(exc, self.event, call_latency(result, now))

    def extra(self) -> dict[str, Any]:
        return {
            "request_id": self.event.request_id,
            "route": self.event.route,
            "cache": self.event.cache,
            "cost_usd": round(self.event.cost_usd, 10),
            "saved_usd": round(self.event.saved_usd, 10),
            "fallback": self.event.fallback,
        }


logger = logging.getLogger(__name__)
CHAT_PATH = "/v1/chat/completions"


class ChatFastPath:
    """ASGI middleware that hands POST /v1/chat/completions straight to its handler, past FastAPI's
    routing, request wrapper, dependency solving and inner middleware: about a sixth of the router's CPU
    time per request (bench/perf). The FastAPI route stays: it is the same handler, and it documents the
    endpoint in the OpenAPI schema. Errors the handler does not answer itself reach the app's outer
    error middleware as before."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and _route_path(scope) == CHAT_PATH:
            try:
                response = await chat_completions(Request(scope, receive, send))
            except APIError as exc:
                response = error_response(exc)
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _route_path(scope: Scope) -> str:
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


@router.post(CHAT_PATH, openapi_extra=_chat_openapi(), response_model=None)
async def chat_completions(request: Request) -> Response:
    state = get_state(request)
    ex = _Exchange(state, request)
    streaming = False
    session: CacheSession | None = None
    try:
        ex.event.tenant = state.auth.tenant(request.headers)
        await check_rate_limit(state, ex.event.tenant)
        chat = parse_chat_request(
            await _read_body(request, state.settings.limits.max_body_bytes), state.settings.limits
        )
        override = parse_override(request.headers.get("x-moa-route"))
        ex.event.stream = chat.stream
        messages = chat.upstream_messages()
        hasher = state.prompt_hasher
        ex.event.prompt_hash, ex.event.prompt_hash_key_id = hasher.of(messages), hasher.key_id
        if state.settings.ledger.store_prompts or state.settings.demo:
            ex.event.messages = messages
        scored = state.classifier.score(messages)
        budget = state.budget.state(ex.event.tenant) if state.budget is not None else None
        decision = decide(scored.scores, scored.thresholds, override, budget)
        ex.note_decision(decision, scored.scores.difficulty, scored.scores.stakes, scored.version)
        ex.event.extra["scoring_s"] = scored.elapsed_s
        session = await state.cache.begin(
            ex.event.tenant, chat, decision.route, models_for(decision.route, state.providers), request.headers
        )
        ex.event.cache = session.status
        ex.headers["x-moa-cache"] = session.status
        if session.detail:
            ex.event.extra["cache_detail"] = session.detail
        if session.answer is not None:
            return _cache_hit(ex, chat, session.answer)
        upstream = CompletionRequest(
            messages,
            chat.requested_max_tokens(),
            chat.temperature,
            chat.sampling_params(),
            state.settings.limits.request_timeout_s,
        )
        ex.event.upstream = upstream  # in-process only: what a shadow run sends the other route
        if chat.stream:
            response = await _start_stream(ex, chat, session, upstream)
            streaming = isinstance(response, StreamingResponse)
            return response
        return await _complete(ex, chat, session, upstream)
    except APIError as exc:
        ex.event.status, ex.event.error = exc.status, exc.code
        exc.headers.update(ex.headers)
        return error_response(exc)
    except Exception:
        # A bug or an unexpected upstream exception: the app's handler answers 500, and the event must
        # say so rather than keep its default 200.
        ex.event.status, ex.event.error = 500, "internal_error"
        request.state.response_headers = ex.headers
        raise
    finally:
        if not streaming:
            # Recorded before any await: a cancelled request (client gone) is cancelled again at each.
            ex.finish()
            if session is not None:
                await _release(session)


async def _complete(ex: _Exchange, chat: ChatRequest, session: CacheSession, upstream: CompletionRequest) -> Response:
    state = ex.state
    result = RouteResult()
    try:
        await asyncio.wait_for(
            run_route(ex.event.route, upstream, state.providers, state.engine, result),
            timeout=state.settings.limits.request_timeout_s,
        )
    except (ProviderError, QuorumError, TimeoutError) as exc:
        error = ex.failed(exc, result)  # before any await: a cancel may follow
        await session.abandon()
        raise error from exc
    ex.note_result(result)
    usage = ex.event.usage
    if result.finish_reason in _STORABLE_FINISH and result.fallback is None:  # a fallback answer is not kept
        await session.store(
            CachedAnswer(result.text, result.finish_reason, usage, ex.event.cost_usd, result.model, ex.event.route)
        )
    else:
        await session.abandon()
    ex.headers["x-moa-cost-usd"] = f"{ex.event.cost_usd:.8f}"
    body = sse.completion_body(ex.event.request_id, result.model, result.text, result.finish_reason, usage, ex.extra())
    return Response(body, media_type="application/json", headers=ex.headers)


def _cache_hit(ex: _Exchange, chat: ChatRequest, answer: CachedAnswer) -> Response:
    ex.event.route = answer.route or ex.event.route
    ex.event.saved_usd = answer.cost_usd
    ex.headers["x-moa-cost-usd"] = "0"
    if ex.event.messages is not None:
        ex.event.answer = answer.text
    if not chat.stream:
        body = sse.completion_body(
            ex.event.request_id, answer.model, answer.text, answer.finish_reason, answer.usage, ex.extra()
        )
        return Response(body, media_type="application/json", headers=ex.headers)
    created = int(time.time())
    rid, model = ex.event.request_id, answer.model
    parts = [
        sse.chunk(rid, model, created, {"role": "assistant", "content": ""}),
        sse.chunk(rid, model, created, {"content": answer.text}),
        sse.chunk(rid, model, created, {}, answer.finish_reason),
    ]
    if chat.stream_options and chat.stream_options.include_usage:
        parts.append(sse.usage_chunk(rid, model, created, answer.usage, ex.extra()))
    parts.append(sse.DONE)
    return Response(b"".join(parts), media_type="text/event-stream", headers=ex.headers)


async def _start_stream(
    ex: _Exchange, chat: ChatRequest, session: CacheSession, upstream: CompletionRequest
) -> Response:
    """Waits for the first delta before answering, so that a mixture whose proposers all fail is a
    502 with a JSON error rather than a 200 stream that breaks."""
    state = ex.state
    result = RouteResult()
    deltas = stream_route(ex.event.route, upstream, state.providers, state.engine, result)
    try:
        first: str | None = await asyncio.wait_for(anext(deltas), state.settings.limits.request_timeout_s)
    except StopAsyncIteration:
        first = None
    except (ProviderError, QuorumError, TimeoutError) as exc:
        await session.abandon()
        await deltas.aclose()  # first: closing records the proposers it cut off as "late"
        raise ex.failed(exc, result) from exc
    if result.fallback:  # a proposer's answer stands in for the aggregator's: said before the body starts
        ex.headers["x-moa-fallback"] = result.fallback
    return StreamingResponse(
        _sse(ex, chat, session, deltas, first, result, upstream),
        media_type="text/event-stream",
        headers=ex.headers,
    )


async def _sse(
    ex: _Exchange,
    chat: ChatRequest,
    session: CacheSession,
    deltas: AsyncIterator[str],
    first: str | None,
    result: RouteResult,
    upstream: CompletionRequest,
) -> AsyncIterator[bytes]:
    rid, created = ex.event.request_id, int(time.time())
    model = result.model
    completed = noted = False
    sent = [first] if first else []  # what the client was sent: the in-flight call's output if it leaves
    try:
        # Events that are ready together go out in one write (each write costs a trip through the server).
        opening = sse.chunk(rid, model, created, {"role": "assistant", "content": ""})
        yield opening + sse.chunk(rid, model, created, {"content": first}) if first else opening
        try:
            async for delta in deltas:
                sent.append(delta)
                yield sse.chunk(rid, model, created, {"content": delta})
        except ProviderError as exc:
            result.finish_reason = "error"
            ex.event.status, ex.event.error = 502, "upstream_stream_error"
            # Billed for what it sent (its partial). Kept in `result`, so that a client leaving from here on
            # does not add an estimate of the same call (abandoned_call).
            result.calls.append(CallRecord.from_error(exc, ex.event.route, call_latency(result, time.perf_counter())))
            yield sse.error_event(f"upstream model {exc.model} failed mid-stream ({exc.kind})", "upstream_error")
        ex.note_result(result)
        noted = True
        if result.finish_reason == "error" and ex.event.error is None:
            # The aggregator was cut off mid-answer: tell the client, as the single-model path does.
            ex.event.status, ex.event.error = 502, "upstream_stream_error"
            yield sse.error_event("the answer was cut off upstream", "upstream_error")
        if result.finish_reason in _STORABLE_FINISH:
            closing = sse.chunk(rid, model, created, {}, result.finish_reason)
            if chat.stream_options and chat.stream_options.include_usage:
                closing += sse.usage_chunk(rid, model, created, ex.event.usage, ex.extra())
            yield closing
            if result.fallback is None:  # a proposer's answer standing in for the aggregator is not kept
                await session.store(
                    CachedAnswer(
                        result.text, result.finish_reason, ex.event.usage, ex.event.cost_usd, model, ex.event.route
                    )
                )
            completed = True
        yield sse.DONE
    finally:
        if not completed and ex.event.error is None:
            ex.event.status, ex.event.error = 499, "client_disconnected"
        if not noted:  # the client left: the calls that finished (the proposers') were still paid for
            ex.event.calls.extend(result.calls)
            try:
                cut_off = abandoned_call(
                    ex.event.route, upstream, ex.state.providers, result, "".join(sent), time.perf_counter()
                )
            except Exception:  # an estimate must never cost the request its event
                logger.exception("cannot estimate the cut-off call of %s", ex.event.request_id)
                cut_off = None
            if cut_off is not None:  # and so was the one still answering (its usage never arrived)
                ex.event.calls.append(cut_off)
        # Recorded before any await: when the client is gone the response is cancelled through a cancel
        # scope, which cancels every later await in this block again.
        ex.finish()
        await _release(session)


async def _release(session: CacheSession) -> None:
    """Frees the single-flight lease (a no-op after a store), even when the request is being cancelled:
    otherwise waiters for the same answer wait until the lease lapses."""
    await asyncio.shield(session.abandon())
