"""`moa-router models list|promote VERSION|rollback`: manage classifier versions."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from classifier.artifacts import ArtifactError
from classifier.registry import ModelRegistry, VersionInfo, VersionNotFoundError
from router.commands.locations import EXIT_BAD_CONFIG, add_config_option, models_dir
from router.commands.promotion import report_announcement
from router.hot_reload import announce_promotion

_CONFIG_USES = "its data directory (the versions) and Redis (promotions)"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("models", help="list, promote or roll back classifier versions")
    add_config_option(parser, _CONFIG_USES)
    actions = parser.add_subparsers(dest="models_action", required=True)
    listing = actions.add_parser("list", help="list versions (the active one is marked *)")
    promote = actions.add_parser("promote", help="make a version the active one")
    promote.add_argument("version")
    rollback = actions.add_parser("rollback", help="re-activate the version active before the last promotion")
    for action in (listing, promote, rollback):
        add_config_option(action, _CONFIG_USES, default=argparse.SUPPRESS)  # `models promote V --config F` too


def run(args: argparse.Namespace) -> int:
    directory = models_dir("models", args.config)
    if directory is None:
        return EXIT_BAD_CONFIG
    registry = ModelRegistry(directory)
    if args.models_action == "list":
        print(_table(registry.list_versions()))
        return 0
    # Announced under the registry's lock, so Redis ends up naming the version ACTIVE names even when two
    # promotions or rollbacks run at once.
    with registry.lock():
        try:
            if args.models_action == "promote":
                registry.promote(args.version)
                version = args.version
                print(f"promoted {version}")
            else:
                version = registry.rollback()
                print(f"rolled back to {version}")
        except (VersionNotFoundError, ArtifactError) as exc:
            print(f"moa-router models: {exc}", file=sys.stderr)
            return 1
        announcement = announce_promotion(version, args.config)
    return report_announcement(announcement, "models")


def _auroc(metrics: dict[str, Any], head: str) -> str:
    value = metrics.get("held_back", {}).get(head, {}).get("auroc")
    return "-" if value is None else f"{value:.3f}"


def _table(versions: list[VersionInfo]) -> str:
    lines = [f"  {'version':28} {'created':26} {'n_train':>8} {'auroc_d':>8} {'auroc_s':>8}"]
    for info in versions:
        mark = "*" if info.active else " "
        lines.append(
            f"{mark} {info.version:28} {info.created_at:26} {info.n_train:>8} "
            f"{_auroc(info.metrics, 'difficulty'):>8} {_auroc(info.metrics, 'stakes'):>8}"
        )
    return "\n".join(lines)
