"""The dashboard's error and spend figures in headless Chromium: errors by who ended the request, and a
spend-by-model table that adds up to the spend shown."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from router.commands.report import usd
from tests.support.dashboard_browser import BROWSER_MARKS, browser, open_page, record_outcomes

pytestmark = BROWSER_MARKS
__all__ = ["browser"]  # the fixture, used by name

OUTCOMES = [(200, None), (502, "upstream_error"), (400, "invalid_request"), (400, "invalid_request")]
OUTCOMES += [(429, "rate_limit_exceeded"), (499, "client_disconnected")]


def _fact(page: Any, name: str) -> str:
    row = page.locator("#facts tr", has_text=name)
    assert row.count() == 1, name
    return str(row.locator("td").nth(1).inner_text())


def test_errors_say_who_ended_the_request(browser: Any, make_service: Callable[..., str], redis_url: str) -> None:
    prefix = f"tdash{uuid.uuid4().hex[:8]}"
    base = make_service(redis_url=redis_url, redis_prefix=prefix)
    record_outcomes(redis_url, prefix, OUTCOMES)
    page, errors = open_page(browser, base, "hour")
    # A client that left mid-answer (499) was counted as refused by the router: "1 failed, 4 refused (4xx)".
    assert page.locator("#errors-sub").inner_text() == "1 failed, 3 refused (4xx), 1 left before their answer"
    # "Errors by code" listed the refusals with the failures under the 5xx error rate's figure.
    assert _fact(page, "Failed (5xx) by code") == "upstream_error 1"
    assert _fact(page, "Refused (4xx) by code") == "invalid_request 2 · rate_limit_exceeded 1"
    assert errors == []
    page.close()


def test_the_spend_by_model_adds_up_to_the_spend_shown(
    browser: Any, make_service: Callable[..., str], redis_url: str
) -> None:
    prefix = f"tdash{uuid.uuid4().hex[:8]}"
    base = make_service(redis_url=redis_url, redis_prefix=prefix)
    record_outcomes(redis_url, prefix, [(200, None)] * 3, shadow_costs=[0.0125, 0.0025])
    stats = httpx.get(f"{base}/v1/stats", params={"window": "hour"}, timeout=10).json()["totals"]
    by_model = sum(m["spend_usd"] for m in stats["models"].values())
    assert by_model + stats["shadow"]["cost_usd"] == pytest.approx(stats["spend_usd"])
    page, errors = open_page(browser, base, "hour")
    # The table listed the models' $0.0030 only, under a spend figure of $0.0180.
    rows = page.locator("#models tbody tr")
    assert rows.count() == len(stats["models"]) + 1
    shadow = rows.last.locator("td")
    assert shadow.first.inner_text() == "shadow evaluations (2 runs)"
    assert shadow.last.inner_text() == usd(stats["shadow"]["cost_usd"])
    total = page.locator("#models tfoot tr td")
    assert total.first.inner_text() == "Total"
    assert total.last.inner_text() == usd(stats["spend_usd"]) == page.locator("[data-figure='spend_usd']").inner_text()
    assert total.nth(1).inner_text() == "3"  # calls
    assert errors == []
    page.close()


def test_a_negative_saving_is_not_shown_as_a_saving(
    browser: Any, make_service: Callable[..., str], redis_url: str
) -> None:
    prefix = f"tdash{uuid.uuid4().hex[:8]}"
    base = make_service(redis_url=redis_url, redis_prefix=prefix)
    record_outcomes(redis_url, prefix, [(200, None)], shadow_costs=[0.5])  # shadow spend, no mixture saved
    assert httpx.get(f"{base}/v1/stats", params={"window": "hour"}, timeout=10).json()["totals"]["saved_usd"] < 0
    page, errors = open_page(browser, base, "hour")
    saved = page.locator("[data-figure='saved_usd']")
    assert "warn" in (saved.get_attribute("class") or "").split()  # it was in the green of a saving
    assert saved.evaluate("el => getComputedStyle(el).color") != "rgb(31, 122, 77)"  # --good, #1f7a4d
    assert errors == []
    page.close()
