"""`moa-router export`: the outcome log as JSON lines, for inspection.

`--kind outcomes` (default): feedback and shadow verdicts; `events`: every logged request; `rows`: the
labelled training rows `moa-router train --from-log` would add. The log is the one REDIS_URL (or the
config file) points at, under its key prefix; without either, the embedded Redis under the data
directory (stop a running demo first).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from redis.exceptions import RedisError

from router.config import ConfigError


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("export", help="write the outcome log as JSON lines", description=__doc__)
    parser.add_argument("--kind", choices=["outcomes", "events", "rows"], default="outcomes")
    parser.add_argument("--output", type=Path, help="file to write (default: standard output)")
    parser.add_argument("--config", help="YAML config file (default: $MOA_ROUTER_CONFIG)")
    parser.add_argument("--prefix", help="Redis key prefix (default: the config's redis_prefix, else 'moa')")


@contextlib.contextmanager
def _open_output(path: Path | None) -> Iterator[IO[bytes]]:
    if path is None:
        yield sys.stdout.buffer
        sys.stdout.flush()
        return
    with path.open("wb") as handle:
        yield handle


def run(args: argparse.Namespace) -> int:
    from router.outcomes import LogLocation, connect, export_lines, iter_events, iter_outcomes, labelled_rows

    try:
        location = LogLocation.from_environment(args.config, args.prefix)
    except ConfigError as exc:
        print(f"moa-router export: {exc}", file=sys.stderr)
        return 2
    count = 0
    try:
        with connect(location) as client, _open_output(args.output) as out:
            records: Iterator[dict[str, Any]]
            if args.kind == "events":
                records = iter_events(client, location.keys)
            elif args.kind == "outcomes":
                records = iter_outcomes(client, location.keys)
            else:
                # Weighted as `train --from-log` weighs them: by the config's ledger.*_weight.
                rows, stats = labelled_rows(iter_outcomes(client, location.keys), location.weights)
                print(stats.describe(), file=sys.stderr)
                records = iter(rows)
            for line in export_lines(records):
                out.write(line)
                count += 1
    except (RedisError, OSError, RuntimeError) as exc:  # RuntimeError: the embedded Redis did not start
        print(f"moa-router export: cannot read the outcome log: {exc}", file=sys.stderr)
        return 1
    print(f"exported {count} {args.kind} from {location.keys.prefix}:ledger:*", file=sys.stderr)
    return 0
