"""GET /dashboard: one static page (no build step, no external network) that draws `/v1/stats`.

The chart library, uPlot, is vendored under static/vendor with its licence. The page itself holds
no data; it fetches /v1/stats with the admin key the user types in (none in open mode).
"""

from __future__ import annotations

import functools
from pathlib import Path

from fastapi import APIRouter
from starlette.responses import FileResponse, Response

router = APIRouter(include_in_schema=False)

STATIC_DIR = Path(__file__).parent / "static"
_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".txt": "text/plain"}
# Strict: the page runs only its own files and talks only to this service.
_HEADERS = {
    "content-security-policy": "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'",
    "x-content-type-options": "nosniff",
    "cache-control": "no-cache",
}


@functools.cache
def _static_files() -> dict[str, Path]:
    # Only files that ship in the package are served, looked up by name: no path from the URL is opened.
    return {
        path.relative_to(STATIC_DIR).as_posix(): path
        for path in STATIC_DIR.rglob("*")
        if path.is_file() and path.suffix in _TYPES
    }


@router.get("/dashboard")
async def dashboard() -> Response:
    return FileResponse(STATIC_DIR / "index.html", media_type="text/html", headers=_HEADERS)


@router.get("/dashboard/static/{name:path}")
async def static_file(name: str) -> Response:
    path = _static_files().get(name)
    if path is None:
        return Response("not found\n", status_code=404, media_type="text/plain")
    return FileResponse(path, media_type=_TYPES[path.suffix], headers=_HEADERS)
