"""`moa-router report`: the dashboard's headline numbers in the terminal.

Reads the stats aggregation straight from Redis (REDIS_URL, --redis-url or the config's redis_url),
or, with --url, asks a running service's /v1/stats. With neither, the local service at the default
address is asked (the demo's embedded Redis is reached through its service).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import re
import sys
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from router.commands.argtypes import int_within
from router.stats_query import WINDOWS, split_error_codes

DEFAULT_URL = "http://127.0.0.1:8080"
WINDOW_TITLES = {"hour": "last hour", "day": "last 24 hours", "week": "last 7 days", "30d": "last 30 days"}


# The dashboard (router/dashboard/static/format.js) formats numbers by the same rules.
def fixed(value: float, digits: int, grouped: bool = False) -> str:
    """Like JavaScript's `toFixed`: the exact value rounded half away from zero (Python's own format
    rounds half to even), optionally with thousands separators."""
    rounded = Decimal(value).quantize(Decimal(1).scaleb(-digits), rounding=ROUND_HALF_UP)
    return f"{rounded:,f}" if grouped else f"{rounded:f}"


def usd(value: float | None) -> str:
    if value is None:
        return "—"
    size = abs(value)
    digits = 2 if size == 0 or size >= 1 else 4 if size >= 0.01 else 6
    return ("−$" if value < 0 else "$") + fixed(size, digits, grouped=True)


def pct(rate: float | None) -> str:
    return "—" if rate is None else fixed(rate * 100, 1) + "%"


def count(value: float | None) -> str:
    return "—" if value is None else f"{math.floor(value + 0.5):,}"


def ms(value: float | None) -> str:
    if value is None:
        return "—"
    return fixed(value / 1000, 2) + " s" if value >= 1000 else f"{math.floor(value + 0.5)} ms"


# C0 and C1 control characters (an escape sequence in a name would act on the terminal) but tab.
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")


def plain(value: object) -> Any:
    """A table cell shown as it is: names (tenants, models) are data, never rich markup, and their
    control characters are shown as '?'."""
    from rich.text import Text

    return Text(_CONTROL.sub("?", str(value)))


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("report", help="spend, savings and health in the terminal", description=__doc__)
    parser.add_argument("--window", choices=list(WINDOWS), default="day")
    parser.add_argument("--config", help="YAML config file (default: $MOA_ROUTER_CONFIG): its Redis and prefix")
    parser.add_argument("--redis-url", help="read this Redis (default: $REDIS_URL, then the config's)")
    parser.add_argument("--prefix", help="the service's Redis key prefix (default: the config's, else 'moa')")
    parser.add_argument(
        "--url", help=f"ask a running service's /v1/stats instead (default when no Redis: {DEFAULT_URL})"
    )
    parser.add_argument("--admin-key", help="for --url (default: $MOA_ROUTER_ADMIN_KEY)")
    parser.add_argument(
        "--top", type=_top, default=5, help="most expensive requests to list (0..25, what /v1/stats takes)"
    )
    parser.add_argument("--json", action="store_true", help="print the stats as JSON instead of tables")


def _top(text: str) -> int:
    from router.api.stats import MAX_TOP  # what /v1/stats accepts, so that both sources take the same values

    return int_within(text, 0, MAX_TOP)


async def _from_redis(url: str, prefix: str, window: str, top: int) -> dict[str, Any]:
    from redis.asyncio import Redis

    from router.stats_query import stats_report

    client = Redis.from_url(url, socket_timeout=10, socket_connect_timeout=5)
    try:
        return await stats_report(client, prefix, WINDOWS[window], top=top)
    finally:
        await client.aclose()


def _from_service(url: str, admin_key: str | None, window: str, top: int) -> dict[str, Any]:
    import httpx

    headers = {"authorization": f"Bearer {admin_key}"} if admin_key else {}
    try:
        response = httpx.get(
            f"{url.rstrip('/')}/v1/stats", params={"window": window, "top": top}, headers=headers, timeout=30
        )
    except httpx.TransportError as exc:  # the bare "[Errno 111] Connection refused" said neither where nor what to do
        raise RuntimeError(
            f"cannot reach the service at {url} ({exc or type(exc).__name__}); start it, give its address with "
            "--url, or read Redis directly with --redis-url (or REDIS_URL)"
        ) from exc
    if response.status_code != 200:
        raise RuntimeError(f"{url} answered {response.status_code}: {response.text[:300]}")
    try:
        report = response.json()
    except ValueError:
        report = None
    if not isinstance(report, dict) or not isinstance(report.get("totals"), dict):
        raise RuntimeError(f"{url}/v1/stats did not answer moa-router's stats: is {url} a moa-router service?")
    return report


def load_report(args: argparse.Namespace) -> dict[str, Any]:
    """The stats of the chosen window, from Redis or from a running service."""
    from router.config import load_settings

    redis_url, prefix = args.redis_url or os.environ.get("REDIS_URL"), args.prefix
    if args.config or os.environ.get("MOA_ROUTER_CONFIG"):
        settings = load_settings(args.config)
        redis_url = redis_url or settings.redis_url
        prefix = prefix or settings.redis_prefix
    if args.url or not redis_url:
        key = args.admin_key or os.environ.get("MOA_ROUTER_ADMIN_KEY")
        return _from_service(args.url or DEFAULT_URL, key, args.window, args.top)
    return asyncio.run(_from_redis(redis_url, prefix or "moa", args.window, args.top))


def _error_codes(totals: dict[str, Any]) -> dict[str, Any]:
    """The errors split by who ended the request. A service older than this command sends only all the
    codes together (and counts a client that left among the 4xx): they are split here the same way."""
    if "failed_by_code" in totals:
        return totals
    codes = split_error_codes(totals["errors_by_code"])
    return {
        "failed_by_code": codes.failed,
        "refused_by_code": codes.refused,
        "refused": totals["client_errors"] - codes.client_left,
        "client_left": codes.client_left,
    }


def _by_code(counts: dict[str, int]) -> str:
    return ", ".join(f"{code} {count(n)}" for code, n in sorted(counts.items(), key=lambda item: -item[1])) or "none"


def _models_table(totals: dict[str, Any]) -> Any:
    """Spend by model, then shadow evaluations (their calls are not counted by model) and the total: the
    rows add up to the spend shown above them."""
    from rich.table import Table

    table = Table(title="Spend by model", title_justify="left")
    for name in ("model", "calls", "failed", "prompt tok", "output tok", "spend"):
        table.add_column(name, justify="left" if name == "model" else "right")
    models = sorted(totals["models"].items(), key=lambda item: -item[1]["spend_usd"])
    for model, m in models:
        figures = (m["calls"], m["errors"], m["prompt_tokens"], m["completion_tokens"])
        table.add_row(*map(plain, (model, *map(count, figures), usd(m["spend_usd"]))))
    shadow = totals["shadow"]
    if shadow["runs"] or shadow["cost_usd"]:
        runs = f"shadow evaluations ({count(shadow['runs'])} run{'' if shadow['runs'] == 1 else 's'})"
        table.add_row(*map(plain, (runs, "—", "—", "—", "—", usd(shadow["cost_usd"]))))
    table.add_section()
    sums = [sum(m[key] for _, m in models) for key in ("calls", "errors", "prompt_tokens", "completion_tokens")]
    table.add_row(*map(plain, ("total", *map(count, sums), usd(totals["spend_usd"]))), style="bold")
    return table


def render(report: dict[str, Any]) -> list[Any]:
    """Rich tables: the headline numbers, spend by model, the most expensive requests."""
    from rich.table import Table

    t = report["totals"]
    title = f"moa-router · {WINDOW_TITLES.get(report['window'], report['window'])}"
    headline = Table(title=title, show_header=False, title_justify="left")
    headline.add_column("figure", style="bold")
    headline.add_column("value", justify="right")
    headline.add_column("detail", style="dim")
    routes = ", ".join(f"{route} {usd(v)}" for route, v in sorted(t["spend_by_route"].items())) or "none"
    lat = t["latency_ms"]
    by_route = ", ".join(f"{r} p95 {ms(lat[r]['p95'])}" for r in ("cheap", "mixture", "strong") if r in lat)
    codes = _error_codes(t)
    rows = [
        (
            "Requests",
            count(t["requests"]),
            f"{count(t['errors'])} failed (5xx), {count(codes['refused'])} refused (4xx), "
            f"{count(codes['client_left'])} left before their answer",
        ),
        ("Spend", usd(t["spend_usd"]), routes),
        ("Mixture on everything", usd(t["counterfactual_usd"]), "every request through the mixture (estimate)"),
        ("Saved vs mixture", usd(t["saved_usd"]), pct(t["saved_rate"]) + " of it"),
        (
            "Saved by the cache",
            usd(t["cache"]["saved_usd"]),
            f"hit rate {pct(t['cache']['hit_rate'])}: {count(t['cache']['hit'])} hits, {count(t['cache']['miss'])} "
            f"misses, {count(t['cache']['bypass'])} bypassed",
        ),
        (
            "Escalated to the mixture",
            pct(t["escalation_rate"]),
            f"{count(t['routes'].get('mixture', 0))} requests; {count(t['budget_degraded'])} held back by the budget",
        ),
        ("5xx error rate", pct(t["error_rate"]), _by_code(codes["failed_by_code"])),
        ("Refused (4xx)", count(codes["refused"]), _by_code(codes["refused_by_code"])),
        ("Latency p50 · p95", f"{ms(lat['all']['p50'])} · {ms(lat['all']['p95'])}", by_route),
        (
            "Proposer failures",
            count(t["proposer_failures"]),
            f"{count(t['quorum_failures'])} quorum failures, {count(t['aggregator_fallbacks'])} aggregator fallbacks",
        ),
        (
            "Shadow: cheap was enough",
            pct(t["shadow"]["cheap_enough_rate"]),
            f"{count(t['shadow']['judged'])} judged, cost {usd(t['shadow']['cost_usd'])}",
        ),
        (
            "Classifier",
            report.get("classifier_version") or "—",
            ", ".join(f"{v} {n}" for v, n in t["classifier_versions"].items()),
        ),
    ]
    thresholds = report.get("thresholds")  # from the service only: a replica's active policy
    if thresholds:
        rows.append(
            (
                "Escalation thresholds",
                f"{thresholds['difficulty']:.3f}",
                f"difficulty; or stakes ≥ {thresholds['stakes']:.3f} with difficulty ≥ "
                f"{thresholds['stakes_min_difficulty']:.3f}",
            )
        )
    budget = report.get("budget")
    if budget:
        cap = usd(budget["mixture_cap_usd"]) if budget["mixture_cap_usd"] is not None else "no overall cap"
        state = "allowed" if budget["mixture_allowed"] else f"capped → {budget['fallback']}"
        rows.append(("Mixture budget today", usd(budget["mixture_spent_usd"]), f"of {cap}; {state}"))
        month = budget.get("month")  # present when a monthly cap is set
        if month:
            month_cap = usd(month["mixture_cap_usd"]) if month["mixture_cap_usd"] is not None else "no overall cap"
            month_state = "allowed" if month["mixture_allowed"] else "capped"
            rows.append(
                ("Mixture budget this month", usd(month["mixture_spent_usd"]), f"of {month_cap}; {month_state}")
            )
    for row in rows:
        headline.add_row(*map(plain, row))
    models = _models_table(t)
    expensive = Table(title="Most expensive requests", title_justify="left")
    for name in ("cost", "route", "latency", "tenant", "request id"):
        expensive.add_column(name, justify="right" if name in ("cost", "latency") else "left")
    for entry in report.get("expensive", []):
        expensive.add_row(
            *map(
                plain,
                (
                    usd(entry["cost_usd"]),
                    f"{entry['route']} ({entry['reason']})",
                    ms(entry["latency_ms"]),
                    entry["tenant"],
                    entry["request_id"],
                ),
            )
        )
    return [headline, models, expensive] if t["requests"] else [headline]


def run(args: argparse.Namespace) -> int:
    import httpx
    from redis.exceptions import RedisError
    from rich.console import Console

    from router.config import ConfigError

    try:
        report = load_report(args)
    # ValueError: a malformed --redis-url or --url.
    except (ConfigError, RuntimeError, RedisError, OSError, ValueError, httpx.HTTPError) as exc:
        print(f"moa-router report: {exc}", file=sys.stderr)
        return 2
    console = Console()
    if args.json:
        import orjson

        sys.stdout.write(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode() + "\n")
        return 0
    for table in render(report):
        console.print(table)
    if not report["totals"]["requests"]:
        console.print("[dim]No requests in this window yet.[/dim]")
    return 0
