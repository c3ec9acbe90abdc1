"""`moa-router evaluate`: how good is a classifier version?

On labelled rows (--data, the held-back split by default): AUROC, expected calibration error, log
loss and Brier score of both scores. On routing outcome data (--routing-data, RouterBench-style
JSON lines): the cost-quality curve of routing the highest-scored prompts to the strong tier, its
APGR and CPT(50%/80%/95%) as RouteLLM defines them, next to the random, prompt-length and oracle
routers, plus a PNG plot of the curves.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from classifier.artifacts import ArtifactError
from classifier.dataset import DatasetError, load_rows, split_rows
from classifier.registry import VersionNotFoundError, load_model
from classifier.report import labelled_table, routing_table
from classifier.routing_data import (
    DEFAULT_CHEAP,
    DEFAULT_ROUTING_DATA,
    DEFAULT_STRONG,
    read_routing_rows,
    routing_outcomes,
)
from classifier.routing_eval import RANK_BY, evaluate_routers, router_scores
from classifier.training import labelled_metrics
from router.commands.locations import EXIT_BAD_CONFIG, add_config_option, models_dir

DEFAULT_DATA = Path("training_data")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="AUROC/ECE on labelled data; APGR/CPT on routing outcome data",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--model", metavar="PATH", help="version id or directory (default: the active version)")
    parser.add_argument("--data", type=Path, help=f"labelled JSON lines (default: {DEFAULT_DATA}/ if present)")
    parser.add_argument(
        "--split",
        choices=("held-back", "all"),
        default="held-back",
        help="which labelled rows to score (default: the version's held-back split)",
    )
    parser.add_argument(
        "--routing-data", type=Path, help=f"routing outcomes (default: {DEFAULT_ROUTING_DATA} if present)"
    )
    parser.add_argument("--cheap", default=DEFAULT_CHEAP, help="the cheap model (full name or the part after '/')")
    parser.add_argument(
        "--strong",
        nargs="+",
        default=list(DEFAULT_STRONG),
        help="the strong tier: one model, or several counted correct by majority",
    )
    parser.add_argument("--rank-by", choices=RANK_BY, default="difficulty", help="score that orders the prompts")
    parser.add_argument("--plot", type=Path, help="PNG path (default: <data dir>/reports/routing-curve.png)")
    parser.add_argument("--no-plot", action="store_true")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    add_config_option(parser, "its data directory (the active version, the default plot's place)")


def run(args: argparse.Namespace) -> int:
    directory = models_dir("evaluate", args.config)
    if directory is None:
        return EXIT_BAD_CONFIG
    try:
        model = load_model(args.model, directory)
    except (VersionNotFoundError, ArtifactError) as exc:
        print(f"moa-router evaluate: {exc}", file=sys.stderr)
        return 2
    data = args.data or (DEFAULT_DATA if DEFAULT_DATA.is_dir() else None)
    routing_data = args.routing_data or (DEFAULT_ROUTING_DATA if DEFAULT_ROUTING_DATA.is_file() else None)
    if data is None and routing_data is None:
        print("moa-router evaluate: nothing to evaluate: give --data and/or --routing-data", file=sys.stderr)
        return 2
    result: dict[str, Any] = {"version": model.version}
    try:
        if data is not None:
            result["labelled"] = _labelled(model.scorer, model.meta, data, args.split)
        if routing_data is not None:
            plot = None if args.no_plot else args.plot or directory.parent / "reports" / "routing-curve.png"
            result["routing"] = _routing(model.scorer, model.version, routing_data, args, plot)
    except (DatasetError, ValueError, OSError) as exc:
        print(f"moa-router evaluate: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"classifier version {model.version}")
    if "labelled" in result:
        labelled = result["labelled"]
        print(f"\nlabelled data {labelled['data']} ({labelled['split']} split)")
        print(labelled_table({model.version: labelled["metrics"]}))
    if "routing" in result:
        routing = result["routing"]
        print(
            f"\nrouting data {routing['data']}: {routing['n']} prompts ({routing['skipped']} without outcomes), "
            f"cheap {routing['cheap']} quality {routing['cheap_quality']:.3f}, "
            f"strong {'+'.join(routing['strong'])} quality {routing['strong_quality']:.3f}, ranked by {args.rank_by}"
        )
        print(routing_table(routing["routers"]))
        if routing.get("plot"):
            print(f"plot: {routing['plot']}")
    return 0


def _labelled(scorer: Any, meta: dict[str, Any], data: Path, split: str) -> dict[str, Any]:
    rows = load_rows(data)
    if split == "held-back":
        fraction = float(meta.get("split", {}).get("held_back_fraction", 0.2))
        _, rows = split_rows(rows, fraction)
    if not rows:
        raise ValueError(f"{data}: no rows in the {split} split")
    return {"data": str(data), "split": split, "metrics": labelled_metrics(scorer, rows)}


def _routing(scorer: Any, version: str, path: Path, args: argparse.Namespace, plot: Path | None) -> dict[str, Any]:
    outcomes = routing_outcomes(read_routing_rows(path), args.cheap, args.strong)
    results = evaluate_routers(outcomes, {version: router_scores(scorer, outcomes.texts, args.rank_by)})
    curve = results[version].curve
    output: dict[str, Any] = {
        "data": str(path),
        "n": len(outcomes.texts),
        "skipped": outcomes.skipped,
        "cheap": outcomes.cheap_model,
        "strong": list(outcomes.strong_models),
        "cheap_quality": curve.cheap_quality,
        "strong_quality": curve.strong_quality,
        "routers": {name: result.report.to_json() for name, result in results.items()},
        "curve": {
            "strong_share": curve.strong_share.tolist(),
            "quality": curve.quality.tolist(),
            "cost_usd": curve.cost.tolist(),
        },
    }
    if plot is not None:
        from classifier.plot import plot_routing_curves

        title = f"{outcomes.cheap_model} vs {'+'.join(outcomes.strong_models)} ({len(outcomes.texts)} prompts)"
        output["plot"] = str(plot_routing_curves({n: r.curve for n, r in results.items()}, plot, title))
    return output
