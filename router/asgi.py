"""The ASGI app factory that worker processes use: `moa-router serve --workers N` runs
`uvicorn router.asgi:app_from_env --factory`, and each worker builds its own app from the config file
named by MOA_ROUTER_CONFIG (and REDIS_URL, shared by every worker and replica)."""

from __future__ import annotations

import logging
import os
import sys

from fastapi import FastAPI

LOG_LEVEL_ENV = "MOA_ROUTER_LOG_LEVEL"
# uvicorn's exit status for a worker that could not start: its supervisor then stops every worker, where
# any other status has the worker started again (a bad config would fail, and be reported, forever).
WORKER_STARTUP_FAILURE = 3


def app_from_env() -> FastAPI:
    from router.app import create_app
    from router.config import load_settings
    from router.prompt_hash import configured_key
    from router.providers.pricing import UnknownPriceError, check_prices
    from router.redaction import load_redactor

    if not logging.getLogger().handlers:  # a fresh worker process: the parent's logging setup is not inherited
        logging.basicConfig(
            level=os.environ.get(LOG_LEVEL_ENV, "INFO").upper(),
            format="%(asctime)s %(levelname)s %(process)d %(name)s: %(message)s",
        )
    try:
        settings = load_settings()
        configured_key(settings)  # read by the service only: checked here as `serve` checks it
        settings.check_api_keys()
        check_prices(settings)
        load_redactor(settings.ledger.redact)
        return create_app(settings)
    except (ValueError, UnknownPriceError) as exc:  # said as `serve` says it, not as a traceback
        print(f"moa-router: {exc}", file=sys.stderr, flush=True)
        sys.exit(WORKER_STARTUP_FAILURE)
    except Exception:  # anything else fails the same way in every restart: stop, with its traceback
        logging.getLogger(__name__).exception("moa-router: this worker could not build its app")
        sys.exit(WORKER_STARTUP_FAILURE)
