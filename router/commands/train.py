"""`moa-router train`: train a classifier version from labelled data and promote it if not worse.

The new version is always saved; it is promoted only when its AUROC on the held-back split is not
worse than the active version's on the same rows (both heads, small tolerance), unless --no-promote.
With --from-log the version fitted on the data is then corrected towards the logged outcomes (feedback,
shadow verdicts; classifier.adaptation), and the gate is router.outcomes.logged_gate on the held-back
split; a promotion is announced to running replicas.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path

from classifier import artifacts
from classifier.artifacts import ArtifactError
from classifier.dataset import DatasetError, Row, load_rows, split_rows
from classifier.registry import ModelRegistry, VersionNotFoundError
from classifier.report import labelled_table
from classifier.training import (
    DEFAULT_ESCALATION_RATE,
    DEFAULT_HELD_BACK_FRACTION,
    labelled_metrics,
    not_worse,
    train_version,
)
from router.commands.locations import EXIT_BAD_CONFIG, add_config_option, models_dir
from router.commands.promotion import promote_and_announce

DEFAULT_DATA = Path("training_data")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("train", help="train a new classifier version", description=__doc__)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="JSON-lines file or directory of them")
    parser.add_argument("--no-promote", action="store_true", help="save the version but do not activate it")
    parser.add_argument("--from-log", action="store_true", help="also train on the outcome log (REDIS_URL / config)")
    add_config_option(parser, "its data directory (where versions are saved) and Redis (outcome log, promotions)")
    parser.add_argument("--held-back-fraction", type=float, default=DEFAULT_HELD_BACK_FRACTION)
    parser.add_argument(
        "--target-escalation-rate",
        type=float,
        default=DEFAULT_ESCALATION_RATE,
        help="share of held-back queries the initial thresholds send to the mixture",
    )
    parser.add_argument("--C", type=float, default=4.0, dest="C", help="inverse regularisation strength")
    parser.add_argument(
        "--output",
        type=Path,
        help="write the version to this new directory instead of the registry (how the shipped seed is built)",
    )


def run(args: argparse.Namespace) -> int:
    if not 0.0 < args.held_back_fraction < 1.0:
        return _usage_error("--held-back-fraction must be between 0 and 1 (exclusive)")
    if not 0.0 <= args.target_escalation_rate <= 1.0:
        return _usage_error("--target-escalation-rate must be within 0..1")
    if args.output is not None and args.output.exists():
        return _usage_error(f"{args.output} already exists; versions are immutable")
    try:
        rows = load_rows(args.data)
    except DatasetError as exc:
        return _usage_error(str(exc))
    directory = models_dir("train", args.config)  # before training: a bad config costs no training run
    if directory is None:
        return EXIT_BAD_CONFIG
    logged: list[Row] = []
    if args.from_log:
        from router.outcomes import read_logged_rows  # Redis and the log's reader: only when asked for

        read = read_logged_rows(args.config)
        if read is None:
            return 1
        logged = read
    try:
        scorer, meta = train_version(
            rows,
            logged=logged,
            held_back_fraction=args.held_back_fraction,
            target_escalation_rate=args.target_escalation_rate,
            params={"C": args.C},
        )
    except ValueError as exc:
        return _usage_error(str(exc))
    meta["training_data"] = str(args.data)
    if args.output is not None:
        created = datetime.now(UTC).isoformat(timespec="seconds")
        artifacts.save(args.output, scorer, {**meta, "version": args.output.name, "created_at": created})
        print(f"trained on {meta['n_train']} rows, held back {meta['n_held_back']}; wrote {args.output}")
        print(labelled_table({args.output.name: meta["metrics"]["held_back"]}))
        print(f"thresholds: {meta['thresholds']}")
        return 0
    registry = ModelRegistry(directory)
    version = registry.save(scorer, meta)
    print(f"trained {version} on {meta['n_train']} rows; held back {meta['n_held_back']}")

    if "adaptation" in meta:
        print(f"logged outcomes: {meta['adaptation']['reason']}")
    rows = [*rows, *logged]
    _, held_rows = split_rows(rows, args.held_back_fraction)
    candidate = meta["metrics"]["held_back"]
    columns = {version: candidate}
    active_name = registry.active_version()
    try:
        active = registry.load(active_name)
    except (VersionNotFoundError, ArtifactError) as exc:
        print(f"active version {active_name!r} cannot be loaded ({exc}); comparing with nothing")
        incumbent = None
    else:
        incumbent = labelled_metrics(active.scorer, held_rows)
        columns[f"{active_name} (active)"] = incumbent
    print(labelled_table(columns))
    print(f"thresholds: {meta['thresholds']}")

    if args.no_promote:
        print(f"not promoted (--no-promote); promote with: moa-router models promote {version}")
        return 0
    if args.from_log and incumbent is not None:
        from router.outcomes import logged_gate

        gate = logged_gate(active.scorer, scorer, rows, args.held_back_fraction)
        print(gate.describe())
        worse = not gate.passed
    else:
        worse = incumbent is not None and not not_worse(candidate, incumbent)
    if worse:
        print(f"not promoted: not shown to be at least as good as {active_name} on the held-back split")
        return 0
    # Another run may have promoted while this one trained: the gate then compared with the wrong version.
    retry = f"compare again with: moa-router train, or moa-router models promote {version}"
    return promote_and_announce(registry, version, active_name, "train", retry, args.config)


def _usage_error(message: str) -> int:
    print(f"moa-router train: {message}", file=sys.stderr)
    return 2
