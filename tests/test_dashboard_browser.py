"""The dashboard in headless Chromium (Debian's, driven by Playwright): after traffic its charts are drawn
and its headline figures equal /v1/stats; without traffic it shows its empty state."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from router.commands.report import count, ms, pct, usd
from tests.support.dashboard_browser import BROWSER_MARKS, browser, open_page

pytestmark = BROWSER_MARKS
__all__ = ["browser"]  # the fixture, used by name


def _chat(base: str, content: str, route: str = "auto", temperature: float = 0.0) -> None:
    response = httpx.post(
        f"{base}/v1/chat/completions",
        headers={"x-moa-route": route},
        json={"model": "moa-router", "temperature": temperature, "messages": [{"role": "user", "content": content}]},
        timeout=30,
    )
    assert response.status_code == 200, response.text


def send_traffic(base: str) -> None:
    for prompt in ("What's the capital of Peru?", "Translate 'thank you' to German.", "Give me a synonym for big."):
        _chat(base, prompt, "cheap")
    for prompt in ("Prove that the square root of 2 is irrational.", "Design a lock-free queue in C++."):
        _chat(base, prompt, "mixture")
    _chat(base, "What's the capital of Peru?", "cheap")  # a cache hit
    _chat(base, "Prove that the square root of 2 is irrational.", "mixture")  # a cache hit on the mixture
    _chat(base, "Write a haiku about autumn.", "auto", temperature=0.8)


# What each headline figure shows: its value in /v1/stats and how the page formats it.
FIGURES: dict[str, tuple[Callable[[dict[str, Any]], Any], Callable[[Any], str]]] = {
    "spend_usd": (lambda s: s["totals"]["spend_usd"], usd),
    "saved_usd": (lambda s: s["totals"]["saved_usd"], usd),
    "saved_rate": (lambda s: s["totals"]["saved_rate"], pct),
    "counterfactual_usd": (lambda s: s["totals"]["counterfactual_usd"], usd),
    "cache_saved_usd": (lambda s: s["totals"]["cache"]["saved_usd"], usd),
    "cache_hit_rate": (lambda s: s["totals"]["cache"]["hit_rate"], pct),
    "requests": (lambda s: s["totals"]["requests"], count),
    "error_rate": (lambda s: s["totals"]["error_rate"], pct),
    "escalation_rate": (lambda s: s["totals"]["escalation_rate"], pct),
    "latency_p50": (lambda s: s["totals"]["latency_ms"]["all"]["p50"], ms),
    "latency_p95": (lambda s: s["totals"]["latency_ms"]["all"]["p95"], ms),
    "proposer_failures": (lambda s: s["totals"]["proposer_failures"], count),
}

# How many pixels of a chart's canvas are drawn on (not transparent).
_INKED_PIXELS = """(el) => {
  const canvas = el.querySelector("canvas");
  const data = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
  let inked = 0;
  for (let i = 3; i < data.length; i += 4) if (data[i] > 0) inked++;
  return inked;
}"""


def test_dashboard_after_traffic_matches_stats(
    browser: Any, make_service: Callable[..., str], redis_url: str, tmp_path: Path
) -> None:
    base = make_service(redis_url=redis_url, demo=True)
    send_traffic(base)
    page, errors = open_page(browser, base, "hour")
    page.wait_for_selector("#chart-latency[data-rendered]", timeout=15_000)
    stats = httpx.get(f"{base}/v1/stats", params={"window": "hour", "top": 10}, timeout=10).json()
    assert stats["totals"]["requests"] == 8

    for key, (pick, formatted) in FIGURES.items():
        element = page.locator(f"[data-figure='{key}']").first
        expected = pick(stats)
        shown = element.get_attribute("data-value")
        assert (shown == "" and expected is None) or float(shown or "nan") == expected, key
        assert element.inner_text() == formatted(expected), key

    for chart in ("spend", "savings", "rates", "latency"):
        element = page.locator(f"#chart-{chart}")
        assert element.get_attribute("data-rendered") == str(len(stats["series"])), chart
        assert element.evaluate(_INKED_PIXELS) > 2000, f"chart {chart} looks blank"
        assert element.locator(".u-legend").count() == 1
    assert page.locator("#empty").is_hidden()
    rows = page.locator("#expensive tbody tr")
    assert rows.count() == len(stats["expensive"]) > 0
    assert usd(stats["expensive"][0]["cost_usd"]) in rows.first.inner_text()
    assert page.locator("#models tbody tr").count() == len(stats["totals"]["models"])
    facts, th = page.locator("#facts").inner_text(), stats["thresholds"]
    assert f"difficulty ≥ {th['difficulty']:.3f}, or stakes ≥ {th['stakes']:.3f}" in facts  # the active policy
    assert errors == []

    screenshot = tmp_path / "dashboard.png"
    page.screenshot(path=str(screenshot), full_page=True)
    assert screenshot.stat().st_size > 20_000
    page.close()


def test_dashboard_shows_an_empty_state_without_traffic(
    browser: Any, make_service: Callable[..., str], redis_url: str
) -> None:
    base = make_service(redis_url=redis_url)
    page, errors = open_page(browser, base, "day")
    assert page.locator("#empty").is_visible()
    assert "No requests" in page.locator("#empty").inner_text()
    assert page.locator("#charts").is_hidden()
    assert page.locator("[data-figure='requests']").inner_text() == "0"
    assert page.locator("[data-figure='escalation_rate']").inner_text() == "—"
    assert errors == []
    page.close()


def test_dashboard_shows_the_monthly_budget(browser: Any, make_service: Callable[..., str], redis_url: str) -> None:
    # The first mixture run uses the whole month's budget; the day's is far from reached.
    base = make_service(redis_url=redis_url, budget={"mixture_daily_usd": 100.0, "mixture_monthly_usd": 1e-9})
    _chat(base, "Prove that there are infinitely many primes.", "mixture")
    # The spend reaches the budget as the request's event is recorded, a moment after the answer.
    deadline = time.monotonic() + 10
    while True:
        budget = httpx.get(f"{base}/v1/stats", params={"window": "day"}, timeout=10).json()["budget"]
        if budget["month"]["mixture_spent_usd"] > 0 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    page, errors = open_page(browser, base, "day")
    assert budget["day_mixture_allowed"] and not budget["month"]["mixture_allowed"]
    assert not budget["mixture_allowed"]  # the caps of both periods together
    sub = page.locator("#budget-sub").inner_text()
    assert "this month " + usd(budget["month"]["mixture_spent_usd"]) in sub
    assert sub.endswith("capped: escalations go to cheap")
    assert "over" in (page.locator("#budget-meter").get_attribute("class") or "")
    assert page.locator("#budget-meter").evaluate("el => el.style.width") == "100%"  # the month's, not 0%
    assert errors == []
    page.close()


def test_dashboard_asks_for_the_admin_key_when_the_service_is_closed(
    browser: Any, make_service: Callable[..., str], redis_url: str
) -> None:
    import hashlib

    base = make_service(
        redis_url=redis_url, auth={"open": False, "admin_key_sha256": hashlib.sha256(b"adm").hexdigest()}
    )
    page = browser.new_page()
    page.goto(f"{base}/dashboard")
    page.wait_for_selector("#keyform:not([hidden])", timeout=15_000)
    page.fill("#adminkey", "adm")
    page.click("#keyform button")
    page.wait_for_selector("body[data-ready='1']", timeout=15_000)
    assert page.locator("#keyform").is_hidden()
    assert page.locator("[data-figure='requests']").inner_text() == "0"
    page.close()


def test_dashboard_counts_every_tenant_over_its_cap(
    browser: Any, make_service: Callable[..., str], redis_url: str
) -> None:
    from redis.asyncio import Redis

    from router.budget import BudgetGuard
    from router.config import BudgetSettings
    from tests.support.budget import mixture_event

    prefix = f"tdash{uuid.uuid4().hex[:8]}"
    settings = BudgetSettings(mixture_daily_usd_per_tenant=0.5, sync_interval_s=0.05)
    base = make_service(redis_url=redis_url, redis_prefix=prefix, budget=settings.model_dump())

    async def spend_on_another_replica() -> None:  # more tenants over the cap than /v1/stats lists
        client = Redis.from_url(redis_url)
        other = BudgetGuard(settings, client, prefix)
        for number in range(12):
            other.record(mixture_event(f"tenant-{number}", 1.0, time.time()))
        await other.sync()
        await client.aclose()

    with ThreadPoolExecutor(1) as pool:  # Playwright runs an event loop in this thread
        pool.submit(asyncio.run, spend_on_another_replica()).result()
    deadline = time.monotonic() + 10
    while True:
        budget = httpx.get(f"{base}/v1/stats", params={"window": "day"}, timeout=10).json()["budget"]
        if budget["tenants_over_cap"] == 12 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert len(budget["tenants"]) == 10 and budget["tenants_over_cap"] == 12
    page, errors = open_page(browser, base, "day")
    assert f"{usd(0.5)} per tenant, 12 over" in page.locator("#budget-sub").inner_text()
    assert errors == []
    page.close()


def test_dashboard_fits_a_phone_screen(browser: Any, make_service: Callable[..., str], redis_url: str) -> None:
    # At 375 px the header and the figures ran off the side (the page scrolled sideways, "$0.006712" was cut
    # in its card) and the charts kept a 300 px minimum wider than their cards.
    base = make_service(redis_url=redis_url, demo=True)
    send_traffic(base)
    page = browser.new_page(viewport={"width": 360, "height": 800})
    page.goto(f"{base}/dashboard#window=hour")
    page.wait_for_selector("#chart-latency[data-rendered]", timeout=15_000)
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    clipped = page.evaluate(
        """[...document.querySelectorAll('.figure .value, .figure .sub, .chart canvas, .bar > *')]
             .filter((el) => el.scrollWidth > el.clientWidth + 1 || el.getBoundingClientRect().right > innerWidth)
             .map((el) => el.className || el.tagName)"""
    )
    assert clipped == []
    page.close()


def test_a_failed_load_of_another_window_does_not_show_the_previous_ones_numbers(
    browser: Any, make_service: Callable[..., str], redis_url: str
) -> None:
    base = make_service(redis_url=redis_url, demo=True)
    send_traffic(base)
    page, errors = open_page(browser, base, "hour")
    assert page.locator("[data-figure='requests']").inner_text() == "8"
    page.route(
        "**/v1/stats?window=30d*",
        lambda route: route.fulfill(
            status=503,
            content_type="application/json",
            body='{"error": {"message": "stats are unavailable", "type": "server_error", "code": "stats_unavailable"}}',
        ),
    )
    page.click("[data-window='30d']")
    page.wait_for_selector("#status.stale", timeout=15_000)
    # The hour's figures stayed under "Last 30 days", as if they were the month's.
    assert page.locator("[data-figure='requests']").inner_text() == "—"
    assert page.locator("[data-figure='spend_usd']").inner_text() == "—"
    assert page.locator("#charts").is_hidden() and page.locator("#tables").is_hidden()
    assert "stats unavailable: stats are unavailable" in page.locator("#status").inner_text()
    assert "showing" not in page.locator("#status").inner_text()
    page.unroute("**/v1/stats?window=30d*")
    page.click("[data-window='hour']")
    page.wait_for_selector("body[data-window='hour']", timeout=15_000)
    assert page.locator("[data-figure='requests']").inner_text() == "8"
    assert [e for e in errors if "503" not in e] == []
    page.close()


def test_figures_say_what_they_count(browser: Any, make_service: Callable[..., str], redis_url: str) -> None:
    base = make_service(redis_url=redis_url, demo=True)
    send_traffic(base)
    stats = httpx.get(f"{base}/v1/stats", params={"window": "hour", "top": 10}, timeout=10).json()
    # Two requests refused before routing: the escalation rate is over the 8 routed ones, not all 10.
    stats["totals"]["requests"] += 2
    stats["totals"]["routes"]["none"] = 2
    # Names are shown as text, never as markup.
    stats["expensive"][0]["tenant"] = "<img src=x onerror=\"document.body.dataset.owned='1'\">"
    stats["totals"]["models"]['openai/<b id="bold">x</b>'] = stats["totals"]["models"].popitem()[1]
    page = browser.new_page(viewport={"width": 1440, "height": 1000})
    page.route("**/v1/stats?*", lambda route: route.fulfill(status=200, content_type="application/json", json=stats))
    page.goto(f"{base}/dashboard#window=hour")
    page.wait_for_selector("#chart-latency[data-rendered]", timeout=15_000)
    mixture = stats["totals"]["routes"]["mixture"]
    assert page.locator("#escalation-sub").inner_text() == f"{mixture} of 8 routed requests"  # was "3 of 10"
    assert page.locator("[data-figure='escalation_rate']").inner_text() == pct(stats["totals"]["escalation_rate"])
    # The spend bars are per minute in the hour window ("per bucket" said nothing of how long one is).
    assert (
        page.locator("#chart-spend")
        .locator("xpath=..")
        .locator("h3")
        .inner_text()
        .startswith("Spend by route per minute")
    )
    assert stats["expensive"][0]["tenant"] in page.locator("#expensive").inner_text()
    assert page.locator("#bold").count() == 0 and page.evaluate("document.body.dataset.owned") is None
    page.close()


def test_day_buckets_are_dated_by_their_utc_day_in_any_time_zone(
    browser: Any, make_service: Callable[..., str], redis_url: str
) -> None:
    import datetime

    # The stats' days (and the budget's) are UTC days. The charts dated them in the browser's zone: in
    # Los Angeles today's bucket showed as yesterday 4:00pm.
    base = make_service(redis_url=redis_url, demo=True)
    send_traffic(base)
    context = browser.new_context(viewport={"width": 1440, "height": 1000}, timezone_id="America/Los_Angeles")
    page = context.new_page()
    page.goto(f"{base}/dashboard#window=30d")
    page.wait_for_selector("#chart-spend[data-rendered]", timeout=15_000)
    stats = httpx.get(f"{base}/v1/stats", params={"window": "30d"}, timeout=10).json()
    last = datetime.datetime.fromtimestamp(stats["series"][-1]["t"], datetime.UTC)
    plot = page.locator("#chart-spend .u-over").bounding_box()
    assert plot is not None
    page.mouse.move(plot["x"] + plot["width"] - 2, plot["y"] + plot["height"] / 2)
    shown = page.locator("#chart-spend .u-legend .u-series").first.locator(".u-value").inner_text()
    assert shown.startswith(last.strftime("%Y-%m-%d ")), shown  # was the day before, 4:00pm
    assert "UTC" in page.locator(".method").inner_text()
    context.close()


_CONTRAST = """(el) => {
  const luminance = (css) => {
    const [r, g, b] = css.match(/\\d+/g).slice(0, 3).map((v) => {
      const c = Number(v) / 255;
      return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
    });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  };
  const style = getComputedStyle(el);
  const [a, b] = [luminance(style.color), luminance(style.backgroundColor)].sort((x, y) => y - x);
  return (a + 0.05) / (b + 0.05);
}"""


def test_route_labels_are_readable(browser: Any, make_service: Callable[..., str], redis_url: str) -> None:
    # White 12 px text on the cheap (3.4:1), strong (2.7:1) and shadow/none (2.6:1) pills was below WCAG AA's 4.5:1.
    base = make_service(redis_url=redis_url, demo=True)
    send_traffic(base)
    stats = httpx.get(f"{base}/v1/stats", params={"window": "hour", "top": 10}, timeout=10).json()
    for entry, route in zip(stats["expensive"], ("cheap", "mixture", "strong", "none"), strict=False):
        entry["route"] = route
    page = browser.new_page(viewport={"width": 1440, "height": 1000})
    page.route("**/v1/stats?*", lambda route: route.fulfill(status=200, content_type="application/json", json=stats))
    page.goto(f"{base}/dashboard#window=hour")
    page.wait_for_selector("#expensive .pill", timeout=15_000)
    pills = page.locator("#expensive .pill")
    contrasts = {pills.nth(i).inner_text(): pills.nth(i).evaluate(_CONTRAST) for i in range(pills.count())}
    assert set(contrasts) >= {"cheap", "mixture", "strong", "none"}
    assert all(ratio >= 4.5 for ratio in contrasts.values()), contrasts
    page.close()
