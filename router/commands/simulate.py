"""`moa-router simulate`: serve the simulated provider fleet as a stand-alone OpenAI-compatible server."""

from __future__ import annotations

import argparse
import contextlib
import socket
import sys
from typing import TYPE_CHECKING

from router.commands.argtypes import port_number

if TYPE_CHECKING:
    from router.simulator.fleet import FleetConfig

DEFAULT_PORT = 8001


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `simulate` subcommand."""
    parser = subparsers.add_parser(
        "simulate",
        help="serve the simulated provider fleet (OpenAI-compatible) on loopback",
        description=__doc__,
    )
    parser.add_argument("--port", type=port_number, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    parser.add_argument("--fleet", metavar="FILE", help="fleet YAML file (default: the demo fleet)")
    parser.add_argument(
        "--latency-scale",
        type=float,
        default=1.0,
        metavar="X",
        help="multiply every model's latencies by X (0 = answer at once)",
    )
    parser.add_argument("--seed", type=int, help="override the fleet's seed")
    parser.add_argument("--api-key", help="require this bearer token on /v1/* requests")


def run(args: argparse.Namespace) -> int:
    """Serve until interrupted; returns the process exit code."""
    import uvicorn

    from router.simulator.server import create_simulator_app, quiet_deliberate_drops

    if args.latency_scale < 0:
        print("moa-router simulate: --latency-scale must be >= 0", file=sys.stderr)
        return 2
    try:
        fleet = _fleet(args.fleet)
    except ValueError as exc:
        print(f"moa-router simulate: {exc}", file=sys.stderr)
        return 2
    overrides: dict[str, object] = {}
    if args.seed is not None:
        overrides["seed"] = args.seed
    if args.api_key:
        overrides["api_key"] = args.api_key
    fleet = fleet.scaled(args.latency_scale).model_copy(update=overrides)
    try:
        # Bound here rather than by uvicorn, which logs a port in use and exits with status 3.
        listener = socket.create_server(
            (args.host, args.port), family=socket.AF_INET6 if ":" in args.host else socket.AF_INET
        )
    except OSError as exc:
        print(f"moa-router simulate: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}", file=sys.stderr)
        return 2

    config = uvicorn.Config(
        create_simulator_app(fleet),
        host=args.host,
        port=args.port,
        lifespan="off",
        access_log=False,
        timeout_graceful_shutdown=2,
    )
    quiet_deliberate_drops()
    print(f"Simulated fleet at http://{args.host}:{args.port}/v1 (seed {fleet.seed})")
    for model in fleet.models:
        print(f"  {model.name:<16} family={model.family:<10} ttft={model.ttft_s * 1000:.0f} ms")
    # uvicorn shuts down gracefully on Ctrl-C, then re-raises the signal for the caller to see.
    with listener, contextlib.suppress(KeyboardInterrupt):
        uvicorn.Server(config).run(sockets=[listener])
    return 0


def _fleet(path: str | None) -> FleetConfig:
    """The fleet of the --fleet file, or the demo fleet; a file that cannot be used is a ValueError naming it."""
    import yaml
    from pydantic import ValidationError

    from router.simulator.fleet import default_fleet, load_fleet

    if path is None:
        return default_fleet()
    try:
        return load_fleet(path)
    except OSError as exc:
        raise ValueError(f"cannot read fleet file {path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise ValueError(f"fleet file {path} is not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    except yaml.YAMLError as exc:
        raise ValueError(f"fleet file {path} is not valid YAML: {exc}") from exc
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or '(top level)'}: {error['msg']}" for error in exc.errors()
        )
        raise ValueError(f"invalid fleet file {path}: {problems}") from exc
