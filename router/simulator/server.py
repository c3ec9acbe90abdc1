"""The simulator's OpenAI-compatible HTTP app: chat completions (plain and SSE), models, controls."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive

from router.simulator.answers import compose_answer, prompt_tokens
from router.simulator.fleet import FleetConfig, SimModel
from router.simulator.state import Fault, SimulatorState

_ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
_JSON = "application/json"


class StreamDropped(Exception):
    """Raised on purpose to cut a stream mid-way; the server then closes the connection."""


class _QuietDeliberateDrops(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], StreamDropped))


def quiet_deliberate_drops() -> None:
    """Keep uvicorn from logging a traceback for each stream the simulator drops on purpose."""
    logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _QuietDeliberateDrops) for f in logger.filters):
        logger.addFilter(_QuietDeliberateDrops())


def _error(status: int, message: str, kind: str, code: str, headers: dict[str, str] | None = None) -> Response:
    body = {"error": {"message": message, "type": kind, "param": None, "code": code}}
    return Response(orjson.dumps(body), status, headers=headers, media_type=_JSON)


def _json(payload: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(payload), status, media_type=_JSON)


@dataclass(frozen=True)
class _ChatRequest:
    model: str
    messages: list[dict[str, Any]]
    stream: bool
    include_usage: bool
    max_tokens: int | None


def _parse_chat(body: Any) -> _ChatRequest | str:
    """The request's fields, or a message saying what is wrong with it."""
    if not isinstance(body, dict):
        return "the request body must be a JSON object"
    model, messages, stream = body.get("model"), body.get("messages"), body.get("stream", False)
    if not isinstance(model, str) or not model:
        return "'model' is required and must be a string"
    if not isinstance(messages, list) or not messages:
        return "'messages' is required and must be a non-empty array"
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in _ROLES:
            return f"messages[{index}] must be an object with a valid 'role'"
        if not isinstance(message.get("content"), str | list | None):
            return f"messages[{index}].content must be a string, an array of parts or null"
    if not isinstance(stream, bool):
        return "'stream' must be a boolean"
    options = body.get("stream_options") or {}
    if not isinstance(options, dict):
        return "'stream_options' must be an object"
    if body.get("n", 1) != 1:
        return "the simulator supports only n=1"
    limit = body.get("max_completion_tokens")
    if limit is None:
        limit = body.get("max_tokens")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        return "'max_tokens' / 'max_completion_tokens' must be a positive integer"
    return _ChatRequest(model, messages, stream, bool(options.get("include_usage")), limit)


async def _sleep(seconds: float) -> None:
    if seconds > 0:  # zero latency must not even yield to the loop's scheduler
        await asyncio.sleep(seconds)


async def _wait_for_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _wait_while_connected(request: Request, state: SimulatorState, seconds: float) -> bool:
    """Sleep up to `seconds`; True if that time passed, False if the client left or the server stops."""
    if seconds <= 0:
        return True
    waiters = {
        asyncio.ensure_future(_wait_for_disconnect(request.receive)),
        asyncio.ensure_future(state.hangs_released.wait()),
    }
    try:
        done, _ = await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
        await asyncio.gather(*waiters, return_exceptions=True)
    return not done


def _fault_response(fault: Fault, model: SimModel) -> Response:
    if fault is Fault.RATE_LIMIT:
        headers = {
            "retry-after": str(math.ceil(model.retry_after_s)),
            "retry-after-ms": str(round(model.retry_after_s * 1000)),
        }
        message = f"Rate limit reached for {model.name} (simulated). Retry after {model.retry_after_s} s."
        return _error(429, message, "requests", "rate_limit_exceeded", headers)
    return _error(500, f"The model {model.name} had a simulated server error.", "server_error", "server_error")


