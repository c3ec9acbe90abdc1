"""The ASGI app factory that worker processes use: `moa-router serve --workers N` runs
`uvicorn router.asgi:app_from_env --factory`, and each worker builds its own app from the config file
named by MOA_ROUTER_CONFIG (and REDIS_URL, shared by every worker and replica)."""

from __future__ import annotations

import logging
import os

from fastapi import FastAPI

LOG_LEVEL_ENV = "MOA_ROUTER_LOG_LEVEL"


def app_from_env() -> FastAPI:
    from router.app import create_app
    from router.config import load_settings

    if not logging.getLogger().handlers:  # a fresh worker process: the parent's logging setup is not inherited
        logging.basicConfig(
            level=os.environ.get(LOG_LEVEL_ENV, "INFO").upper(),
            format="%(asctime)s %(levelname)s %(process)d %(name)s: %(message)s",
        )
    return create_app(load_settings())
