"""Answers of OpenAI-compatible servers that the simulator does not send, served over real HTTP: an error
event inside a stream (OpenAI, vLLM) and content as a list of parts."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from router.background_server import BackgroundServer
from router.config import ModelEntry
from router.providers.base import CallResult, CompletionRequest, ProviderError
from router.providers.openai_compat import OpenAICompatibleProvider, make_upstream_session
from router.providers.pricing import Prices

REQUEST = CompletionRequest([{"role": "user", "content": "hi"}], timeout_s=5.0)


class CannedUpstream:
    """Answers every chat completion with the body a test set, as SSE when the request streams."""

    def __init__(self) -> None:
        self.body = b""
        app = Starlette(routes=[Route("/v1/chat/completions", self._answer, methods=["POST"])])
        self.server = BackgroundServer(app, lifespan="off", graceful_s=1)

    async def _answer(self, request: Request) -> Response:
        streaming = orjson.loads(await request.body()).get("stream", False)
        return Response(self.body, 200, media_type="text/event-stream" if streaming else "application/json")

    def events(self, *payloads: Any) -> None:
        self.body = b"".join(b"data: " + orjson.dumps(p) + b"\n\n" for p in payloads) + b"data: [DONE]\n\n"


@pytest.fixture(scope="module")
def upstream() -> Iterator[CannedUpstream]:
    canned = CannedUpstream()
    canned.server.start()
    yield canned
    canned.server.stop()


def delta(content: Any, finish: str | None = None) -> dict[str, Any]:
    return {"choices": [{"index": 0, "delta": {"content": content}, "finish_reason": finish}]}


async def call(upstream: CannedUpstream, stream: bool) -> tuple[list[Any], CallResult]:
    model = ModelEntry(model="openai/canned", api_base=f"{upstream.server.url}/v1")
    session = make_upstream_session()
    try:
        provider = OpenAICompatibleProvider(model, Prices(1e-6, 2e-6), session)
        if not stream:
            return [], await provider.complete(REQUEST)
        deltas: list[Any] = []
        async for item in provider.stream(REQUEST):
            if isinstance(item, CallResult):
                return deltas, item
            deltas.append(item)
    finally:
        await session.close()
    raise AssertionError("the stream ended without its CallResult")


async def test_an_error_event_mid_stream_is_a_failure_not_an_answer_cut_short(upstream: CannedUpstream) -> None:
    # vLLM's way: the error as a data event, then [DONE]. It is not a finished answer (nor to be cached).
    upstream.events(delta("Hello "), delta("wor"), {"error": {"message": "engine died", "type": "InternalError"}})
    with pytest.raises(ProviderError) as raised:
        await call(upstream, stream=True)
    assert raised.value.kind == "upstream" and (raised.value.status or 500) >= 500  # a server fault: retried
    partial = raised.value.partial  # billed for what it sent
    assert partial is not None and partial.text == "Hello wor" and partial.finish_reason == "error"


async def test_an_error_event_with_a_client_error_code_is_classified_as_that_status(upstream: CannedUpstream) -> None:
    upstream.events({"error": {"message": "prompt too long", "type": "BadRequestError", "code": 400}})
    with pytest.raises(ProviderError) as raised:
        await call(upstream, stream=True)
    assert (raised.value.kind, raised.value.status, raised.value.partial) == ("bad_request", 400, None)


async def test_an_error_in_a_successful_completion_is_an_upstream_failure(upstream: CannedUpstream) -> None:
    upstream.body = orjson.dumps({"error": {"message": "overloaded", "type": "server_error", "code": 503}})
    with pytest.raises(ProviderError) as raised:
        await call(upstream, stream=False)
    assert (raised.value.kind, raised.value.status) == ("upstream", 503)


PARTS = [{"type": "thinking", "thinking": "hmm"}, {"type": "text", "text": "Hello "}, {"type": "text", "text": "world"}]


async def test_content_as_a_list_of_parts_is_its_text(upstream: CannedUpstream) -> None:
    message = {"role": "assistant", "content": PARTS}
    upstream.body = orjson.dumps({"choices": [{"index": 0, "message": message, "finish_reason": "stop"}]})
    _, result = await call(upstream, stream=False)
    assert result.text == "Hello world"


async def test_deltas_as_lists_of_parts_are_their_text(upstream: CannedUpstream) -> None:
    upstream.events(delta(PARTS[:2]), delta([PARTS[2]]), delta(None, "stop"))
    deltas, result = await call(upstream, stream=True)
    assert deltas == ["Hello ", "world"] and result.text == "Hello world" and result.finish_reason == "stop"


async def test_content_that_is_not_text_is_malformed(upstream: CannedUpstream) -> None:
    message = {"role": "assistant", "content": {"unexpected": True}}
    upstream.body = orjson.dumps({"choices": [{"index": 0, "message": message, "finish_reason": "stop"}]})
    with pytest.raises(ProviderError) as raised:
        await call(upstream, stream=False)
    assert raised.value.kind == "malformed"


@pytest.mark.parametrize(
    "reported",
    [
        {"prompt_tokens": 10**30, "completion_tokens": 5},  # past 64 bits: the outcome log could not hold it
        {"prompt_tokens": -1000, "completion_tokens": 5},  # a refund
        {"prompt_tokens": 12.5, "completion_tokens": 5},
        {"prompt_tokens": "12", "completion_tokens": 5},
        {"prompt_tokens": True, "completion_tokens": 5},
    ],
    ids=["huge", "negative", "fraction", "string", "boolean"],
)
@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
async def test_usage_that_cannot_be_real_is_counted_by_the_router(
    upstream: CannedUpstream, reported: dict[str, Any], stream: bool
) -> None:
    # It was taken as it came (int() of it): 10**30 prompt tokens were billed, and then the outcome log and
    # the cache could not store the call; -1000 made the call pay back.
    message = {"role": "assistant", "content": "Hello world"}
    answer = {"choices": [{"index": 0, "message": message, "finish_reason": "stop"}], "usage": reported}
    if stream:  # the standard library's JSON: orjson refuses an int past 64 bits
        events = [delta("Hello world", "stop"), {"choices": [], "usage": reported}]
        upstream.body = b"".join(f"data: {json.dumps(e)}\n\n".encode() for e in events) + b"data: [DONE]\n\n"
    else:
        upstream.body = json.dumps(answer).encode()
    _, result = await call(upstream, stream=stream)
    assert result.usage_estimated and result.usage.prompt_tokens == 1  # "hi": the router's own estimate
    assert 0 < result.cost_usd < 1e-3


async def test_whole_numbers_sent_as_floats_are_usage(upstream: CannedUpstream) -> None:
    message = {"role": "assistant", "content": "Hello world"}
    usage = {"prompt_tokens": 12.0, "completion_tokens": 3}
    upstream.body = orjson.dumps(
        {"choices": [{"index": 0, "message": message, "finish_reason": "stop"}], "usage": usage}
    )
    _, result = await call(upstream, stream=False)
    assert not result.usage_estimated and (result.usage.prompt_tokens, result.usage.completion_tokens) == (12, 3)
