"""Errors in OpenAI's shape, `{"error": {"message", "type", "code", "param"}}`, with fitting statuses."""

from __future__ import annotations

import logging
from collections.abc import Mapping

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

logger = logging.getLogger(__name__)

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}


class APIError(Exception):
    def __init__(
        self, status: int, message: str, code: str, param: str | None = None, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param
        self.headers = dict(headers or {})

    @property
    def type(self) -> str:
        return _TYPES.get(self.status, "api_error" if self.status >= 500 else "invalid_request_error")


def error_body(status: int, message: str, code: str, param: str | None = None) -> dict[str, object]:
    err = APIError(status, message, code, param)
    return {"error": {"message": message, "type": err.type, "code": code, "param": param}}


def error_response(exc: APIError) -> Response:
    body = orjson.dumps(error_body(exc.status, exc.message, exc.code, exc.param))
    return Response(body, status_code=exc.status, media_type="application/json", headers=exc.headers)


async def _api_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, APIError)
    return error_response(exc)


async def _http_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return error_response(APIError(exc.status_code, str(exc.detail), code, headers=exc.headers))


async def _validation_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
    param = ".".join(str(p) for p in first["loc"] if p != "body") or None
    return error_response(APIError(400, f"{param or 'body'}: {first['msg']}", "invalid_request", param))


async def _unexpected(request: Request, exc: Exception) -> Response:
    # The last line of defence: a bug becomes a logged 500 in OpenAI's shape, never a bare traceback.
    logger.exception("unhandled error", exc_info=exc)
    # The chat handler leaves its x-request-id (and x-moa-* headers) here, so the 500 can be traced.
    headers = dict(getattr(request.state, "response_headers", None) or {})
    return error_response(APIError(500, "internal error in the router", "internal_error", headers=headers))


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(APIError, _api_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unexpected)
