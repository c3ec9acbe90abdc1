"""The `moa-router` command line: one module per subcommand under router.commands."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Protocol

# Each name is a module in router.commands exposing `register(subparsers)` and `run(args) -> int`.
COMMANDS: tuple[str, ...] = (
    "serve",
    "simulate",
    "score",
    "evaluate",
    "calibrate",
    "train",
    "models",
    "export",
    "report",
)


class _Command(Protocol):
    def register(self, subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None: ...

    def run(self, args: argparse.Namespace) -> int: ...


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="moa-router", description=__doc__)
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"router.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"router.commands.{name}":
                raise
            continue  # a command still being written is simply not offered
        command: _Command = module
        command.register(subparsers)
        subparsers.choices[name].set_defaults(_run=command.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args._run(args)
    except BrokenPipeError:
        # The reader went away (`moa-router score < big.jsonl | head`): stop quietly, as Unix tools do.
        # stdout is pointed at /dev/null so that Python's final flush does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, what a shell reports for a tool killed by a closed pipe
    except KeyboardInterrupt:
        # Ctrl-C is the user's choice, not a failure to show a traceback for; 128 + SIGINT as shells report.
        print(f"moa-router {args.command}: interrupted", file=sys.stderr)
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
