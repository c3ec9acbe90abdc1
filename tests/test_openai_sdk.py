"""The service as product backends use it: through the real `openai` SDK, over real HTTP, against the
simulated fleet. What the SDK sends (by default and with the common options) is accepted; what it gets
back parses into its types, and errors into the right exception classes."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import openai
import pytest

from router.auth import hash_key
from router.simulator.runner import SimulatorServer
from tests.conftest import sim_stats
from tests.test_chat_api import patch_model

Service = Callable[..., str]
ASK: list[Any] = [{"role": "user", "content": "Explain how a hash map handles collisions."}]
KEY = "sk-sdk-client"


def client(base: str, key: str = "anything") -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{base}/v1", api_key=key, max_retries=0)


def test_a_completion_parses_with_the_router_headers(make_service: Service) -> None:
    raw = client(make_service()).chat.completions.with_raw_response.create(model="moa-router", messages=ASK)
    completion = raw.parse()
    assert completion.object == "chat.completion" and completion.choices[0].message.content
    assert completion.choices[0].finish_reason == "stop" and completion.usage and completion.usage.total_tokens > 0
    assert completion.id == raw.headers["x-request-id"] == completion._request_id
    assert raw.headers["x-moa-route"] in ("cheap", "mixture") and float(raw.headers["x-moa-cost-usd"]) > 0


@pytest.mark.parametrize("route", ["cheap", "mixture"])
def test_a_stream_with_usage_adds_up_to_the_same_answer(make_service: Service, route: str) -> None:
    sdk = client(make_service(cache={"enabled": False}))
    headers = {"x-moa-route": route}
    plain = sdk.chat.completions.create(model="moa-router", messages=ASK, temperature=0, extra_headers=headers)
    chunks = list(
        sdk.chat.completions.create(
            model="moa-router",
            messages=ASK,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
            extra_headers=headers,
        )
    )
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    assert text == plain.choices[0].message.content
    assert chunks[-1].choices == [] and chunks[-1].usage == plain.usage
    assert [chunk.choices[0].finish_reason for chunk in chunks if chunk.choices][-1] == "stop"


async def test_the_async_client_completes_and_streams(make_service: Service) -> None:
    async with openai.AsyncOpenAI(base_url=f"{make_service()}/v1", api_key="k", max_retries=0) as sdk:
        completion = await sdk.chat.completions.create(model="moa-router", messages=ASK, temperature=0)
        stream = await sdk.chat.completions.create(model="moa-router", messages=ASK, temperature=0, stream=True)
        text = "".join([chunk.choices[0].delta.content or "" async for chunk in stream if chunk.choices])
    assert text == completion.choices[0].message.content


# Each of these was a 400 ("unknown parameter", "Input should be a valid boolean").
ACCEPTED: dict[str, dict[str, Any]] = {
    "stream null": {"stream": None},  # OpenAI's `stream` is nullable; generated clients send null
    "safety_identifier": {"safety_identifier": "user-3f2a"},  # OpenAI's successor of `user`
    "prompt caching hints": {
        "prompt_cache_key": "tenant-a:faq",
        "prompt_cache_retention": "24h",
        "prompt_cache_options": {"mode": "implicit"},
    },
    "include_obfuscation": {"stream": True, "stream_options": {"include_usage": True, "include_obfuscation": False}},
    "text part with a cache breakpoint": {
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hi", "prompt_cache_breakpoint": {}}]}]
    },
    "service_tier default": {"service_tier": "default"},
    "modalities text": {"modalities": ["text"]},
    "moderation and verbosity null": {"extra_body": {"moderation": None, "verbosity": None}},
}


@pytest.mark.parametrize("options", ACCEPTED.values(), ids=ACCEPTED.keys())
def test_options_that_ask_nothing_the_router_cannot_give_are_accepted(
    make_service: Service, options: dict[str, Any]
) -> None:
    sdk = client(make_service())
    reply = sdk.chat.completions.create(**{"model": "moa-router", "messages": ASK, **options})
    if options.get("stream"):
        assert any(chunk.choices and chunk.choices[0].delta.content for chunk in reply)
    else:
        assert reply.choices[0].message.content


def test_a_reply_sent_back_as_the_sdk_dumps_it_continues_the_conversation(make_service: Service) -> None:
    # `message.model_dump()` carries refusal, annotations, audio, function_call and tool_calls, all null;
    # they were refused as unknown parameters. A refused turn's refusal is what the upstream sees of it.
    sdk = client(make_service())
    first = sdk.chat.completions.create(model="moa-router", messages=ASK)
    dumped = first.choices[0].message.model_dump()
    assert {"refusal", "annotations", "tool_calls"} <= set(dumped)
    refused = {"role": "assistant", "content": None, "refusal": "I can't help with that."}
    follow_up = {"role": "user", "content": "And with open addressing?"}
    for history in ([*ASK, dumped, follow_up], [*ASK, refused, follow_up]):
        assert sdk.chat.completions.create(model="moa-router", messages=history).choices[0].message.content


TOOL_TURNS: dict[str, tuple[list[Any], str]] = {
    "tool result": ([*ASK, {"role": "tool", "content": "42", "tool_call_id": "call_1"}], "messages.1.role"),
    "function result": ([*ASK, {"role": "function", "content": "42", "name": "f"}], "messages.1.role"),
    "assistant tool call": (
        [
            *ASK,
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}],
            },
        ],
        "messages.1.tool_calls",
    ),
}


@pytest.mark.parametrize(("messages", "param"), TOOL_TURNS.values(), ids=TOOL_TURNS.keys())
def test_tool_turns_are_refused_by_their_place(
    make_service: Service, sim: SimulatorServer, messages: list[Any], param: str
) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        client(make_service()).chat.completions.create(model="moa-router", messages=messages)
    assert (raised.value.code, raised.value.param) == ("unsupported_param", param)
    assert "tools" in raised.value.message
    assert sim_stats(sim)["total_calls"] == 0


BAD_VALUES: dict[str, tuple[dict[str, Any], str, str]] = {
    # The param was lost (null): the field names were taken for pydantic's union member tags.
    "stream": ({"extra_body": {"stream": "maybe"}}, "stream", "valid boolean"),
    "stream_options": ({"stream": True, "stream_options": {"include_usage": "x"}}, "stream_options.include_usage", ""),
    # The message was "Input should be a valid string" (the mismatch on the union's first member).
    "content part": (
        {"messages": [{"role": "user", "content": [{"type": "text", "text": "hi", "colour": "red"}]}]},
        "messages.0.content.0.colour",
        "unknown parameter",
    ),
}


@pytest.mark.parametrize(("options", "param", "says"), BAD_VALUES.values(), ids=BAD_VALUES.keys())
def test_a_bad_value_is_a_400_naming_its_parameter(
    make_service: Service, options: dict[str, Any], param: str, says: str
) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        client(make_service()).chat.completions.create(**{"model": "moa-router", "messages": ASK, **options})
    assert (raised.value.code, raised.value.param, raised.value.type) == (
        "invalid_request",
        param,
        "invalid_request_error",
    )
    assert says in raised.value.message


def test_errors_parse_into_the_sdks_exception_classes(
    make_service: Service, sim: SimulatorServer, redis_url: str
) -> None:
    auth = {"open": False, "keys": [{"tenant": "sdk", "key_sha256": hash_key(KEY)}], "requests_per_minute": 3}
    base = make_service(
        redis_url=redis_url, redis_prefix=f"t{uuid.uuid4().hex[:10]}", auth=auth, limits={"max_body_bytes": 4096}
    )
    sdk, cheap = client(base, KEY), {"x-moa-route": "cheap"}
    with pytest.raises(openai.AuthenticationError) as unauthorised:
        client(base, "sk-wrong").chat.completions.create(model="moa-router", messages=ASK)
    assert unauthorised.value.code == "invalid_api_key"
    with pytest.raises(openai.APIStatusError) as too_large:  # 1 of 3 requests
        sdk.chat.completions.create(model="moa-router", messages=[{"role": "user", "content": "x" * 5000}])
    assert (too_large.value.status_code, too_large.value.code) == (413, "body_too_large")
    patch_model(sim, "cheap-1", error_rate=1.0)
    with pytest.raises(openai.InternalServerError) as failed:  # 2 of 3
        sdk.chat.completions.create(model="moa-router", messages=ASK, extra_headers=cheap)
    assert (failed.value.status_code, failed.value.code, failed.value.type) == (502, "upstream_error", "api_error")
    patch_model(sim, "cheap-1", error_rate=0.0, drop_stream_rate=1.0)
    with pytest.raises(openai.APIError) as mid_stream:  # 3 of 3: the stream starts, then breaks
        for _ in sdk.chat.completions.create(model="moa-router", messages=ASK, stream=True, extra_headers=cheap):
            pass
    assert mid_stream.value.code == "upstream_error"
    with pytest.raises(openai.RateLimitError) as limited:
        sdk.chat.completions.create(model="moa-router", messages=ASK)
    assert limited.value.code == "rate_limit_exceeded" and int(limited.value.response.headers["retry-after"]) > 0


def test_the_model_list_parses(make_service: Service) -> None:
    sdk = client(make_service())
    models = sdk.models.list()
    assert [model.id for model in models.data] == ["moa-router"]
    assert sdk.models.retrieve("moa-router").id == "moa-router"  # tools check that a model exists
    with pytest.raises(openai.NotFoundError) as missing:
        sdk.models.retrieve("gpt-5-turbo")
    assert missing.value.code == "model_not_found"


def test_the_sdk_does_not_retry_a_failure_the_router_already_retried(
    make_service: Service, sim: SimulatorServer
) -> None:
    # The SDK retries a 5xx twice by default: each retry would run (and bill) the failing route again.
    base = make_service(resilience={"max_attempts": 1})
    patch_model(sim, "cheap-1", error_rate=1.0)
    sdk = openai.OpenAI(base_url=f"{base}/v1", api_key="anything")  # the SDK's default retries
    with pytest.raises(openai.InternalServerError):
        sdk.chat.completions.create(model="moa-router", messages=ASK, extra_headers={"x-moa-route": "cheap"})
    assert sim_stats(sim)["models"]["cheap-1"]["calls"] == 1
