"""OpenAI's chat completion shapes: the JSON response and the SSE chunks of a stream."""

from __future__ import annotations

import time
from typing import Any

import orjson

from router.providers.base import Usage

DONE = b"data: [DONE]\n\n"


def completion_body(
    request_id: str, model: str, text: str, finish_reason: str, usage: Usage, extra: dict[str, Any]
) -> bytes:
    return orjson.dumps(
        {
            "id": request_id,
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": finish_reason,
                    "logprobs": None,
                }
            ],
            "usage": usage.as_openai(),
            "moa": extra,
        }
    )


def chunk(request_id: str, model: str, created: int, delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
    payload = {
        "id": request_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}],
    }
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def usage_chunk(request_id: str, model: str, created: int, usage: Usage, extra: dict[str, Any]) -> bytes:
    payload = {
        "id": request_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [],
        "usage": usage.as_openai(),
        "moa": extra,
    }
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def error_event(message: str, code: str) -> bytes:
    return b"data: " + orjson.dumps({"error": {"message": message, "type": "api_error", "code": code}}) + b"\n\n"
