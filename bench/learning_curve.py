"""Learning curve: routing quality (APGR) after training on 0, 300 and 1,000 logged outcomes.

RouterBench's development set (`../shared/data/routerbench-dev.jsonl`) is split at random into an
evaluation part and a replay pool. For each curve point n, a fresh service (real HTTP, the simulated
fleet upstream, a real Redis, prompts stored) receives the first n pool prompts as traffic; each answer
is rated through `POST /v1/feedback` with the cheap model's recorded correctness on that prompt (good
when it was right). Then `moa-router train --from-log` fits the seed data and corrects the difficulty
head towards those outcomes (classifier.adaptation), gates and promotes, and the running service must
answer with the promoted version. APGR is measured on the evaluation part, ranking by the difficulty
score, for the promoted version and for the candidate trained (promoted or not). n = 0 is the shipped
seed. Several random splits give a spread; the gain column is
paired (each split's point minus the same split's seed, on the same evaluation part), which removes
most of the split-to-split spread of APGR itself.

The replay sends every prompt to the cheap route (`--replay-route cheap`, the default): the rating is
then exactly the label the feedback gives, as in an exploration period. `--replay-route auto` lets the
policy route and rates each answer with the correctness of the route that gave it (the strong tier for
mixture-routed ones), so only the label rules of router.outcomes apply.

A point larger than the pool (1,000 > the ~620 prompts left after holding out the evaluation part) is
run with the whole pool instead and reported as such.

    .venv/bin/python -m bench.learning_curve
    .venv/bin/python -m bench.learning_curve --points 0 100 300 1000 --splits 3 --json results.json
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import yaml

from classifier.registry import ModelRegistry
from classifier.routing_data import (
    DEFAULT_CHEAP,
    DEFAULT_ROUTING_DATA,
    DEFAULT_STRONG,
    RoutingOutcomes,
    read_routing_rows,
    routing_outcomes,
)
from classifier.routing_eval import evaluate_routers, router_scores

SEED_DATA = Path("training_data")


@dataclass(frozen=True)
class Point:
    split: int
    requested: int
    outcomes: int  # outcomes actually logged (feedback posted)
    bad_share: float  # share of "bad" ratings among them
    trained: str  # the candidate version ("seed" at n = 0)
    promoted: bool
    served: str  # the version the running service answered with afterwards
    apgr_active: float
    apgr_candidate: float
    train_s: float


def subset(outcomes: RoutingOutcomes, index: np.ndarray[Any, Any]) -> RoutingOutcomes:
    return replace(
        outcomes,
        ids=[outcomes.ids[i] for i in index],
        texts=[outcomes.texts[i] for i in index],
        cheap_quality=outcomes.cheap_quality[index],
        strong_quality=outcomes.strong_quality[index],
        cheap_cost=outcomes.cheap_cost[index],
        strong_cost=outcomes.strong_cost[index],
    )


def apgr(registry: ModelRegistry, version: str, evaluation: RoutingOutcomes) -> float:
    scores = router_scores(registry.load(version).scorer, evaluation.texts, "difficulty")
    return evaluate_routers(evaluation, {"router": scores}, baselines=False)["router"].report.apgr


@contextlib.contextmanager
def environment(**values: str) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def zero_latency_fleet() -> Any:
    from router.simulator.fleet import FleetConfig, default_fleet

    fleet = default_fleet()
    models = tuple(m.model_copy(update={"ttft_s": 0.0, "per_token_s": 0.0}) for m in fleet.models)
    return FleetConfig(seed=fleet.seed, models=models)


def replay(base: str, pool: RoutingOutcomes, route: str) -> tuple[int, int]:
    """Send every pool prompt and rate its answer; returns (ratings posted, of which bad)."""

    def one(i: int) -> bool:
        with httpx.Client(timeout=60) as http:
            body = {"model": "m", "messages": [{"role": "user", "content": pool.texts[i]}]}
            response = http.post(f"{base}/v1/chat/completions", json=body, headers={"x-moa-route": route})
            response.raise_for_status()
            served = response.headers["x-moa-route"]
            quality = pool.cheap_quality[i] if served == "cheap" else pool.strong_quality[i]
            rating = "good" if quality >= 0.5 else "bad"
            feedback = {"request_id": response.headers["x-request-id"], "rating": rating}
            http.post(f"{base}/v1/feedback", json=feedback).raise_for_status()
            return rating == "bad"

    with ThreadPoolExecutor(max_workers=8) as workers:
        bad = sum(workers.map(one, range(len(pool.texts))))
    return len(pool.texts), bad


def served_version(base: str, wanted: str, timeout_s: float = 10.0) -> str:
    """The version the service answers with, waiting up to `timeout_s` for `wanted` (hot reload)."""
    deadline = time.monotonic() + timeout_s
    body = {"model": "m", "messages": [{"role": "user", "content": "Which version answers?"}]}
    while True:
        response = httpx.post(f"{base}/v1/chat/completions", json=body, headers={"x-moa-route": "cheap"}, timeout=30)
        version = response.headers["x-moa-classifier-version"]
        if version == wanted or time.monotonic() > deadline:
            return version
        time.sleep(0.2)


def run_point(
    split: int,
    n: int,
    pool: RoutingOutcomes,
    evaluation: RoutingOutcomes,
    args: argparse.Namespace,
    env: dict[str, Any],
) -> Point:
    with tempfile.TemporaryDirectory(prefix="moa-learning-curve-") as tmp:
        return _run_point_in(Path(tmp), split, n, pool, evaluation, args, env)


def _run_point_in(
    work: Path,
    split: int,
    n: int,
    pool: RoutingOutcomes,
    evaluation: RoutingOutcomes,
    args: argparse.Namespace,
    env: dict[str, Any],
) -> Point:
    from router.app import create_app
    from router.background_server import BackgroundServer
    from router.cli import main as cli
    from router.config import settings_from_mapping

    data_dir = work / "data"
    config = {
        **env["entries"],
        "auth": {"open": True},
        "ledger": {"store_prompts": True, "feedback_weight": args.feedback_weight},
        "limits": {"max_body_bytes": 4_000_000},
        "data_dir": str(data_dir),
        "redis_url": env["redis_url"],
        "redis_prefix": f"lc{uuid.uuid4().hex[:10]}",
    }
    (work / "router.yaml").write_text(yaml.safe_dump(config))
    registry = ModelRegistry(data_dir / "models")
    with BackgroundServer(create_app(settings_from_mapping(config))) as server:
        if n == 0:
            seed = apgr(registry, "seed", evaluation)
            served = served_version(server.url, "seed")
            return Point(split, 0, 0, 0.0, "seed", False, served, seed, seed, 0.0)
        posted, bad = replay(server.url, subset(pool, np.arange(n)), args.replay_route)
        time.sleep(0.5)  # the outcome log's last batch
        log = io.StringIO()
        started = time.perf_counter()
        variables = {"MOA_ROUTER_CONFIG": str(work / "router.yaml"), "MOA_ROUTER_DATA_DIR": str(data_dir)}
        with environment(**variables), contextlib.redirect_stdout(log):
            code = cli(["train", "--from-log", "--data", str(args.seed_data)])
        train_s = time.perf_counter() - started
        if code != 0:
            raise RuntimeError(f"train --from-log failed ({code}):\n{log.getvalue()}")
        if args.verbose:
            print(log.getvalue(), file=sys.stderr)
        candidate = [info.version for info in registry.list_versions() if info.version != "seed"][-1]
        active = registry.active_version()
        served = served_version(server.url, active)
        return Point(
            split=split,
            requested=n,
            outcomes=posted,
            bad_share=bad / posted,
            trained=candidate,
            promoted=active == candidate,
            served=served,
            apgr_active=apgr(registry, active, evaluation),
            apgr_candidate=apgr(registry, candidate, evaluation),
            train_s=train_s,
        )


def summary(points: list[Point], pool_size: int) -> str:
    lines = [
        "| outcomes | splits | APGR of the served version | gain over the seed (paired) | higher than the seed |"
        " APGR of the candidate | promoted | service switched |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    seed_of = {p.split: p.apgr_active for p in points if p.requested == 0}
    for requested in dict.fromkeys(p.requested for p in points):
        group = [p for p in points if p.requested == requested]
        served = np.array([p.apgr_active for p in group])
        candidate = np.array([p.apgr_candidate for p in group])
        actual = group[0].outcomes
        label = f"{actual}" if actual == requested else f"{actual} (asked {requested}; the pool holds {pool_size})"
        # Each point starts from the seed, so the service should serve the candidate iff it was promoted.
        switched = sum(p.served == (p.trained if p.promoted else "seed") for p in group)
        paired = [p.apgr_active - seed_of[p.split] for p in group if p.split in seed_of]
        gain = f"{np.mean(paired):+.3f} ± {np.std(paired):.3f}" if paired and requested else "-"
        higher = f"{sum(g > 0 for g in paired)}/{len(paired)}" if paired and requested else "-"
        lines.append(
            f"| {label} | {len(group)} | {served.mean():.3f} ± {served.std():.3f} | {gain} | {higher} | "
            f"{candidate.mean():.3f} ± {candidate.std():.3f} | {sum(p.promoted for p in group)}/{len(group)} | "
            f"{switched}/{len(group)} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_ROUTING_DATA)
    parser.add_argument("--seed-data", type=Path, default=SEED_DATA)
    parser.add_argument("--cheap", default=DEFAULT_CHEAP)
    parser.add_argument("--strong", nargs="+", default=list(DEFAULT_STRONG))
    parser.add_argument("--points", type=int, nargs="+", default=[0, 300, 1000])
    parser.add_argument("--eval-fraction", type=float, default=0.35)
    parser.add_argument("--splits", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--replay-route", choices=["cheap", "auto"], default="cheap")
    parser.add_argument("--feedback-weight", type=float, default=1.0, help="ledger.feedback_weight of the config")
    parser.add_argument("--json", type=Path, help="also write every point as JSON")
    parser.add_argument("--verbose", action="store_true", help="print each training run's output")
    args = parser.parse_args(argv)
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

    from router.redis_server import EmbeddedRedis
    from router.simulator.fleet import demo_model_entries
    from router.simulator.runner import SimulatorServer

    outcomes = routing_outcomes(read_routing_rows(args.data), args.cheap, args.strong)
    total = len(outcomes.texts)
    n_eval = round(total * args.eval_fraction)
    pool_size = total - n_eval
    print(
        f"{args.data}: {total} prompts ({outcomes.skipped} skipped); cheap {outcomes.cheap_model} "
        f"(correct {outcomes.cheap_quality.mean():.3f}), strong {'+'.join(outcomes.strong_models)} "
        f"(correct {outcomes.strong_quality.mean():.3f}); evaluation {n_eval}, replay pool {pool_size}; "
        f"replay route {args.replay_route}, feedback weight {args.feedback_weight}",
        flush=True,
    )
    points: list[Point] = []
    with (
        tempfile.TemporaryDirectory(prefix="moa-lc-redis-") as redis_dir,
        EmbeddedRedis(Path(redis_dir), persist=False) as redis,
        SimulatorServer(zero_latency_fleet()) as sim,
    ):
        env = {"redis_url": redis.url, "entries": demo_model_entries(sim.base_url, zero_latency_fleet())}
        for split in range(args.splits):
            order = np.random.default_rng(args.seed + split).permutation(total)
            evaluation, pool = subset(outcomes, order[:n_eval]), subset(outcomes, order[n_eval:])
            for requested in args.points:
                n = min(requested, pool_size)
                point = run_point(split, n, pool, evaluation, args, env)
                point = replace(point, requested=requested)
                points.append(point)
                print(
                    f"split {split} n={n:4d}: APGR served {point.apgr_active:.3f} candidate "
                    f"{point.apgr_candidate:.3f} promoted={point.promoted} served={point.served} "
                    f"bad={point.bad_share:.2f} train {point.train_s:.1f}s",
                    flush=True,
                )
    print()
    print(summary(points, pool_size))
    if args.json:
        args.json.write_text(json.dumps([asdict(p) for p in points], indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
