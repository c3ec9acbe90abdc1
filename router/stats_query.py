"""Reading the stats buckets back and summarising them: the one source of `/v1/stats`, the dashboard
and `moa-router report`. The counters are written by `router.stats`."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import orjson

from router.stats import (
    DAY,
    HOUR,
    MINUTE,
    Resolution,
    bucket_key,
    bucket_start,
    latency_bin_bounds,
    top_key,
)

if TYPE_CHECKING:
    from redis.asyncio import Redis

WindowName = Literal["hour", "day", "week", "30d"]


@dataclass(frozen=True, slots=True)
class Window:
    name: WindowName
    resolution: Resolution
    buckets: int  # the current (partial) bucket and the ones before it

    @property
    def seconds(self) -> int:
        return self.resolution.seconds * self.buckets


WINDOWS: dict[str, Window] = {
    "hour": Window("hour", MINUTE, 60),
    "day": Window("day", HOUR, 24),
    "week": Window("week", HOUR, 168),
    "30d": Window("30d", DAY, 30),
}
ROUTES = ("cheap", "mixture", "strong")
PERCENTILES = (50, 95, 99)
# The stats count errors by code, not by status (router.stats), so the codes of the router's 5xx answers are
# listed here (tests/test_stats_query_errors.py checks that every code the router raises is in its class).
# Any other code is a 4xx refusal, except a client that left before its answer (a 499): it was not refused.
SERVER_ERROR_CODES = frozenset(
    {
        "internal_error",
        "mixture_quorum_failed",
        "request_timeout",
        "upstream_error",
        "upstream_rate_limited",
        "upstream_stream_error",
        "upstream_timeout",
        "feedback_unavailable",
        "stats_unavailable",
    }
)
CLIENT_LEFT_CODE = "client_disconnected"

Counters = dict[str, float]


def _text(value: bytes | str) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else value


def bucket_starts(window: Window, now: float) -> list[int]:
    last = bucket_start(now, window.resolution)
    step = window.resolution.seconds
    return [last - step * i for i in range(window.buckets - 1, -1, -1)]


async def read_buckets(redis: Redis, prefix: str, window: Window, now: float) -> list[tuple[int, Counters]]:
    """The window's buckets, oldest first, each as {field: amount} (empty when nothing happened)."""
    starts = bucket_starts(window, now)
    pipe = redis.pipeline(transaction=False)
    for start in starts:
        pipe.hgetall(bucket_key(prefix, window.resolution, start))
    raw: list[dict[bytes | str, bytes | str]] = await pipe.execute()
    return [
        (start, {_text(name): float(_text(value)) for name, value in fields.items()})
        for start, fields in zip(starts, raw, strict=True)
    ]


async def read_expensive(redis: Redis, prefix: str, window: Window, now: float, limit: int) -> list[dict[str, Any]]:
    """The most expensive requests of the window's buckets (the ones its totals count), most expensive
    first. Read from the top sets of the window's own resolution: a coarser bucket would reach before
    the window, and the requests it kept from there would have crowded out later ones."""
    starts = bucket_starts(window, now)
    pipe = redis.pipeline(transaction=False)
    for start in starts:
        pipe.zrevrange(top_key(prefix, window.resolution, start), 0, limit - 1)
    found: list[dict[str, Any]] = []
    for members in await pipe.execute():
        found.extend(orjson.loads(member) for member in members)
    found.sort(key=lambda entry: entry["cost_usd"], reverse=True)
    return found[:limit]


def merge(buckets: Iterable[Counters]) -> Counters:
    total: Counters = defaultdict(float)
    for fields in buckets:
        for name, amount in fields.items():
            total[name] += amount
    return dict(total)


def labelled(counters: Mapping[str, float], kind: str) -> dict[str, float]:
    """{label: amount} of the fields named `kind:label`."""
    head = kind + ":"
    return {name[len(head) :]: amount for name, amount in counters.items() if name.startswith(head)}


