"""POST /v1/feedback: a user's rating of one answered request, attached to it as an outcome.

Body: `{"request_id": str, "rating": "good" | "bad", "comment"?: str}`. A tenant can rate only its own
requests (another tenant's id is "not found", so ids leak nothing), within `ledger.feedback_window_s`.
Idempotent per request id: the first rating stands; posting it again answers 200 with
`"status": "already_recorded"`, posting the other rating answers 409. See router.outcomes for the
difficulty label a rating gives.

The outcome log writes events in batches, so a rating can come before its request's event is in Redis:
a request still buffered in this replica is written at once, and one answered by another replica is
waited for (up to two of its flush intervals) before the id is called unknown.
"""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any, cast

import orjson
from fastapi import APIRouter, Request
from redis.exceptions import RedisError
from starlette.responses import Response

from router.api.body import read_limited_body
from router.api.errors import APIError
from router.config import LedgerSettings
from router.ledger import RECORD_VERSION, LedgerKeys, OutcomeLog
from router.outcomes import Rating, feedback_label
from router.state import AppState, get_state

router = APIRouter()

MAX_BODY_BYTES = 16_384
MAX_COMMENT_CHARS = 2_000
_RATINGS: tuple[Rating, ...] = ("good", "bad")
# The ids the chat endpoint gives (router/api/exchange.py): only such an id is worth waiting for.
_SERVED_ID = re.compile(r"chatcmpl-[0-9a-f]{32}")
_POLL_S = 0.05
_MAX_WAIT_S = 5.0

# Record the rating once (SET NX) and, only then, append the outcome: one atomic step.
_RECORD_ONCE = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2]) then
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', 'o', ARGV[4])
  return false
end
return redis.call('GET', KEYS[1])
"""


def _parse(body: bytes) -> tuple[str, Rating, str | None]:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise APIError(400, f"body is not valid JSON: {exc}", "invalid_json") from exc
    if not isinstance(data, dict):
        raise APIError(400, "body must be a JSON object", "invalid_request")
    request_id = data.get("request_id")
    if not isinstance(request_id, str) or not 1 <= len(request_id) <= 128:
        raise APIError(400, "request_id must be a string of 1 to 128 characters", "invalid_request", "request_id")
    rating = data.get("rating")
    if rating not in _RATINGS:
        raise APIError(400, "rating must be 'good' or 'bad'", "invalid_rating", "rating")
    comment = data.get("comment")
    if comment is not None and (not isinstance(comment, str) or len(comment) > MAX_COMMENT_CHARS):
        message = f"comment must be a string of at most {MAX_COMMENT_CHARS} characters"
        raise APIError(400, message, "invalid_request", "comment")
    return request_id, cast(Rating, rating), comment


def _outcome_log(state: AppState) -> tuple[OutcomeLog, Any]:
    ledger = state.components.get("ledger")
    if state.redis is None or not isinstance(ledger, OutcomeLog):
        raise APIError(503, "feedback needs the outcome log, which is not running", "feedback_unavailable")
    return ledger, state.redis


def _write_lag_s(settings: LedgerSettings) -> float:
    """How long another replica may still hold an answered request's event before writing it (every
    replica runs the same config)."""
    return min(_MAX_WAIT_S, 2 * settings.flush_interval_s + 0.5)


async def _find_request(
    redis: Any, ledger: OutcomeLog, request_id: str, wait_s: float
) -> tuple[str, dict[str, Any]] | None:
    """(stream id, index summary) of a logged request. A request still buffered in this replica's log is
    written first; one this replica does not hold may be buffered in another's, so it is waited for up
    to `wait_s` (a rating can arrive before the event's batch is written)."""
    key = ledger.keys.request(request_id)
    # Checked before the read: the writer may finish the batch while the GET is on its way, and then
    # neither the buffer nor that GET's answer shows the request.
    buffered = ledger.is_pending(request_id)
    raw = await redis.get(key)
    if raw is None and buffered:
        await ledger.flush(timeout_s=2.0)
        raw = await redis.get(key)
    if raw is None and not buffered and _SERVED_ID.fullmatch(request_id):
        deadline = time.monotonic() + wait_s
        while raw is None and time.monotonic() < deadline:
            await asyncio.sleep(_POLL_S)
            raw = await redis.get(key)
    if raw is None:
        return None
    stream_id, _, summary = bytes(raw).decode().partition(" ")
    return stream_id, orjson.loads(summary)


async def _logged_event(redis: Any, keys: LedgerKeys, stream_id: str) -> dict[str, Any]:
    """The request's logged event; empty when the stream has already been trimmed past it."""
    entries = await redis.xrange(keys.events, min=stream_id, max=stream_id)
    if not entries:
        return {}
    record: dict[str, Any] = orjson.loads(entries[0][1][b"e"])
    return record


_OPENAPI: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["request_id", "rating"],
                    "properties": {
                        "request_id": {"type": "string", "minLength": 1, "maxLength": 128},
                        "rating": {"type": "string", "enum": list(_RATINGS)},
                        "comment": {"type": "string", "maxLength": MAX_COMMENT_CHARS},
                    },
                }
            }
        },
    }
}


