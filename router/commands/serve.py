"""`moa-router serve`: run the service; `--demo` runs it with the simulated fleet and no keys."""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from collections.abc import Iterator
from typing import Any

from router.commands.argtypes import port_number
from router.config import Settings, load_settings, settings_from_mapping
from router.prompt_hash import configured_key
from router.providers.pricing import UnknownPriceError, check_prices
from router.redaction import load_redactor

logger = logging.getLogger("router.serve")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("serve", help="run the OpenAI-compatible router service")
    parser.add_argument("--config", help="YAML config file (default: $MOA_ROUTER_CONFIG)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=port_number, default=8080)
    parser.add_argument(
        "--demo", action="store_true", help="no keys, no external service: simulated providers and an embedded Redis"
    )
    parser.add_argument("--workers", type=int, default=1, help="worker processes (needs --config, not --demo)")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])


def demo_settings(base_url: str, overrides: dict[str, Any] | None = None) -> Settings:
    """The whole product against the simulated fleet; it serves no real users, so auth is open and prompt
    texts are kept for retraining."""
    from router.simulator.fleet import default_fleet, demo_model_entries

    fleet = default_fleet()
    entries = demo_model_entries(base_url, fleet)
    for role_entries in (entries["proposers"], [entries["cheap"], entries["aggregator"], entries["judge"]]):
        for entry in role_entries:
            model = fleet.model_named(entry["model"].split("/", 1)[1])
            entry["family"] = model.family if model else None
    data: dict[str, Any] = {
        **entries,
        "demo": True,
        "auth": {"open": True},
        "ledger": {"store_prompts": True},
        "shadow": {"cheap_sample_rate": 0.1},
        "mixture": {"proposer_deadline_s": 10.0, "quorum": 2},
        **(overrides or {}),
    }
    return settings_from_mapping(data, source="--demo")


@contextlib.contextmanager
def _demo_fleet() -> Iterator[str]:
    from router.simulator.fleet import default_fleet
    from router.simulator.runner import SimulatorServer

    with SimulatorServer(default_fleet()) as server:
        yield server.base_url


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from router.app import create_app

    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.log_level != "debug":  # httpx (litellm's HTTP client) logs every upstream call at INFO
        logging.getLogger("httpx").setLevel(logging.WARNING)
    with contextlib.ExitStack() as stack:
        try:
            if args.demo:
                base_url = stack.enter_context(_demo_fleet())
                settings = demo_settings(base_url)
            else:
                settings = load_settings(args.config)
            configured_key(settings)  # read by the service only: checked here, not with the config
            settings.check_api_keys()  # serve only: the other commands need no upstream key
            check_prices(settings)
            load_redactor(settings.ledger.redact)  # the outcome log's hook, loaded at its startup
        except (ValueError, UnknownPriceError) as exc:  # a ConfigError, the prompt hash key, a model's price
            print(f"moa-router: {exc}", file=sys.stderr)
            return 2
        if args.workers > 1:
            return _serve_workers(args, settings)
        app = create_app(settings)
        where = f"http://{args.host}:{args.port}"
        if args.demo:
            print(f"moa-router demo: simulated providers at {base_url}; auth is OPEN (demo only)", flush=True)
        print(f"moa-router serving OpenAI-compatible API at {where}/v1  dashboard: {where}/dashboard", flush=True)
        uvicorn.run(app, **_server_options(args, settings))
    return 0


def _server_options(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    """uvicorn's options, the same for one process and for several workers."""
    return {
        "host": args.host,
        "port": args.port,
        "log_level": args.log_level,
        "loop": "uvloop",
        "http": "httptools",
        "access_log": False,
        "timeout_graceful_shutdown": int(settings.resilience.shutdown_grace_s),
    }


def _serve_workers(args: argparse.Namespace, settings: Settings) -> int:
    """N worker processes, each building the app from MOA_ROUTER_CONFIG (router.asgi). They share one
    Redis: REDIS_URL, or else one embedded Redis that this parent process runs for all of them."""
    import os
    from pathlib import Path

    import uvicorn
    from uvicorn.config import STARTUP_FAILURE
    from uvicorn.supervisors import Multiprocess

    from router.asgi import LOG_LEVEL_ENV
    from router.redis_server import EmbeddedRedis

    chosen = args.config or os.environ.get("MOA_ROUTER_CONFIG")
    if args.demo or not chosen:
        print("moa-router: --workers needs --config FILE (the demo runs in one process)", file=sys.stderr)
        return 2
    os.environ["MOA_ROUTER_CONFIG"] = str(Path(chosen).resolve())
    os.environ[LOG_LEVEL_ENV] = args.log_level
    with contextlib.ExitStack() as stack:
        _share_metrics(stack)
        if settings.redis_url is None:
            redis = stack.enter_context(EmbeddedRedis(settings.data_dir / "redis", persist=True))
            os.environ["REDIS_URL"] = redis.url
        print(f"moa-router serving at http://{args.host}:{args.port}/v1 with {args.workers} workers", flush=True)
        config = uvicorn.Config(
            "router.asgi:app_from_env", factory=True, workers=args.workers, **_server_options(args, settings)
        )
        # uvicorn.run() ends with status 0 when a worker failed to start and it stopped the others; a
        # supervisor restarting the service only on failure must see one.
        supervisor = Multiprocess(config, sockets=[config.bind_socket()])
        supervisor.run()
        if any(worker.exitcode == STARTUP_FAILURE for worker in supervisor.processes):
            print("moa-router: a worker could not start (see above); the server stopped", file=sys.stderr)
            return STARTUP_FAILURE
    return 0


def _share_metrics(stack: contextlib.ExitStack) -> None:
    """Prometheus' multiprocess mode for the workers, so that a scrape sums them all (router/metrics.py):
    in the operator's PROMETHEUS_MULTIPROC_DIR, emptied of an earlier run's files as the client requires,
    or else in a directory of this run's own."""
    import os
    import tempfile
    from pathlib import Path

    from router.metrics import MULTIPROC_DIR_ENV, SHARED_METRICS_ENV

    os.environ[SHARED_METRICS_ENV] = "1"
    chosen = os.environ.get(MULTIPROC_DIR_ENV)
    if chosen:
        Path(chosen).mkdir(parents=True, exist_ok=True)
        for stale in Path(chosen).glob("*.db"):
            stale.unlink()
        return
    os.environ[MULTIPROC_DIR_ENV] = stack.enter_context(tempfile.TemporaryDirectory(prefix="moa-router-metrics-"))
