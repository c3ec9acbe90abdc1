"""The chat request's checks: content parts, and parameters the router cannot honour."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from classifier.registry import ModelRegistry
from classifier.text import messages_to_text
from router.api.errors import APIError
from router.api.schemas import parse_chat_request
from router.cache_key import cache_key
from router.config import LimitSettings

USER = {"role": "user", "content": "hi"}


def parse(**body: Any) -> Any:
    return parse_chat_request(orjson.dumps({"model": "moa-router", "messages": [USER], **body}), LimitSettings())


def refusal(**body: Any) -> APIError:
    with pytest.raises(APIError) as raised:
        parse(**body)
    assert raised.value.status == 400
    return raised.value


def test_text_content_parts_are_sent_upstream_as_the_client_sent_them() -> None:
    parts = [{"type": "text", "text": "take ibuprofen", "prompt_cache_breakpoint": {}}, {"type": "text", "text": "now"}]
    chat = parse(messages=[{"role": "user", "content": parts}])
    sent = [{"type": "text", "text": "take ibuprofen"}, {"type": "text", "text": "now"}]  # the cost-only hint dropped
    assert chat.upstream_messages() == [{"role": "user", "content": sent}]
    one_part = parse(messages=[{"role": "user", "content": parts[:1]}, {"role": "user", "content": []}])
    assert one_part.upstream_messages() == [{"role": "user", "content": "take ibuprofen"}, USER | {"content": ""}]


def test_the_classifier_reads_the_boundaries_of_text_parts(tmp_path: Path) -> None:
    # Joined for upstream, "take ibuprofen" + "for a headache" was scored as "take ibuprofenfor a headache".
    parts = [{"type": "text", "text": "take ibuprofen"}, {"type": "text", "text": "for a headache"}]
    chat = parse(messages=[{"role": "user", "content": parts}])
    assert messages_to_text(chat.upstream_messages()) == "take ibuprofen\nfor a headache"
    scorer = ModelRegistry(tmp_path / "models").load().scorer
    assert scorer.score_messages(chat.upstream_messages()) == scorer.score_text("take ibuprofen\nfor a headache")


def test_a_non_text_content_part_is_refused_by_its_place_and_type() -> None:
    image = {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}
    error = refusal(messages=[{"role": "user", "content": [{"type": "text", "text": "what is this?"}, image]}])
    assert error.param == "messages.0.content"
    assert "part 1 is of type 'image_url'" in error.message and "only text" in error.message


@pytest.mark.parametrize(
    "param",
    [
        {"store": False},
        {"logprobs": False},
        {"tools": []},
        {"tool_choice": "none"},
        {"service_tier": "auto"},
        {"logit_bias": {}},
        {"parallel_tool_calls": None},
    ],
)
def test_an_unsupported_parameter_that_asks_for_nothing_is_accepted_and_dropped(param: dict[str, Any]) -> None:
    chat = parse(**param)  # accepted: the parameter was dropped, or strict parsing would refuse it as unknown
    [name] = param
    assert name not in chat.model_dump()


@pytest.mark.parametrize(
    "param",
    [
        {"store": True},
        {"logprobs": True},
        {"logprobs": 0},  # not false: a number where a flag belongs is refused, not read as one
        {"tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]},
        {"tool_choice": "auto"},
        {"service_tier": "flex"},
        {"logit_bias": {"50256": -100}},
    ],
)
def test_an_unsupported_parameter_that_asks_for_something_is_refused(param: dict[str, Any]) -> None:
    [name] = param
    error = refusal(**param)
    assert (error.code, error.param) == ("unsupported_param", name)


@pytest.mark.parametrize("name", ["api_base", "api_key", "base_url"])
def test_an_upstream_choice_is_refused_whatever_its_value(name: str) -> None:
    assert refusal(**{name: None}).code == "forbidden_param"


def test_a_refusal_belongs_to_an_assistant_turn_and_stands_for_its_missing_content() -> None:
    refused = {"role": "assistant", "content": None, "refusal": "I can't help with that."}
    chat = parse(messages=[USER, refused, USER])
    assert chat.upstream_messages()[1] == {"role": "assistant", "content": "I can't help with that."}
    error = refusal(messages=[{**USER, "refusal": "no"}])
    assert error.param == "messages.0" and "only an assistant message has a refusal" in error.message


def test_empty_tool_fields_of_an_assistant_turn_are_dropped() -> None:
    empty: dict[str, Any] = {
        "tool_calls": [],
        "function_call": None,
        "audio": None,
        "annotations": None,
        "refusal": None,
    }
    chat = parse(messages=[USER, {"role": "assistant", "content": "hello", **empty}, USER])
    assert chat.upstream_messages()[1] == {"role": "assistant", "content": "hello"}
    error = refusal(messages=[USER, {"role": "assistant", "content": "x", "audio": {"id": "audio_1"}}, USER])
    assert (error.code, error.param) == ("unsupported_param", "messages.1.audio")


def test_identifiers_and_prompt_caching_hints_change_neither_the_upstream_call_nor_the_cache_key() -> None:
    hints = {
        "user": "u1",
        "safety_identifier": "u1",
        "prompt_cache_key": "k",
        "prompt_cache_retention": "in_memory",
        "prompt_cache_options": {"mode": "explicit"},
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hi", "prompt_cache_breakpoint": {}}]}],
    }
    plain, hinted = parse(seed=1), parse(seed=1, **hints)
    assert hinted.sampling_params() == plain.sampling_params() == {"seed": 1}
    assert hinted.upstream_messages() == plain.upstream_messages()
    keys = {cache_key("p", "tenant", "", chat, "cheap", ["openai/cheap-1"]) for chat in (plain, hinted)}
    assert len(keys) == 1


@pytest.mark.parametrize("name", ["max_tokens", "max_completion_tokens"])
def test_a_token_limit_over_the_cap_is_refused_under_the_name_it_was_sent_as(name: str) -> None:
    error = refusal(**{name: LimitSettings().max_tokens_cap + 1})
    assert (error.code, error.param) == ("max_tokens_too_large", name) and error.message.startswith(f"{name} ")


@pytest.mark.parametrize(
    ("stop", "message"),
    [
        (["a", "b", "c", "d", "e"], "stop: List should have at most 4 items"),  # was "should be a valid string"
        (["a", 1], "stop.1: Input should be a valid string"),
        (7, "stop: Input should be a valid string"),
    ],
)
def test_a_bad_stop_says_what_is_wrong_with_it(stop: Any, message: str) -> None:
    error = refusal(stop=stop)
    assert error.message.startswith(message) and error.param == message.split(":")[0]
