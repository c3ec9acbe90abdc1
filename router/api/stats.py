"""GET /v1/stats: spend, savings, rates, latency and budget use over a window, for admins."""

from __future__ import annotations

import dataclasses

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from router.api.errors import APIError
from router.budget import BudgetGuard
from router.state import get_state
from router.stats import TOP_PER_BUCKET, StatsRecorder
from router.stats_query import WINDOWS, stats_report

router = APIRouter()

# Each bucket keeps only its most expensive TOP_PER_BUCKET requests: a longer list could leave out some
# of the window's true top (all in one busy bucket) and still look complete.
MAX_TOP = TOP_PER_BUCKET


@router.get("/v1/stats", response_model=None)
async def get_stats(request: Request, window: str = "day", top: int = 10) -> Response:
    """`window`: hour (minute buckets), day or week (hour buckets), 30d (day buckets);
    `top`: how many of the most expensive requests to list."""
    from redis.exceptions import RedisError

    state = get_state(request)
    state.auth.require_admin(request.headers)
    chosen = WINDOWS.get(window)
    if chosen is None:
        raise APIError(400, f"window must be one of {', '.join(WINDOWS)}", "invalid_window", "window")
    if not 0 <= top <= MAX_TOP:
        raise APIError(400, f"top must be between 0 and {MAX_TOP}", "invalid_top", "top")
    recorder = state.components.get("stats")
    if not isinstance(recorder, StatsRecorder) or state.redis is None:
        raise APIError(503, "stats are off: they need Redis", "stats_unavailable")
    try:
        await recorder.flush()  # this replica's latest requests count too
        report = await stats_report(state.redis, state.settings.redis_prefix, chosen, top=top)
    except (RedisError, OSError) as exc:
        raise APIError(
            503, f"stats are unavailable: Redis did not answer ({type(exc).__name__})", "stats_unavailable"
        ) from exc
    guard = state.components.get("budget")
    report["budget"] = guard.snapshot() if isinstance(guard, BudgetGuard) else None
    report["classifier_version"] = state.classifier.version
    # The active policy, so that a request's scores can be read against what routed it.
    report["thresholds"] = dataclasses.asdict(state.classifier.thresholds)
    return Response(orjson.dumps(report), media_type="application/json", headers={"cache-control": "no-store"})