@router.post("/v1/feedback", response_model=None, openapi_extra=_OPENAPI)
async def post_feedback(request: Request) -> Response:
    state = get_state(request)
    tenant = state.auth.tenant(request.headers)
    # Read up to the limit only: a client streaming gigabytes was buffered whole before being refused.
    request_id, rating, comment = _parse(await read_limited_body(request, MAX_BODY_BYTES))
    ledger, redis = _outcome_log(state)
    try:
        found = await _find_request(redis, ledger, request_id, _write_lag_s(state.settings.ledger))
        if found is None or found[1].get("tenant") != tenant:
            raise APIError(
                404,
                f"no request {request_id!r} to rate (unknown, another tenant's, or too old)",
                "request_not_found",
                "request_id",
            )
        stream_id, summary = found
        if int(summary.get("status", 200)) >= 400:
            raise APIError(409, f"request {request_id!r} failed; there is no answer to rate", "request_failed")
        event = await _logged_event(redis, ledger.keys, stream_id)
        route = str(summary.get("route", ""))
        label = feedback_label(route, rating, event.get("fallback"))
        now = time.time()
        outcome: dict[str, Any] = {
            "v": RECORD_VERSION,
            "kind": "feedback",
            "request_id": request_id,
            "t": now,
            "tenant": tenant,
            "route": route,
            "cache": summary.get("cache"),
            "rating": rating,
            # Free text that may quote the prompt: kept (redacted) only where prompts are.
            "comment": None if comment is None or not ledger.stores_prompts else ledger.redactor(comment),
            "label": label.to_json(),
            "classifier_version": event.get("classifier_version"),
            "difficulty": event.get("difficulty"),
            "stakes": event.get("stakes"),
            "prompt_hash": event.get("prompt_hash"),
            "prompt_hash_key_id": event.get("prompt_hash_key_id"),
        }
        if "messages" in event:
            outcome["messages"] = event["messages"]
        settings = state.settings.ledger
        script = redis.register_script(_RECORD_ONCE)
        existing = await script(
            keys=[ledger.keys.feedback(request_id), ledger.keys.outcomes],
            args=[
                orjson.dumps({"rating": rating, "t": now}),
                settings.feedback_window_s,
                settings.retention,
                orjson.dumps(outcome),
            ],
        )
    except (RedisError, OSError) as exc:
        raise APIError(
            503, f"feedback could not be stored: the outcome log's Redis failed ({exc})", "feedback_unavailable"
        ) from exc
    status = "recorded"
    if existing is not None:
        first: Rating = orjson.loads(existing)["rating"]
        if first != rating:
            raise APIError(409, f"request {request_id!r} was already rated {first!r}", "feedback_exists", "rating")
        status = "already_recorded"
    body = {
        "object": "feedback",
        "request_id": request_id,
        "rating": rating,
        "status": status,
        "label": label.to_json(),
    }
    return Response(orjson.dumps(body), media_type="application/json")
