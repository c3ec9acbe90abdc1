"""Budget test helpers: a settable clock, UTC instants, mixture events, shared totals in Redis."""

from __future__ import annotations

import calendar
import uuid
from typing import Any

import httpx

from router.events import RequestEvent
from router.mixture import CallRecord
from router.providers.base import Usage

DAY = 86400.0


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> float:
    return float(calendar.timegm((year, month, day, hour, minute, second)))


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def mixture_event(tenant: str, cost: float, at: float, route: str = "mixture") -> RequestEvent:
    event = RequestEvent(request_id=uuid.uuid4().hex, tenant=tenant, started_at=at, route=route)
    event.calls.append(CallRecord("openai/agg", "aggregator", "ok", 0.1, Usage(10, 10), cost))
    return event


async def shared_total(client: Any, key: str) -> float:
    """A total in Redis: the sum of every replica's field."""
    return sum(float(value) for value in (await client.hgetall(key)).values())


def chat_on_mixture(base: str, key: str, content: str) -> httpx.Response:
    response = httpx.post(
        f"{base}/v1/chat/completions",
        headers={"authorization": f"Bearer {key}", "x-moa-route": "mixture"},
        json={"model": "moa-router", "messages": [{"role": "user", "content": content}]},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    return response
