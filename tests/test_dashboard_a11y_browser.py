"""The dashboard for screen readers, in headless Chromium: what is announced, and charts told in words."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import httpx

from router.commands.report import ms, pct, usd
from tests.support.dashboard_browser import BROWSER_MARKS, browser, open_page, record_outcomes

pytestmark = BROWSER_MARKS
__all__ = ["browser"]  # the fixture, used by name

# Notes every change of text inside a live region (what a screen reader would read out).
_WATCH_LIVE_REGIONS = """() => {
  window.liveChanges = [];
  const live = (node) => {
    const el = node.nodeType === Node.ELEMENT_NODE ? node : node.parentElement;
    return el && el.closest('[aria-live]:not([aria-live="off"]), [role="status"], [role="alert"], [role="log"]');
  };
  new MutationObserver((mutations) => {
    for (const m of mutations) {
      const region = live(m.target);
      if (region) window.liveChanges.push(region.textContent);
    }
  }).observe(document.body, { subtree: true, childList: true, characterData: true });
}"""


def _changes(page: Any) -> list[str]:
    found: list[str] = page.evaluate("() => window.liveChanges.splice(0)")
    return found


def test_only_changes_of_the_pages_state_are_announced(
    browser: Any, make_service: Callable[..., str], redis_url: str
) -> None:
    prefix = f"tdash{uuid.uuid4().hex[:8]}"
    base = make_service(redis_url=redis_url, redis_prefix=prefix)
    record_outcomes(redis_url, prefix, [(200, None)] * 2)
    page, errors = open_page(browser, base, "hour")
    page.evaluate(_WATCH_LIVE_REGIONS)
    # The status line ("updated 02:41:07 · ...") was a live region: every 15 s refresh was read out.
    for _ in range(2):
        page.evaluate("() => load()")
    assert _changes(page) == []
    page.route(
        "**/v1/stats?*",
        lambda route: route.fulfill(
            status=503,
            content_type="application/json",
            body='{"error": {"message": "stats are unavailable", "type": "server_error", "code": "stats_unavailable"}}',
        ),
    )
    page.evaluate("() => load()")
    changes = _changes(page)
    assert changes and changes[-1].startswith("stats unavailable: stats are unavailable")
    page.evaluate("() => load()")
    assert _changes(page) == []  # still unavailable: nothing new to say
    page.unroute("**/v1/stats?*")
    page.evaluate("() => load()")
    assert _changes(page)[-1] == "showing the last hour"
    assert page.locator("#status").get_attribute("aria-live") is None
    assert [e for e in errors if "503" not in e] == []
    page.close()


def test_charts_say_what_they_show(browser: Any, make_service: Callable[..., str], redis_url: str) -> None:
    prefix = f"tdash{uuid.uuid4().hex[:8]}"
    base = make_service(redis_url=redis_url, redis_prefix=prefix)
    record_outcomes(redis_url, prefix, [(200, None)] * 3, shadow_costs=[0.0125])
    page, errors = open_page(browser, base, "hour")
    page.wait_for_selector("#chart-latency[data-rendered]", timeout=15_000)
    t = httpx.get(f"{base}/v1/stats", params={"window": "hour"}, timeout=10).json()["totals"]
    # Canvases with no text alternative: a screen reader heard nothing of the four charts.
    labels = {}
    for chart in ("spend", "savings", "rates", "latency"):
        element = page.locator(f"#chart-{chart}")
        assert element.get_attribute("role") == "img"
        labels[chart] = element.get_attribute("aria-label") or ""
    spend = labels["spend"]
    assert spend.startswith(f"Spend by route per minute over the last hour: {usd(t['spend_usd'])} in all")
    assert f"cheap {usd(t['spend_by_route']['cheap'])}" in spend and f"shadow {usd(t['shadow']['cost_usd'])}" in spend
    assert f"mixture on everything {usd(t['counterfactual_usd'])}" in spend
    assert usd(t["saved_usd"]) in labels["savings"] and usd(t["cache"]["saved_usd"]) in labels["savings"]
    assert pct(t["escalation_rate"]) in labels["rates"]
    assert f"p50 {ms(t['latency_ms']['all']['p50'])}" in labels["latency"]
    assert errors == []
    page.close()