class _Completion:
    """One answer being served: its tokens, finish reason and usage."""

    def __init__(self, call: int, model: SimModel, chat: _ChatRequest, seed: int) -> None:
        tokens = compose_answer(seed, model.name, model.family, model.output_tokens, chat.messages)
        self.finish_reason = "stop"
        if chat.max_tokens is not None and len(tokens) > chat.max_tokens:
            tokens, self.finish_reason = tokens[: chat.max_tokens], "length"
        self.tokens = tokens
        self.model = model
        self.id = f"chatcmpl-sim{seed:x}-{call:08d}"
        self.created = int(time.time())
        prompt = prompt_tokens(chat.messages)
        self.usage = {
            "prompt_tokens": prompt,
            "completion_tokens": len(tokens),
            "total_tokens": prompt + len(tokens),
        }

    def full(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model.name,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "".join(self.tokens)},
                    "finish_reason": self.finish_reason,
                    "logprobs": None,
                }
            ],
            "usage": self.usage,
        }

    def chunk(self, delta: dict[str, str], finish_reason: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "finish_reason": finish_reason}
        return self._event({"choices": [choice]})

    def usage_chunk(self) -> bytes:
        return self._event({"choices": [], "usage": self.usage})

    def _event(self, fields: dict[str, Any]) -> bytes:
        head = {"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model.name}
        return b"data: " + orjson.dumps(head | fields) + b"\n\n"


async def _stream(
    completion: _Completion, chat: _ChatRequest, fault: Fault | None, state: SimulatorState
) -> AsyncIterator[bytes]:
    model = completion.model
    with state.in_flight(model.name):
        await _sleep(model.ttft_s)
        if fault is Fault.MALFORMED:
            yield b'data: {"id": "' + completion.id.encode() + b'", "choices": [{"delta": \n\n'
            yield b"data: [DONE]\n\n"
            return
        yield completion.chunk({"role": "assistant", "content": ""})
        cut_at = len(completion.tokens) // 2 if fault is Fault.DROP_STREAM else None
        for index, token in enumerate(completion.tokens):
            if index == cut_at:
                raise StreamDropped(f"simulated dropped stream from {model.name}")
            if index:
                await _sleep(model.per_token_s)
            yield completion.chunk({"content": token})
        yield completion.chunk({}, completion.finish_reason)
        if chat.include_usage:
            yield completion.usage_chunk()
        yield b"data: [DONE]\n\n"


async def chat_completions(request: Request) -> Response:
    state: SimulatorState = request.app.state.sim
    expected_key = state.fleet.api_key
    if expected_key is not None and request.headers.get("authorization") != f"Bearer {expected_key}":
        return _error(401, "Incorrect API key provided.", "invalid_request_error", "invalid_api_key")
    try:
        body = orjson.loads(await request.body())
    except orjson.JSONDecodeError:
        return _error(400, "the request body is not valid JSON", "invalid_request_error", "invalid_json")
    chat = _parse_chat(body)
    if isinstance(chat, str):
        return _error(400, chat, "invalid_request_error", "invalid_request")
    model = state.models.get(chat.model)
    if model is None:
        message = f"The model `{chat.model}` does not exist or you do not have access to it."
        return _error(404, message, "invalid_request_error", "model_not_found")

    call = state.count_call(model.name)
    fault = state.draw_fault(model.name, chat.stream)
    if fault is Fault.HANG:
        with state.in_flight(model.name):
            await _wait_while_connected(request, state, state.fleet.max_hang_s)
        return _error(504, f"The model {model.name} hung (simulated).", "server_error", "timeout")
    if fault in (Fault.ERROR, Fault.RATE_LIMIT):
        with state.in_flight(model.name):
            await _wait_while_connected(request, state, model.ttft_s)
        return _fault_response(fault, model)
    completion = _Completion(call, model, chat, state.fleet.seed)
    if chat.stream:
        return StreamingResponse(_stream(completion, chat, fault, state), media_type="text/event-stream")
    with state.in_flight(model.name):
        latency = model.ttft_s + model.per_token_s * len(completion.tokens)
        if not await _wait_while_connected(request, state, latency):
            return _error(503, "The simulator stopped or the client left.", "server_error", "unavailable")
    if fault is Fault.MALFORMED:
        return Response(b'{"id": "' + completion.id.encode() + b'", "choices": [{"mess', media_type=_JSON)
    return _json(completion.full())


async def list_models(request: Request) -> Response:
    state: SimulatorState = request.app.state.sim
    data = [
        {"id": m.name, "object": "model", "created": 0, "owned_by": f"sim-{m.family}"} for m in state.models.values()
    ]
    return _json({"object": "list", "data": data})


async def sim_stats(request: Request) -> Response:
    state: SimulatorState = request.app.state.sim
    return _json(state.stats())


async def sim_reset(request: Request) -> Response:
    state: SimulatorState = request.app.state.sim
    state.reset()
    return _json(state.stats())


async def sim_patch_model(request: Request) -> Response:
    state: SimulatorState = request.app.state.sim
    name = request.path_params["name"]
    try:
        changes = orjson.loads(await request.body())
    except orjson.JSONDecodeError:
        return _error(400, "the request body is not valid JSON", "invalid_request_error", "invalid_json")
    if not isinstance(changes, dict):
        return _error(400, "the body must be an object of model fields", "invalid_request_error", "invalid")
    try:
        updated = state.patch(name, changes)
    except KeyError:
        return _error(404, f"no simulated model named {name!r}", "invalid_request_error", "model_not_found")
    except ValueError as exc:
        return _error(400, str(exc), "invalid_request_error", "invalid_model_fields")
    return _json(updated.model_dump(mode="json"))


def create_simulator_app(fleet: FleetConfig) -> Starlette:
    """An ASGI app serving `fleet` with OpenAI's API, plus /_sim/* control endpoints for tests.

    Its state is on `app.state.sim` (a SimulatorState).
    """
    app = Starlette(
        routes=[
            Route("/v1/chat/completions", chat_completions, methods=["POST"]),
            Route("/v1/models", list_models, methods=["GET"]),
            Route("/_sim/stats", sim_stats, methods=["GET"]),
            Route("/_sim/reset", sim_reset, methods=["POST"]),
            Route("/_sim/models/{name}", sim_patch_model, methods=["PATCH"]),
        ]
    )
    app.state.sim = SimulatorState(fleet)
    return app
