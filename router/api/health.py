"""Liveness, readiness and the model list."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request
from redis.exceptions import RedisError
from starlette.responses import JSONResponse

from router.state import get_state

router = APIRouter()

PUBLIC_MODEL_ID = "moa-router"


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", response_model=None)
async def readyz(request: Request) -> JSONResponse:
    state = get_state(request)
    checks: dict[str, str] = {"classifier": state.classifier.version}
    ready = True
    if state.redis is not None:
        try:
            await state.redis.ping()
            checks["redis"] = "ok"
        except (RedisError, OSError, TimeoutError) as exc:
            # Redis is optional for answering (the cache degrades), so report it without failing readiness.
            checks["redis"] = f"unavailable: {type(exc).__name__}"
    return JSONResponse(
        {"status": "ready" if ready else "not ready", "checks": checks}, status_code=200 if ready else 503
    )


@router.get("/v1/models")
async def list_models(request: Request) -> dict[str, object]:
    get_state(request).auth.tenant(request.headers)
    return {
        "object": "list",
        "data": [
            {"id": PUBLIC_MODEL_ID, "object": "model", "created": int(time.time()), "owned_by": "moa-router"},
        ],
    }
