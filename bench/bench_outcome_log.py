"""The outcome log's cost to the event loop: the writer's CPU per event, and how long a batch write
holds the loop (every request in flight waits that long).

A real `OutcomeLog` writes to a real Redis (`REDIS_URL` when set, else an embedded redis-server).
First all events are recorded at once and written back to back: the writer's CPU per event. Then
events are recorded ten at a time at `--rate` per second, as requests finish on a busy service, while
a ticker task on the same loop measures the gaps between its turns. Events are built before each
phase, so the gaps are the writer's (and the loop's own). Only the public API is used (`start`,
`record`, `flush`, `close`), so the same script measures older versions of the log side by side.

    .venv/bin/python -m bench.bench_outcome_log
    .venv/bin/python -m bench.bench_outcome_log --events 20000 --batch-size 200 --json
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import os
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
from redis.asyncio import Redis

from router.config import settings_from_mapping
from router.events import RequestEvent
from router.ledger import LedgerKeys, OutcomeLog
from router.mixture import CallRecord
from router.providers.base import Usage
from router.redis_server import EmbeddedRedis

# Events recorded per producer turn: requests finish a few at a time on a busy loop.
EVENTS_PER_TURN = 10


def _entry(name: str) -> dict[str, str]:
    return {"model": f"openai/{name}", "api_base": "http://127.0.0.1:9/v1"}


def sample_event(index: int) -> RequestEvent:
    """A cheap-route request's event as the service records it (no stored prompt)."""
    usage = Usage(prompt_tokens=40 + index % 300, completion_tokens=120 + index % 500)
    return RequestEvent(
        request_id=uuid.uuid4().hex,
        tenant=f"tenant-{index % 7}",
        route="cheap",
        reason="below thresholds",
        difficulty=0.21,
        stakes=0.04,
        classifier_version="seed",
        cache="miss",
        latency_s=0.31,
        calls=[CallRecord("openai/cheap", "cheap", "ok", 0.3, usage, 0.00012)],
        prompt_hash=uuid.uuid4().hex * 2,
    )


async def measure(redis_url: str, events: int, batch_size: int, rate: float) -> dict[str, Any]:
    prefix = f"bench{uuid.uuid4().hex[:8]}"
    # The models are never called: the log only needs a valid configuration.
    settings = settings_from_mapping(
        {
            "cheap": _entry("cheap"),
            "proposers": [_entry("proposer-a"), _entry("proposer-b")],
            "aggregator": _entry("aggregator"),
            "data_dir": tempfile.mkdtemp(prefix="moa-bench-"),
            "redis_prefix": prefix,
            # The request index keys expire after a minute: a shared REDIS_URL is not left with them.
            "ledger": {"batch_size": batch_size, "feedback_window_s": 60},
        }
    )
    redis = Redis.from_url(redis_url)
    log = OutcomeLog(redis, settings)
    log.start()
    # Warm-up (script load, first connection), then the writer's own CPU per event: everything
    # recorded at once and written back to back, nothing else on the loop.
    for event in [sample_event(index) for index in range(batch_size)]:
        log.record(event)
    await log.flush()
    prepared = [sample_event(index) for index in range(events)]
    for event in prepared:
        log.record(event)
    started_cpu = time.thread_time()
    await log.flush()
    writer_cpu_us = (time.thread_time() - started_cpu) / events * 1e6

    # Paced: requests finishing a few at a time, a ticker measuring how long the loop is held.
    prepared = [sample_event(index) for index in range(events)]
    gc.collect()
    gc.freeze()  # the prepared events are not the writer's garbage: keep full collections out of the gaps
    gaps: list[float] = []
    done = asyncio.Event()

    async def ticker() -> None:
        last = time.perf_counter()
        while not done.is_set():
            await asyncio.sleep(0)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    async def producer() -> None:
        pause = EVENTS_PER_TURN / rate
        for start in range(0, events, EVENTS_PER_TURN):
            for event in prepared[start : start + EVENTS_PER_TURN]:
                log.record(event)
            await asyncio.sleep(pause)

    ticking = asyncio.create_task(ticker())
    started = time.perf_counter()
    await producer()
    await log.close()
    wall_s = time.perf_counter() - started
    done.set()
    await ticking
    keys = LedgerKeys(prefix)
    written = await redis.xlen(keys.events)
    await redis.delete(keys.events, keys.outcomes)
    await redis.aclose()
    stalls = np.array(gaps) * 1000.0
    return {
        "events": events,
        "written": int(written),
        "expected": 2 * events + batch_size,
        "batch_size": batch_size,
        "writer_cpu_us_per_event": round(writer_cpu_us, 1),
        "rate_per_s": rate,
        "paced_wall_s": round(wall_s, 2),
        "longest_stall_ms": round(float(stalls.max()), 2),
        "stall_p999_ms": round(float(np.percentile(stalls, 99.9)), 3),
        "stalls_over_1ms": int((stalls > 1.0).sum()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=10000)
    parser.add_argument("--batch-size", type=int, default=200, help="ledger.batch_size (the shipped default)")
    parser.add_argument("--rate", type=float, default=2000.0, help="events recorded per second")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)  # the placeholder models' configuration warnings
    embedded = None
    redis_url = os.environ.get("REDIS_URL")
    if not redis_url:
        embedded = EmbeddedRedis(Path(tempfile.mkdtemp(prefix="moa-bench-redis-")), persist=False)
        redis_url = embedded.start()
    try:
        result = asyncio.run(measure(redis_url, args.events, args.batch_size, args.rate))
    finally:
        if embedded is not None:
            embedded.stop()
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(
        f"{result['written']}/{result['expected']} events written in batches of {result['batch_size']}: "
        f"writer CPU {result['writer_cpu_us_per_event']} us/event; paced at {result['rate_per_s']:.0f}/s: "
        f"longest loop stall {result['longest_stall_ms']} ms, p99.9 {result['stall_p999_ms']} ms, "
        f"{result['stalls_over_1ms']} stalls over 1 ms"
    )


if __name__ == "__main__":
    main()
