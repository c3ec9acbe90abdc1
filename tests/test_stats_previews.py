"""Stats previews of expensive requests and the operator's redaction hook: a hook that raises on one prompt
costs that request its preview, not the stats of the process."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from router.events import RequestEvent
from router.mixture import CallRecord
from router.providers.base import Usage
from router.providers.pricing import Prices
from router.stats import MixtureCostEstimator, StatsRecorder
from router.stats_query import WINDOWS, stats_report


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[Any]:
    from redis.asyncio import Redis

    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()


def _event(request_id: str, at: float, prompt: str) -> RequestEvent:
    event = RequestEvent(request_id=request_id, tenant="acme", started_at=at, route="cheap", reason="easy")
    event.messages = [{"role": "user", "content": prompt}]
    event.calls.append(CallRecord("m", "cheap", "ok", 0.1, Usage(10, 10), cost_usd=0.5))
    return event


def _hook_refusing_secrets(text: str) -> str:
    # An operator's hook may raise on input it was not written for, as the outcome log expects.
    if "secret" in text:
        raise RuntimeError(f"cannot redact {text}")
    return text.upper()


async def test_a_redaction_hook_that_raises_costs_a_preview_not_the_stats(redis_client: Any) -> None:
    prefix = f"tprev{uuid.uuid4().hex[:10]}"
    now = 1_700_000_000.0 + 1800
    recorder = StatsRecorder(
        redis_client,
        prefix,
        MixtureCostEstimator([Prices(0, 0)], Prices(0, 0)),
        clock=lambda: now,
        redact=_hook_refusing_secrets,
    )
    recorder.record(_event("bad", now - 60, "my secret"))
    recorder.record(_event("good", now - 30, "hello"))
    await recorder.flush()  # raised the hook's error: the flush task ended and stats stopped for good
    report = await stats_report(redis_client, prefix, WINDOWS["hour"], now=now, top=10)
    assert report["totals"]["requests"] == 2
    previews = {entry["request_id"]: entry.get("preview") for entry in report["expensive"]}
    assert previews == {"bad": None, "good": "HELLO"}
    assert recorder.unflushed_events == 0