@dataclass(frozen=True, slots=True)
class ErrorCodes:
    """Error counts by code, by who ended the request: the router (5xx), the router refusing it (4xx), the
    client leaving before its answer."""

    failed: dict[str, int]
    refused: dict[str, int]
    client_left: int


def split_error_codes(errors_by_code: Mapping[str, float]) -> ErrorCodes:
    failed = {code: int(n) for code, n in errors_by_code.items() if code in SERVER_ERROR_CODES}
    refused = {
        code: int(n)
        for code, n in errors_by_code.items()
        if code not in SERVER_ERROR_CODES and code != CLIENT_LEFT_CODE
    }
    return ErrorCodes(failed, refused, int(errors_by_code.get(CLIENT_LEFT_CODE, 0)))


def _ratio(part: float, whole: float) -> float | None:
    return part / whole if whole else None


def latency_percentiles(counters: Mapping[str, float], route: str | None = None) -> dict[str, Any]:
    """p50/p95/p99 in milliseconds from the latency histogram of one route (or all routes), each
    interpolated linearly inside its bin; None without data."""
    return _percentiles(labelled(counters, "lat"), route)


def _percentiles(latency_fields: Mapping[str, float], route: str | None) -> dict[str, Any]:
    bins: Counters = defaultdict(float)
    for name, count in latency_fields.items():
        bin_route, _, index = name.rpartition(":")
        if route is None or bin_route == route:
            bins[index] += count
    histogram = sorted((int(index), count) for index, count in bins.items() if count > 0)
    total = sum(count for _, count in histogram)
    result: dict[str, Any] = {"count": int(total)}
    for percentile in PERCENTILES:
        result[f"p{percentile}"] = _percentile_ms(histogram, total, percentile) if total else None
    return result


def _percentile_ms(histogram: list[tuple[int, float]], total: float, percentile: int) -> float:
    rank = total * percentile / 100
    seen = 0.0
    for index, count in histogram:
        if seen + count >= rank:
            lower, upper = latency_bin_bounds(index)
            return round((lower + (upper - lower) * (rank - seen) / count) * 1000, 2)
        seen += count
    return round(latency_bin_bounds(histogram[-1][0])[1] * 1000, 2)


