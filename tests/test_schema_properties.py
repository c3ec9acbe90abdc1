"""Property tests of the request schema: any body is answered 2xx or 4xx, never 5xx; clients can never
choose an upstream URL or credentials."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from router.api.errors import APIError
from router.api.schemas import FORBIDDEN_PARAMS, ChatRequest, parse_chat_request
from router.config import LimitSettings
from router.simulator.runner import SimulatorServer
from tests.conftest import sim_stats

LIMITS = LimitSettings(max_body_bytes=64_000, max_messages=8, max_tokens_cap=4096)

finite_floats = st.floats(allow_nan=False, allow_infinity=False)
json_scalars = st.none() | st.booleans() | st.integers() | finite_floats | st.text(max_size=20)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)
roles = st.sampled_from(["system", "developer", "user", "assistant", "tool", "function", "", "USER"])
contents = st.one_of(
    st.text(max_size=40),
    st.none(),
    st.lists(st.fixed_dictionaries({"type": st.sampled_from(["text", "image_url"]), "text": st.text(max_size=10)})),
    json_values,
)
# The assistant turn's fields: refused or dropped by name before the schema sees them.
message_extras = {name: json_values for name in ("refusal", "tool_calls", "function_call", "audio", "annotations")}
messages = (
    st.lists(st.fixed_dictionaries({"role": roles, "content": contents}, optional=message_extras), max_size=10)
    | json_values
)
FIELDS = (
    "stream",
    "temperature",
    "top_p",
    "max_tokens",
    "max_completion_tokens",
    "n",
    "stop",
    "seed",
    "presence_penalty",
    "frequency_penalty",
    "response_format",
    "user",
    "safety_identifier",
    "prompt_cache_key",
    "prompt_cache_retention",
    "prompt_cache_options",
    "metadata",
    "cache",
    "stream_options",
    "tools",
    "api_base",
)
# Bodies close to a valid request, so that generation reaches every field's validation.
near_valid = st.fixed_dictionaries(
    {"model": st.text(max_size=10) | json_values, "messages": messages},
    optional={name: json_values for name in FIELDS},
)
bodies = near_valid | json_values


def outcome(body: bytes) -> int:
    """200 for an accepted request, else the status of the APIError; anything else fails the test."""
    try:
        parse_chat_request(body, LIMITS)
    except APIError as exc:
        return exc.status
    return 200


@settings(max_examples=400, deadline=None)
@given(bodies)
def test_any_json_body_is_accepted_or_refused_with_a_4xx(body: Any) -> None:
    status = outcome(json.dumps(body).encode())
    assert status == 200 or 400 <= status < 500


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_any_bytes_are_accepted_or_refused_with_a_4xx(body: bytes) -> None:
    status = outcome(body)
    assert status == 200 or 400 <= status < 500


@settings(max_examples=200, deadline=None)
@given(near_valid)
def test_an_accepted_request_respects_the_limits(body: dict[str, Any]) -> None:
    try:
        chat = parse_chat_request(json.dumps(body).encode(), LIMITS)
    except APIError:
        return
    assert isinstance(chat, ChatRequest)
    assert 1 <= len(chat.messages) <= LIMITS.max_messages
    assert any(m.role == "user" for m in chat.messages)
    wanted = chat.requested_max_tokens()
    assert wanted is None or wanted <= LIMITS.max_tokens_cap
    assert not FORBIDDEN_PARAMS & set(body)


VALID = {"model": "moa-router", "messages": [{"role": "user", "content": "hello"}]}


@pytest.mark.parametrize("name", sorted(FORBIDDEN_PARAMS))
def test_clients_cannot_choose_upstreams_or_credentials(name: str) -> None:
    with pytest.raises(APIError) as raised:
        parse_chat_request(json.dumps({**VALID, name: "http://169.254.169.254/latest"}).encode(), LIMITS)
    assert (raised.value.status, raised.value.code, raised.value.param) == (400, "forbidden_param", name)


def test_the_service_never_calls_an_upstream_a_client_names(make_service: Any, sim: SimulatorServer) -> None:
    base = make_service()
    with httpx.Client(base_url=base, timeout=10) as client:
        for name in sorted(FORBIDDEN_PARAMS):
            response = client.post("/v1/chat/completions", json={**VALID, name: "http://127.0.0.1:1/v1"})
            assert response.status_code == 400 and response.json()["error"]["code"] == "forbidden_param"
        assert sim_stats(sim)["total_calls"] == 0
        # The client's `model` names nothing upstream: the router's configured models answer.
        answered = client.post("/v1/chat/completions", json={**VALID, "model": "openai/http://127.0.0.1:1/v1"})
    assert answered.status_code == 200
    assert answered.json()["model"] in {"openai/cheap-1", "openai/agg-1"}


@pytest.fixture
def service(make_service: Any) -> str:
    base: str = make_service(limits={"max_messages": 8, "max_tokens_cap": 4096})
    return base


# The service fixture is made once and serves every example of the test (hence the health check).
@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(body=bodies)
def test_the_service_answers_any_body_without_a_5xx(service: str, body: Any) -> None:
    response = httpx.post(f"{service}/v1/chat/completions", content=json.dumps(body).encode(), timeout=30)
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        assert set(response.json()["error"]) >= {"message", "type", "code"}


def test_the_service_enforces_body_message_and_token_limits(service: str, sim: SimulatorServer) -> None:
    with httpx.Client(base_url=service, timeout=10) as client:
        huge = {**VALID, "messages": [{"role": "user", "content": "x" * 1_100_000}]}
        too_big = client.post("/v1/chat/completions", content=json.dumps(huge).encode())
        many = {**VALID, "messages": [{"role": "user", "content": "hi"}] * 9}
        too_many = client.post("/v1/chat/completions", json=many)
        too_long = client.post("/v1/chat/completions", json={**VALID, "max_tokens": 4097})
    assert (too_big.status_code, too_big.json()["error"]["code"]) == (413, "body_too_large")
    assert (too_many.status_code, too_many.json()["error"]["code"]) == (400, "too_many_messages")
    assert (too_long.status_code, too_long.json()["error"]["code"]) == (400, "max_tokens_too_large")
    assert sim_stats(sim)["total_calls"] == 0
