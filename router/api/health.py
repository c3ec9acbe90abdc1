"""Liveness, readiness and the model list."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from redis.exceptions import RedisError
from starlette.responses import JSONResponse

from router.api.errors import APIError
from router.scoring import ActiveClassifier
from router.state import get_state

router = APIRouter()

PUBLIC_MODEL_ID = "moa-router"


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


def classifier_degradation(classifier: ActiveClassifier) -> dict[str, Any] | None:
    """What ops need when the promoted version cannot be loaded here (the reason with its paths is in the log)."""
    failure = classifier.failure
    if failure is None:
        return None
    return {
        "serving": classifier.version,
        "promoted": failure.version,
        "problem": failure.problem,
        "stage": failure.stage,
        "since": datetime.fromtimestamp(failure.since, UTC).isoformat(timespec="seconds"),
    }


@router.get("/readyz", response_model=None)
async def readyz(request: Request) -> JSONResponse:
    state = get_state(request)
    checks: dict[str, str] = {"classifier": state.classifier.version}
    body: dict[str, Any] = {"checks": checks}
    ready = True
    if state.redis is not None:
        try:
            await state.redis.ping()
            checks["redis"] = "ok"
        except (RedisError, OSError, TimeoutError) as exc:
            # Redis is optional for answering (the cache degrades), so report it without failing readiness.
            checks["redis"] = f"unavailable: {type(exc).__name__}"
    # A replica serving an older classifier version than the promoted one still answers: ready, degraded.
    degraded = classifier_degradation(state.classifier)
    if degraded is not None:
        body["degraded"] = {"classifier": degraded}
    return JSONResponse({"status": "ready" if ready else "not ready", **body}, status_code=200 if ready else 503)


def _model() -> dict[str, object]:
    return {"id": PUBLIC_MODEL_ID, "object": "model", "created": int(time.time()), "owned_by": "moa-router"}


@router.get("/v1/models")
async def list_models(request: Request) -> dict[str, object]:
    get_state(request).auth.tenant(request.headers)
    return {"object": "list", "data": [_model()]}


@router.get("/v1/models/{model_id:path}")
async def retrieve_model(request: Request, model_id: str) -> dict[str, object]:
    """What SDKs and tools call to check a model exists (`client.models.retrieve`)."""
    get_state(request).auth.tenant(request.headers)
    if model_id != PUBLIC_MODEL_ID:
        raise APIError(
            404, f"the model {model_id!r} does not exist; this router serves {PUBLIC_MODEL_ID!r}", "model_not_found"
        )
    return _model()
