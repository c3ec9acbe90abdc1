"""`moa-router calibrate`: set the routing policy's thresholds on held-back labelled data.

With --target-escalation-rate R, the thresholds send at most a share R of the held-back queries to
the mixture, choosing the rule that catches the most benefit (difficult queries first, high-stakes
ones next). With --target-quality Q, they are the cheapest rule that escalates at least a share Q of
the difficult queries. Versions are never changed in place: the calibrated thresholds are saved with
the same weights as a new version, promoted (and announced to running replicas) when the calibrated
version was the active one, unless --no-promote.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from classifier.artifacts import ArtifactError
from classifier.calibration import choose_thresholds
from classifier.dataset import DatasetError, load_rows, split_rows
from classifier.registry import ModelRegistry, VersionNotFoundError
from classifier.training import LabelledData
from router.commands.locations import EXIT_BAD_CONFIG, add_config_option, models_dir_of, service_settings
from router.commands.promotion import promote_and_announce
from router.config import ConfigError

DEFAULT_DATA = Path("training_data")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "calibrate",
        help="set the policy thresholds on held-back data",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--target-escalation-rate", type=float, metavar="RATE", help="0..1")
    target.add_argument("--target-quality", type=float, metavar="RECALL", help="share of difficult queries, 0..1")
    parser.add_argument("--model", metavar="VERSION", help="version to calibrate (default: the active one)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="labelled JSON lines (file or directory)")
    parser.add_argument(
        "--held-back-fraction",
        type=float,
        help="split of --data to calibrate on (default: the version's own training split)",
    )
    parser.add_argument("--stakes-weight", type=float, default=0.5, help="value of escalating a high-stakes query")
    parser.add_argument("--no-promote", action="store_true", help="do not activate the calibrated version")
    add_config_option(parser, "its data directory (the versions) and Redis (promotions)")


def run(args: argparse.Namespace) -> int:
    for name in ("target_escalation_rate", "target_quality"):
        value = getattr(args, name)
        if value is not None and not 0.0 <= value <= 1.0:
            return _usage_error(f"--{name.replace('_', '-')} must be within 0..1")
    if args.held_back_fraction is not None and not 0.0 < args.held_back_fraction < 1.0:
        # 1 would calibrate on the rows the version was trained on, whose scores are over-confident.
        return _usage_error("--held-back-fraction must be between 0 and 1 (exclusive)")
    try:
        settings = service_settings(args.config)
    except ConfigError as exc:
        print(f"moa-router calibrate: {exc}", file=sys.stderr)
        return EXIT_BAD_CONFIG
    directory = models_dir_of(settings)
    registry = ModelRegistry(directory)
    try:
        model = registry.load(args.model)
        rows = load_rows(args.data)
    except (VersionNotFoundError, ArtifactError, DatasetError) as exc:
        return _usage_error(str(exc))
    fraction = args.held_back_fraction
    if fraction is None:
        fraction = float(model.meta.get("split", {}).get("held_back_fraction", 0.2))
    _, held_rows = split_rows(rows, fraction)
    if not held_rows:
        return _usage_error("no held-back rows in --data")
    held = LabelledData.from_rows(held_rows)
    # With one class only, any threshold looks perfect (the recall of an empty set is 1).
    if not 0 < held.difficulty.sum() < len(held_rows):
        return _usage_error(f"all {len(held_rows)} held-back rows have one difficulty label: nothing to calibrate")
    if not 0 < held.stakes.sum() < len(held_rows):
        print(f"warning: the {len(held_rows)} held-back rows are all of one stakes label", file=sys.stderr)
    probabilities = model.scorer.predict_proba(held.texts)
    choice = choose_thresholds(
        probabilities[:, 0],
        probabilities[:, 1],
        held.difficulty,
        held.stakes,
        target_escalation_rate=args.target_escalation_rate,
        target_quality=args.target_quality,
        stakes_weight=args.stakes_weight,
    )
    meta = dict(model.meta)
    meta["thresholds"] = choice.thresholds()
    meta["threshold_choice"] = {
        "target_escalation_rate": args.target_escalation_rate,
        "target_quality": args.target_quality,
        "stakes_weight": args.stakes_weight,
        "n_rows": len(held_rows),
        "escalation_rate": choice.escalation_rate,
        "difficult_recall": choice.difficult_recall,
        "stakes_recall": choice.stakes_recall,
    }
    was_active = registry.active_version() == model.version
    stored = registry.derive(model.version, meta)
    print(f"thresholds {choice.thresholds()} on {len(held_rows)} held-back rows")
    print(
        f"escalation rate {choice.escalation_rate:.3f}, difficult recall {choice.difficult_recall:.3f}, "
        f"high-stakes recall {choice.stakes_recall:.3f}"
    )
    thresholds = {"difficulty", "stakes", "stakes_min_difficulty"}
    overridden = {} if settings is None else settings.policy.model_dump(include=thresholds, exclude_none=True)
    if overridden:  # the service takes these over the version's: the rates above are not what it will do
        print(
            f"warning: the config's policy sets {overridden}; the service uses those, not the thresholds "
            "chosen here (remove them from the config to route by these)",
            file=sys.stderr,
        )
    print(f"saved as {stored} (weights of {model.version})")
    if was_active and not args.no_promote:
        retry = f"promote with: moa-router models promote {stored}"
        return promote_and_announce(registry, stored, model.version, "calibrate", retry, args.config)
    return 0


def _usage_error(message: str) -> int:
    print(f"moa-router calibrate: {message}", file=sys.stderr)
    return 2
