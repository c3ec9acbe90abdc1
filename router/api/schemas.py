"""The chat request as clients may send it: OpenAI's shape, checked strictly, with clear errors."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from router.api.errors import APIError
from router.config import LimitSettings

# OpenAI parameters the router cannot honour through a mixture: refused by name, never silently dropped.
UNSUPPORTED_PARAMS = frozenset(
    {
        "tools",
        "tool_choice",
        "functions",
        "function_call",
        "parallel_tool_calls",
        "logprobs",
        "top_logprobs",
        "logit_bias",
        "audio",
        "modalities",
        "prediction",
        "web_search_options",
        "reasoning_effort",
        "service_tier",
        "store",
        "moderation",
        "verbosity",
    }
)
# Values of those parameters that ask for nothing (what many SDKs send by default): accepted, and
# dropped, since they change no answer.
_ASKS_NOTHING: tuple[object, ...] = (None, False, [], {})
_ASKS_NOTHING_BY_NAME: dict[str, tuple[object, ...]] = {
    "tool_choice": ("none",),
    "service_tier": ("auto", "default"),
    "modalities": (["text"],),
}
# Fields of an assistant message that belong to tool calls and audio: only their empty values are accepted
# (and dropped). The SDK's own `message.model_dump()` sends every one of them as null.
_ASSISTANT_TOOL_FIELDS = ("tool_calls", "function_call", "audio", "annotations")
_TOOL_ROLES = frozenset({"tool", "function"})
NO_USER_TURN = "messages must contain at least one message with role 'user'"
# Clients never choose where a request goes upstream, nor with which credentials.
FORBIDDEN_PARAMS = frozenset(
    {
        "api_base",
        "base_url",
        "api_key",
        "api_version",
        "custom_llm_provider",
        "extra_headers",
        "headers",
        "organization",
    }
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TextPart(_Strict):
    type: Literal["text"]
    text: str
    # An upstream prompt-caching hint: it changes cost, never the answer; accepted and not forwarded.
    prompt_cache_breakpoint: dict[str, Any] | None = None


class ChatMessage(_Strict):
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart] | None = None
    name: Annotated[str, Field(max_length=64)] | None = None
    refusal: str | None = None  # an assistant's earlier refusal, as OpenAI's responses carry it

    @field_validator("content", mode="before")
    @classmethod
    def _text_parts_only(cls, content: Any) -> Any:
        # Said plainly: otherwise pydantic's error for an image part is "Input should be a valid string".
        if isinstance(content, list):
            for index, part in enumerate(content):
                kind = part.get("type") if isinstance(part, dict) else None
                if isinstance(kind, str) and kind != "text":
                    raise ValueError(f"part {index} is of type '{kind}': only text content parts are supported")
        return content

    @model_validator(mode="after")
    def _refusal_by_the_assistant(self) -> ChatMessage:
        if self.refusal is not None and self.role != "assistant":
            raise ValueError(f"only an assistant message has a refusal, not a '{self.role}' message")
        return self

    def upstream_content(self) -> str | list[dict[str, str]]:
        """The content as upstream models are sent it: as the client sent it. Several text parts stay parts,
        so that every reader sees where one ends (joined into one string, "take ibuprofen" and "for a
        headache" were scored as "ibuprofenfor"; the classifier reads each part as a line). One part is sent
        as its text, which every upstream reads alike. Cost-only hints (`prompt_cache_breakpoint`) are not
        forwarded."""
        if isinstance(self.content, list):
            if len(self.content) > 1:
                return [{"type": "text", "text": part.text} for part in self.content]
            return self.content[0].text if self.content else ""
        # A refused turn has no content; its refusal is what the conversation saw.
        return self.content or self.refusal or ""

    def as_upstream(self) -> dict[str, Any]:
        message: dict[str, Any] = {
            "role": "system" if self.role == "developer" else self.role,
            "content": self.upstream_content(),
        }
        if self.name:
            message["name"] = self.name
        return message


class StreamOptions(_Strict):
    include_usage: bool = False
    # The router's chunks carry no obfuscation padding whichever way this is set.
    include_obfuscation: bool | None = None


class ResponseFormat(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)
    type: Literal["text", "json_object", "json_schema"]


class CacheControl(_Strict):
    """Per-request cache controls (also settable by the `x-moa-cache-control` header)."""

    no_cache: bool = False  # skip the lookup (the answer may still be stored)
    no_store: bool = False  # do not store this answer
    ttl_s: Annotated[int, Field(ge=1, le=30 * 86400)] | None = None
    namespace: Annotated[str, Field(max_length=64, pattern=r"^[A-Za-z0-9_.:-]*$")] | None = None


class ChatRequest(_Strict):
    model: Annotated[str, Field(min_length=1, max_length=256)]
    messages: Annotated[list[ChatMessage], Field(min_length=1)]
    stream: bool = False
    stream_options: StreamOptions | None = None
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    top_p: Annotated[float, Field(ge=0, le=1)] | None = None
    max_tokens: Annotated[int, Field(ge=1)] | None = None
    max_completion_tokens: Annotated[int, Field(ge=1)] | None = None
    n: Literal[1] | None = None
    stop: str | Annotated[list[str], Field(max_length=4)] | None = None
    seed: int | None = None
    presence_penalty: Annotated[float, Field(ge=-2, le=2)] | None = None
    frequency_penalty: Annotated[float, Field(ge=-2, le=2)] | None = None
    response_format: ResponseFormat | None = None
    user: Annotated[str, Field(max_length=256)] | None = None
    safety_identifier: Annotated[str, Field(max_length=256)] | None = None  # OpenAI's successor of `user`
    metadata: dict[str, str] | None = None
    # Upstream prompt-caching hints: they change cost, never the answer; accepted and not forwarded.
    prompt_cache_key: Annotated[str, Field(max_length=256)] | None = None
    prompt_cache_retention: Literal["in_memory", "24h"] | None = None
    prompt_cache_options: dict[str, Any] | None = None
    cache: CacheControl | None = None

    @field_validator("stream", mode="before")
    @classmethod
    def _null_stream_is_false(cls, stream: Any) -> Any:
        return False if stream is None else stream  # OpenAI's `stream` is nullable

    @field_validator("messages")
    @classmethod
    def _needs_user_turn(cls, messages: list[ChatMessage]) -> list[ChatMessage]:
        if not any(m.role == "user" for m in messages):
            raise ValueError(NO_USER_TURN)
        return messages

    def upstream_messages(self) -> list[dict[str, Any]]:
        return [m.as_upstream() for m in self.messages]

    def sampling_params(self) -> dict[str, Any]:
        """The parameters passed through to upstream models (each changes the answer: cache key too)."""
        params: dict[str, Any] = {}
        for name in ("top_p", "stop", "seed", "presence_penalty", "frequency_penalty"):
            value = getattr(self, name)
            if value is not None:
                params[name] = value
        if self.response_format is not None:
            params["response_format"] = self.response_format.model_dump()
        return params

    def requested_max_tokens(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens


# pydantic puts the union member's type in an error's location ("str", "list[TextPart]"); it means nothing
# to a client. Matched whole: a prefix match took the field names `stream` and `stream_options` for one.
_UNION_MEMBERS = frozenset({"str", "int", "float", "bool", "TextPart"})
_UNION_MEMBER_PREFIXES = ("list[", "dict[", "function-", "literal[")


def _client_loc(error: Any) -> list[str]:
    loc = [str(part) for part in error.get("loc", ())]
    return [p for p in loc if p not in _UNION_MEMBERS and not p.startswith(_UNION_MEMBER_PREFIXES)]


def _most_specific(errors: list[Any]) -> Any:
    """The error to report: the deepest one, so that a union's mismatch on its first member ("Input should
    be a valid string") does not hide what is wrong with the member the client meant (an unknown field);
    at equal depth, one that is not a type mismatch (five stop sequences: "at most 4 items", not "should
    be a valid string")."""
    # max keeps the first of equals
    return max(errors, key=lambda error: (len(_client_loc(error)), not str(error.get("type", "")).endswith("_type")))


def _describe(error: Any) -> tuple[str, str | None]:
    param = ".".join(_client_loc(error)) or None
    if error.get("type") == "extra_forbidden":
        return f"unknown parameter '{param}'", param
    return f"{param}: {error.get('msg')}" if param else str(error.get("msg")), param


def _asks_nothing(value: Any, also: tuple[object, ...] = ()) -> bool:
    """A value that asks for nothing (`false`, `[]`, ...) or one of `also`; `0` is not `false` here."""
    return any(value == nothing and type(value) is type(nothing) for nothing in _ASKS_NOTHING + also)


def _unsupported_asking_nothing(name: str, value: Any) -> bool:
    """An unsupported parameter sent with a value that asks for nothing (`"store": false`, `"tools": []`)."""
    return name in UNSUPPORTED_PARAMS and _asks_nothing(value, _ASKS_NOTHING_BY_NAME.get(name, ()))


def without_tool_turns(messages: Any) -> Any:
    """The messages with the empty tool-call fields of assistant turns dropped; a tool turn, or an assistant
    turn that called a tool, is refused by its place (tools are not supported)."""
    if not isinstance(messages, list):
        return messages  # pydantic says what is wrong with it
    checked: list[Any] = []
    for index, message in enumerate(messages):
        if isinstance(message, dict):
            role = message.get("role")
            if isinstance(role, str) and role in _TOOL_ROLES:
                raise APIError(
                    400,
                    f"messages.{index}: role '{role}' is not supported: moa-router does not call tools",
                    "unsupported_param",
                    f"messages.{index}.role",
                )
            if role == "assistant":
                for name in _ASSISTANT_TOOL_FIELDS:
                    if name in message and not _asks_nothing(message[name]):
                        raise APIError(
                            400,
                            f"messages.{index}.{name} is not supported by moa-router: it does not call tools",
                            "unsupported_param",
                            f"messages.{index}.{name}",
                        )
                message = {key: value for key, value in message.items() if key not in _ASSISTANT_TOOL_FIELDS}
        checked.append(message)
    return checked


def parse_chat_request(body: bytes, limits: LimitSettings) -> ChatRequest:
    """Parse and check a request body; every problem is an APIError with a 4xx status."""
    if len(body) > limits.max_body_bytes:
        raise APIError(
            413, f"request body is {len(body)} bytes; the limit is {limits.max_body_bytes}", "body_too_large"
        )
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise APIError(400, f"request body is not valid JSON: {exc.msg}", "invalid_json") from exc
    if not isinstance(data, dict):
        raise APIError(400, "request body must be a JSON object", "invalid_request")
    for name in data:
        if name in FORBIDDEN_PARAMS:
            raise APIError(
                400, f"parameter '{name}' is not accepted: the router chooses upstreams", "forbidden_param", name
            )
    data = {name: value for name, value in data.items() if not _unsupported_asking_nothing(name, value)}
    for name in data:
        if name in UNSUPPORTED_PARAMS:
            raise APIError(400, f"parameter '{name}' is not supported by moa-router", "unsupported_param", name)
    if "messages" in data:
        data["messages"] = without_tool_turns(data["messages"])
    try:
        chat = ChatRequest.model_validate(data)
    except ValidationError as exc:
        message, param = _describe(_most_specific(exc.errors()))
        raise APIError(400, message, "invalid_request", param) from exc
    if len(chat.messages) > limits.max_messages:
        raise APIError(
            400, f"{len(chat.messages)} messages; the limit is {limits.max_messages}", "too_many_messages", "messages"
        )
    wanted = chat.requested_max_tokens()
    if wanted is not None and wanted > limits.max_tokens_cap:
        sent_as = "max_completion_tokens" if chat.max_completion_tokens else "max_tokens"  # the one that counts
        raise APIError(
            400, f"{sent_as} {wanted} exceeds the limit of {limits.max_tokens_cap}", "max_tokens_too_large", sent_as
        )
    return chat
