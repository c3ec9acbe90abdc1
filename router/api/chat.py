"""POST /v1/chat/completions: authenticate, validate, score, decide, cache, run the route, reply, log."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Collection
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response, StreamingResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from router.api import sse
from router.api.body import read_limited_body
from router.api.chat_stream import start_stream
from router.api.errors import APIError, error_response
from router.api.exchange import STORABLE_FINISH, Exchange, release, request_timeout_error
from router.api.schemas import ChatRequest, parse_chat_request
from router.cache_types import CachedAnswer, CacheSession
from router.mixture import QuorumError
from router.policy import ROUTE_OVERRIDES, RouteOverride, decide
from router.providers.base import CompletionRequest, ProviderError
from router.ratelimit import check_rate_limit
from router.routes import RouteResult, answered_as_configured, models_for, run_route
from router.state import get_state

router = APIRouter()


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


def parse_override(value: str | None, allowed: Collection[str]) -> RouteOverride:
    """The route a client asks for with `x-moa-route`; forcing one the operator did not allow
    (`policy.client_overrides`) is a 403."""
    if value is None or value == "":
        return "auto"
    lowered = value.strip().lower()
    for option in ROUTE_OVERRIDES:
        if lowered == option:
            if option != "auto" and option not in allowed:
                message = f"this service does not let clients force the {option} route (x-moa-route)"
                raise APIError(403, message, "route_override_not_allowed", "x-moa-route")
            return option
    raise APIError(400, f"x-moa-route must be one of {', '.join(ROUTE_OVERRIDES)}", "invalid_route", "x-moa-route")


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
    ex = Exchange(state, request)
    streaming = False
    session: CacheSession | None = None
    try:
        ex.event.tenant = state.auth.tenant(request.headers)
        await check_rate_limit(state, ex.event.tenant)
        chat = parse_chat_request(
            await read_limited_body(request, state.settings.limits.max_body_bytes), state.settings.limits
        )
        override = parse_override(request.headers.get("x-moa-route"), state.settings.policy.client_overrides)
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
            ex.event.tenant,
            chat,
            decision.route,
            models_for(decision.route, state.providers),
            request.headers,
            wait_s=ex.remaining_s(),
        )
        ex.event.cache = session.status
        ex.headers["x-moa-cache"] = session.status
        if session.detail:
            ex.event.extra["cache_detail"] = session.detail
        if session.answer is not None:
            return _cache_hit(ex, chat, session.answer)
        time_left = ex.remaining_s()
        if time_left <= 0:  # spent waiting for a request that was computing the same answer, in vain
            raise request_timeout_error()
        upstream = CompletionRequest(
            messages, chat.requested_max_tokens(), chat.temperature, chat.sampling_params(), time_left
        )
        ex.event.upstream = upstream  # in-process only: what a shadow run sends the other route
        if chat.stream:
            response = await start_stream(ex, chat, session, upstream)
            streaming = isinstance(response, StreamingResponse)
            return response
        return await _complete(ex, chat, session, upstream)
    except APIError as exc:
        ex.event.status, ex.event.error = exc.status, exc.code
        exc.headers.update(ex.headers)
        return error_response(exc)
    except asyncio.CancelledError:
        # Only the server cancels this handler (a client that leaves does not: pure ASGI), at the end of its
        # shutdown grace. Before its route ran (reading the body, waiting in single flight) nothing was paid
        # for, but there was no answer either: the event must not keep its default 200.
        if ex.event.error is None:  # (a route that ran recorded its calls and this already: _complete)
            ex.event.status, ex.event.error = 500, "internal_error"
        raise
    except Exception:
        # A bug or an unexpected upstream exception: the app's handler answers 500, and the event must
        # say so rather than keep its default 200.
        ex.event.status, ex.event.error = 500, "internal_error"
        request.state.response_headers = ex.headers
        raise
    finally:
        if not streaming:
            # Recorded before any await: a cancelled request (the service stopping) is cancelled again at each.
            ex.finish()
            if session is not None:
                await release(session)


async def _complete(ex: Exchange, chat: ChatRequest, session: CacheSession, upstream: CompletionRequest) -> Response:
    state = ex.state
    result = RouteResult()
    try:
        await asyncio.wait_for(
            run_route(ex.event.route, upstream, state.providers, state.engine, result), timeout=upstream.timeout_s
        )
    except (ProviderError, QuorumError, TimeoutError) as exc:
        error = ex.failed(exc, result)  # before any await: a cancel may follow
        await session.abandon()
        raise error from exc
    except asyncio.CancelledError:
        ex.cancelled(result)  # recorded as the handler ends; the cancel is repeated at each await
        raise
    ex.note_result(result)
    usage = ex.event.usage
    if result.finish_reason in STORABLE_FINISH and answered_as_configured(ex.event.route, state.providers, result):
        await session.store(
            CachedAnswer(result.text, result.finish_reason, usage, ex.event.cost_usd, result.model, ex.event.route)
        )
    else:
        await session.abandon()
    ex.headers["x-moa-cost-usd"] = f"{ex.event.cost_usd:.8f}"
    body = sse.completion_body(ex.event.request_id, result.model, result.text, result.finish_reason, usage, ex.extra())
    return Response(body, media_type="application/json", headers=ex.headers)


def _cache_hit(ex: Exchange, chat: ChatRequest, answer: CachedAnswer) -> Response:
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
