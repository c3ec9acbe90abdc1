"""Routing quality on the RouterBench development set: APGR and CPT of the classifier's difficulty
score against the random and prompt-length baselines (and the oracle, as the ceiling).

The classifier is never trained or tuned on this set; it is only scored here.

    .venv/bin/python -m bench.routing_quality
    .venv/bin/python -m bench.routing_quality --cheap mistral-7b-chat --strong gpt-4-1106-preview claude-v2 claude-v1
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np

from classifier.metrics import apgr, routing_curve
from classifier.registry import load_model
from classifier.report import routing_table
from classifier.routing_data import (
    DEFAULT_CHEAP,
    DEFAULT_ROUTING_DATA,
    DEFAULT_STRONG,
    read_routing_rows,
    routing_outcomes,
)
from classifier.routing_eval import RANK_BY, evaluate_routers, router_scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="version id or directory (default: the active version)")
    parser.add_argument("--data", type=Path, default=DEFAULT_ROUTING_DATA)
    parser.add_argument("--cheap", default=DEFAULT_CHEAP)
    parser.add_argument("--strong", nargs="+", default=list(DEFAULT_STRONG))
    parser.add_argument("--rank-by", choices=RANK_BY, default="difficulty")
    parser.add_argument("--random-draws", type=int, default=200, help="seeded random routers to average")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    model = load_model(args.model)
    rows = read_routing_rows(args.data)
    outcomes = routing_outcomes(rows, args.cheap, args.strong)
    scores = router_scores(model.scorer, outcomes.texts, args.rank_by)
    results = evaluate_routers(outcomes, {f"classifier:{model.version}": scores})
    reports = {name: result.report.to_json() for name, result in results.items()}

    # The exact random expectation is 0.5; a single seeded draw varies around it.
    rng = np.random.default_rng(0)
    draws = [
        apgr(routing_curve(rng.random(len(scores)), outcomes.cheap_quality, outcomes.strong_quality))
        for _ in range(args.random_draws)
    ]
    # Which kinds of prompt the classifier sends first: mean score per source benchmark.
    by_source: dict[str, list[float]] = defaultdict(list)
    sources = {str(row.get("id")): str(row.get("eval_name", "?")) for row in rows}
    for prompt_id, score in zip(outcomes.ids, scores.tolist(), strict=True):
        by_source[sources.get(prompt_id, "?")].append(score)
    summary = {
        "data": str(args.data),
        "n": len(outcomes.texts),
        "skipped": outcomes.skipped,
        "cheap": outcomes.cheap_model,
        "strong": list(outcomes.strong_models),
        "rank_by": args.rank_by,
        "routers": reports,
        "random_draws": {
            "n": len(draws),
            "mean": float(np.mean(draws)),
            "p5": float(np.percentile(draws, 5)),
            "p95": float(np.percentile(draws, 95)),
        },
        "mean_score_by_source": {name: float(np.mean(values)) for name, values in sorted(by_source.items())},
    }
    if args.json:
        print(json.dumps(summary, indent=2))
        return
    print(
        f"{summary['n']} prompts ({summary['skipped']} without outcomes); cheap {outcomes.cheap_model}, "
        f"strong {'+'.join(outcomes.strong_models)}; classifier ranked by {args.rank_by}"
    )
    print(routing_table(reports))
    random_draws = summary["random_draws"]
    print(
        f"random routers, {random_draws['n']} seeded draws: APGR mean {random_draws['mean']:.3f} "
        f"(5-95%: {random_draws['p5']:.3f}-{random_draws['p95']:.3f})"
    )
    print("mean score by source: " + ", ".join(f"{k} {v:.3f}" for k, v in summary["mean_score_by_source"].items()))


if __name__ == "__main__":
    main()