def summary(counters: Mapping[str, float]) -> dict[str, Any]:
    """The headline numbers and breakdowns of a set of counters (one bucket or a whole window)."""
    get = counters.get
    requests = get("requests", 0.0)
    routes = labelled(counters, "route")
    routed = sum(count for route, count in routes.items() if route != "none")
    cache = labelled(counters, "cache")
    lookups = cache.get("hit", 0.0) + cache.get("miss", 0.0)
    spend, counterfactual = get("spend", 0.0), get("cf", 0.0)
    judged = get("shadow_judged", 0.0)
    tokens_in, tokens_out = labelled(counters, "tok_in"), labelled(counters, "tok_out")
    calls, call_errors = labelled(counters, "calls"), labelled(counters, "call_err")
    errors_by_code = labelled(counters, "err")
    codes = split_error_codes(errors_by_code)
    client_errors = int(get("client_errors", 0.0))  # every 4xx status, 499 (the client left) too
    return {
        "requests": int(requests),
        "errors": int(get("errors", 0.0)),
        "client_errors": client_errors,
        "refused": client_errors - codes.client_left,
        "client_left": codes.client_left,
        "error_rate": _ratio(get("errors", 0.0), requests),
        "errors_by_code": {code: int(n) for code, n in errors_by_code.items()},
        "failed_by_code": codes.failed,
        "refused_by_code": codes.refused,
        "routes": {route: int(n) for route, n in routes.items()},
        "reasons": {reason: int(n) for reason, n in labelled(counters, "reason").items()},
        "escalation_rate": _ratio(routes.get("mixture", 0.0), routed),
        "budget_degraded": int(get("budget_degraded", 0.0)),
        "spend_usd": spend,
        "spend_by_route": labelled(counters, "spend_route"),
        "spend_by_model": labelled(counters, "spend_model"),
        "counterfactual_usd": counterfactual,
        # Shadow runs count as spend: they are what the router itself costs beyond answering.
        "saved_usd": counterfactual - spend,
        "saved_rate": _ratio(counterfactual - spend, counterfactual),
        "cache": {
            "hit": int(cache.get("hit", 0.0)),
            "miss": int(cache.get("miss", 0.0)),
            "bypass": int(cache.get("bypass", 0.0)),
            "hit_rate": _ratio(cache.get("hit", 0.0), lookups),
            "saved_usd": get("cache_saved", 0.0),
        },
        "models": {
            model: {
                "calls": int(count),
                "errors": int(call_errors.get(model, 0.0)),
                "prompt_tokens": int(tokens_in.get(model, 0.0)),
                "completion_tokens": int(tokens_out.get(model, 0.0)),
                "spend_usd": get(f"spend_model:{model}", 0.0),
            }
            for model, count in calls.items()
        },
        "proposer_failures": int(get("proposer_fail", 0.0)),
        "quorum_failures": int(get("quorum_fail", 0.0)),
        "aggregator_fallbacks": int(get("agg_fallback", 0.0)),
        "latency_ms": {
            "all": latency_percentiles(counters),
            **{route: latency_percentiles(counters, route) for route in ROUTES if route in routes},
        },
        "shadow": {
            "runs": int(get("shadow_runs", 0.0)),
            "judged": int(judged),
            "cheap_enough": int(get("shadow_cheap_ok", 0.0)),
            "cheap_enough_rate": _ratio(get("shadow_cheap_ok", 0.0), judged),
            "cost_usd": get("shadow_cost", 0.0),
        },
        "classifier_versions": {version: int(n) for version, n in labelled(counters, "cv").items()},
    }


def series_point(start: int, counters: Mapping[str, float]) -> dict[str, Any]:
    """One bucket of the time series, with only what the charts draw."""
    routes = labelled(counters, "route")
    routed = sum(count for route, count in routes.items() if route != "none")
    cache = labelled(counters, "cache")
    spend_by_route = labelled(counters, "spend_route")
    latency_fields = labelled(counters, "lat")
    return {
        "t": start,
        "requests": int(counters.get("requests", 0.0)),
        "spend_usd": counters.get("spend", 0.0),
        "spend_by_route": {route: spend_by_route.get(route, 0.0) for route in (*ROUTES, "shadow")},
        "counterfactual_usd": counters.get("cf", 0.0),
        "saved_usd": counters.get("cf", 0.0) - counters.get("spend", 0.0),
        "escalation_rate": _ratio(routes.get("mixture", 0.0), routed),
        "cache_hit_rate": _ratio(cache.get("hit", 0.0), cache.get("hit", 0.0) + cache.get("miss", 0.0)),
        "cache_saved_usd": counters.get("cache_saved", 0.0),
        "errors": int(counters.get("errors", 0.0)),
        "latency_ms": {
            route: {key: stats[key] for key in ("p50", "p95")}
            for route in ("all", *ROUTES)
            for stats in [_percentiles(latency_fields, None if route == "all" else route)]
        },
    }


async def stats_report(
    redis: Redis, prefix: str, window: Window, now: float | None = None, top: int = 10
) -> dict[str, Any]:
    """Totals, the time series and the most expensive requests of a window."""
    at = time.time() if now is None else now
    buckets = await read_buckets(redis, prefix, window, at)
    return {
        "window": window.name,
        "bucket_s": window.resolution.seconds,
        "since": buckets[0][0],
        "until": at,
        "totals": summary(merge(fields for _, fields in buckets)),
        "series": [series_point(start, fields) for start, fields in buckets],
        "expensive": await read_expensive(redis, prefix, window, at, top) if top > 0 else [],
    }
