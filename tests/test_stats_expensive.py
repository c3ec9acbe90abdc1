"""The most expensive requests listed by the stats: those of the window's own buckets, no more than a bucket
keeps, and their prompt previews (redacted by the operator's hook; a hook that raises on one prompt costs
that request its preview, not the stats of the process; not kept in the 400-day buckets)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from router.events import RequestEvent
from router.mixture import CallRecord
from router.providers.base import Usage
from router.providers.pricing import Prices
from router.stats import HOUR, TOP_PER_BUCKET, MixtureCostEstimator, StatsRecorder, bucket_start
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


# ---- the most expensive requests are those of the window's totals ----


def _cheap_event(request_id: str, at: float, cost_usd: float) -> RequestEvent:
    event = RequestEvent(request_id=request_id, tenant="acme", started_at=at, route="cheap", reason="easy")
    event.calls.append(CallRecord("m", "cheap", "ok", 0.1, Usage(10, 10), cost_usd=cost_usd))
    return event


async def test_the_expensive_list_holds_only_requests_the_totals_count(redis_client: Any) -> None:
    prefix = f"tstats{uuid.uuid4().hex[:10]}"
    now = 1_700_000_000.0 + 1800  # half past an hour
    recorder = StatsRecorder(redis_client, prefix, MixtureCostEstimator([Prices(0, 0)], Prices(0, 0)))
    # Within the last 24 hours, but in the hour before the day window's first bucket: not in its totals.
    recorder.record(_cheap_event("before-window", now - 86400 + 60, 5.0))
    recorder.record(_cheap_event("in-window", now - 60, 0.5))
    await recorder.flush()
    report = await stats_report(redis_client, prefix, WINDOWS["day"], now=now, top=10)
    assert report["totals"]["requests"] == 1
    assert [entry["request_id"] for entry in report["expensive"]] == ["in-window"]
    assert all(entry["t"] >= report["since"] for entry in report["expensive"])


async def test_requests_before_the_hour_window_do_not_crowd_out_those_in_it(redis_client: Any) -> None:
    prefix = f"tstats{uuid.uuid4().hex[:10]}"
    hour = bucket_start(1_700_000_000.0, HOUR)
    now = hour + 1800  # the hour window starts at hour - 29 min
    recorder = StatsRecorder(redis_client, prefix, MixtureCostEstimator([Prices(0, 0)], Prices(0, 0)))
    for i in range(30):  # the previous hour's costliest requests, all before the window
        recorder.record(_cheap_event(f"early-{i}", hour - 3000, 1.0 + i))
    recorder.record(_cheap_event("late", hour - 600, 0.5))  # the same hour bucket, within the window
    await recorder.flush()
    report = await stats_report(redis_client, prefix, WINDOWS["hour"], now=now, top=10)
    assert report["totals"]["requests"] == 1
    assert [entry["request_id"] for entry in report["expensive"]] == ["late"]


def test_request_previews_pass_the_outcome_logs_redaction_and_read_text_parts(
    make_service: Any, redis_url: str
) -> None:
    # A config that stores prompts lists the start of each expensive request's prompt on the dashboard (and
    # keeps it in Redis for a day): it must be what the outcome log keeps, redacted, not the raw text.
    base = make_service(redis_url=redis_url, ledger={"store_prompts": True})
    parts = [
        {"type": "text", "text": "mail jane.doe@example.com"},
        {"type": "text", "text": "card 4111 1111 1111 1111"},
    ]
    reply = httpx.post(
        f"{base}/v1/chat/completions",
        json={"model": "m", "messages": [{"role": "user", "content": parts}], "temperature": 0},
        headers={"x-moa-route": "cheap"},
        timeout=30,
    )
    assert reply.status_code == 200
    stats = httpx.get(f"{base}/v1/stats", params={"window": "hour"}, timeout=10).json()
    assert [entry["preview"] for entry in stats["expensive"]] == ["mail [email] card [number]"]
    # Prompt text is not kept for the day buckets' 400 days: the 30-day window lists the request without it.
    month = httpx.get(f"{base}/v1/stats", params={"window": "30d"}, timeout=10).json()
    assert len(month["expensive"]) == 1 and "preview" not in month["expensive"][0]


def test_top_asks_for_no_more_than_a_bucket_keeps(make_service: Any, redis_url: str) -> None:
    # A bucket keeps its TOP_PER_BUCKET most expensive requests: `top=100` could miss some of the window's
    # 100 costliest (all in one busy minute) and still look complete.
    base = make_service(redis_url=redis_url)
    at_most = httpx.get(f"{base}/v1/stats", params={"top": TOP_PER_BUCKET}, timeout=10)
    assert at_most.status_code == 200
    over = httpx.get(f"{base}/v1/stats", params={"top": TOP_PER_BUCKET + 1}, timeout=10)
    assert over.status_code == 400 and over.json()["error"]["code"] == "invalid_top"
