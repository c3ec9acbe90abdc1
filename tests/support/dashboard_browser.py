"""Shared by the dashboard's browser tests: one headless Chromium per test module, a page opened on a
window, and request outcomes written straight into a service's stats (as another replica's would be)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from router.events import RequestEvent
from router.mixture import CallRecord
from router.providers.base import Usage
from router.providers.pricing import Prices
from router.stats import MixtureCostEstimator, StatsRecorder
from tests.support.browser import CHROMIUM, launch_chromium

BROWSER_MARKS = [
    pytest.mark.browser,
    # Skipped only off CI: CI installs Chromium (.ci/run), so there a missing browser is a failure.
    pytest.mark.skipif(
        not CHROMIUM.exists() and not os.environ.get("CI"), reason="needs Debian's chromium at /usr/bin/chromium"
    ),
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = launch_chromium(playwright)
        yield launched
        launched.close()


def open_page(browser: Any, base: str, window: str, width: int = 1440) -> tuple[Any, list[str]]:
    """The dashboard on `window`, once its stats are shown; and the page's errors as they come."""
    page = browser.new_page(viewport={"width": width, "height": 1000})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.goto(f"{base}/dashboard#window={window}")
    page.wait_for_selector("body[data-ready='1']", timeout=15_000)
    return page, errors


def record_outcomes(
    redis_url: str, prefix: str, outcomes: Sequence[tuple[int, str | None]], shadow_costs: Sequence[float] = ()
) -> None:
    """One cheap request ($0.001) per (status, error code), and shadow runs of the costs given, in the
    stats under `prefix`."""
    from redis.asyncio import Redis

    async def write() -> None:
        client = Redis.from_url(redis_url)
        try:
            recorder = StatsRecorder(client, prefix, MixtureCostEstimator([Prices(1e-6, 2e-6)], Prices(1e-6, 2e-6)))
            for i, (status, error) in enumerate(outcomes):
                event = RequestEvent(request_id=f"chatcmpl-{i}", tenant="acme", route="cheap", status=status)
                event.error = error
                event.calls.append(CallRecord("openai/cheap-1", "cheap", "ok", 0.2, Usage(100, 40), 0.001))
                recorder.record(event)
            for cost in shadow_costs:
                recorder.record_shadow(mixture_needed=False, cost_usd=cost)
            await recorder.flush()
        finally:
            await client.aclose()

    with ThreadPoolExecutor(1) as pool:  # Playwright runs an event loop in this thread
        pool.submit(asyncio.run, write()).result()
