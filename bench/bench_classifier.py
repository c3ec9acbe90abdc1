"""Classifier scoring speed: per-query latency (p50/p99) at several prompt lengths, single thread,
and batch throughput. Target: p99 <= 100 us up to 4,000 characters; batch >= 20,000 queries/s.

Prompts are built from the seed training rows (concatenated and cut to length), so the text looks
like real asks; every timed call scores a different prompt. The timed call is the router's hot path,
`QueryScorer.score_messages(messages)`, including flattening the conversation.

    .venv/bin/python -m bench.bench_classifier
    .venv/bin/python -m bench.bench_classifier --model PATH --queries 5000
    .venv/bin/python -m bench.bench_classifier --no-native   # without the C extensions (numpy and Python)
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import random
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from classifier.scorer import QueryScorer
# The classifier's modules are imported in main(), after --no-native has had its effect.

SEED_DATA = Path("training_data")
FALLBACK_DATA = Path("tests/fixtures/classifier_rows.jsonl")


def corpus() -> list[str]:
    from classifier.dataset import load_rows, row_text

    source = SEED_DATA if SEED_DATA.is_dir() and any(SEED_DATA.glob("*.jsonl")) else FALLBACK_DATA
    return [text for text in (row_text(row) for row in load_rows(source)) if text.strip()]


def prompts_of_length(texts: list[str], length: int, count: int, rng: random.Random) -> list[str]:
    prompts = []
    for _ in range(count):
        parts: list[str] = []
        size = 0
        while size < length:
            parts.append(rng.choice(texts))
            size += len(parts[-1]) + 2
        prompts.append("\n\n".join(parts)[:length])
    return prompts


def latency_us(
    scorer: QueryScorer, prompts: list[str], warmup: int = 200
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Wall-clock and this thread's CPU time per call, in microseconds.

    CPU time leaves out the time the thread waited for a core, which on a busy shared machine is most
    of the wall-clock tail; both are reported.
    """
    call = scorer.score_messages
    for prompt in prompts[:warmup]:
        call([{"role": "user", "content": prompt}])
    wall = np.empty(len(prompts))
    cpu = np.empty(len(prompts))
    for index, prompt in enumerate(prompts):
        messages = [{"role": "user", "content": prompt}]
        start, start_cpu = time.perf_counter_ns(), time.thread_time_ns()
        call(messages)
        cpu[index] = (time.thread_time_ns() - start_cpu) / 1000.0
        wall[index] = (time.perf_counter_ns() - start) / 1000.0
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="version id or directory (default: the active version)")
    parser.add_argument("--queries", type=int, default=3000, help="timed queries per length")
    parser.add_argument("--batch", type=int, default=20000, help="queries in the batch run")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--no-native", action="store_true", help="score without the C extensions (setup.py)")
    args = parser.parse_args()
    if args.no_native:
        # The few-shot detection picks its implementation when classifier.text is imported: this must
        # come first.
        os.environ["MOA_ROUTER_NATIVE"] = "0"
    from classifier.registry import load_model
    from classifier.text import focus_final_item

    model = load_model(args.model)
    rng = random.Random(0)
    texts = corpus()
    results: dict[str, object] = {
        "version": model.version,
        "python": platform.python_version(),
        "load_average_1m": round(os.getloadavg()[0], 2),
        "cpus": os.cpu_count(),
        "features": "C extension" if model.scorer.native else "numpy",
        "few_shot_detection": "Python" if focus_final_item.__module__ == "classifier.text" else "C extension",
    }
    latency: dict[int, dict[str, float]] = {}
    gc.collect()
    for length in (100, 1000, 4000):
        wall, cpu = latency_us(model.scorer, prompts_of_length(texts, length, args.queries, rng))
        latency[length] = {
            "p50": round(float(np.percentile(wall, 50)), 1),
            "p99": round(float(np.percentile(wall, 99)), 1),
            "cpu_p50": round(float(np.percentile(cpu, 50)), 1),
            "cpu_p99": round(float(np.percentile(cpu, 99)), 1),
        }
        results[f"latency_us_{length}"] = latency[length]

    # Batch: the seed rows as they are (typical asks), then prompts of 1,000 characters.
    typical = [rng.choice(texts) for _ in range(args.batch)]
    for name, batch in (("typical", typical), ("1000_chars", prompts_of_length(texts, 1000, args.batch // 4, rng))):
        start = time.perf_counter()
        model.scorer.predict_proba(batch)
        elapsed = time.perf_counter() - start
        results[f"batch_qps_{name}"] = round(len(batch) / elapsed)
    results["typical_mean_chars"] = round(sum(map(len, typical)) / len(typical))

    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(
        f"classifier {model.version} (features: {results['features']}, few-shot detection: "
        f"{results['few_shot_detection']}), Python {results['python']}, single thread, "
        f"load average {results['load_average_1m']} on {results['cpus']} CPUs"
    )
    for length, stats in latency.items():
        print(
            f"  {length:>5} chars: wall p50 {stats['p50']:>6} us  p99 {stats['p99']:>7} us | "
            f"cpu p50 {stats['cpu_p50']:>6} us  p99 {stats['cpu_p99']:>6} us"
        )
    print(
        f"  batch, typical asks (mean {results['typical_mean_chars']} chars): {results['batch_qps_typical']} queries/s"
    )
    print(f"  batch, 1,000-character prompts: {results['batch_qps_1000_chars']} queries/s")


if __name__ == "__main__":
    main()
