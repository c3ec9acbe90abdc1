"""A screenshot of the dashboard after a few minutes of real traffic, for the README.

Runs the demo configuration (the simulated fleet, a real redis-server) in process, sends queries from
training_data/seed.jsonl with automatic routing for `--minutes` (some repeated, so the cache answers
them), then opens /dashboard in headless Chromium (Debian's, through Playwright) and saves it.

    .venv/bin/python -m bench.dashboard_screenshot --minutes 5 --out bench/dashboard.png
"""

from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import orjson

from router.redis_server import EmbeddedRedis
from tests.support.browser import launch_chromium

ROOT = Path(__file__).resolve().parent.parent


def load_queries(limit: int, seed: int) -> list[list[dict[str, Any]]]:
    rows = [orjson.loads(line) for line in (ROOT / "training_data/seed.jsonl").read_bytes().splitlines() if line]
    random.Random(seed).shuffle(rows)
    return [row["messages"] for row in rows[:limit]]


async def send_traffic(base: str, minutes: float, rate_per_s: float, seed: int) -> int:
    rng = random.Random(seed)
    queries = load_queries(2000, seed)
    sent: list[list[dict[str, Any]]] = []
    deadline = time.monotonic() + minutes * 60
    count = 0
    async with httpx.AsyncClient(timeout=60) as client:
        tasks: set[asyncio.Task[Any]] = set()
        while time.monotonic() < deadline:
            repeat = sent and rng.random() < 0.2
            messages = rng.choice(sent) if repeat else queries[count % len(queries)]
            if not repeat:
                sent.append(messages)
            body = {"model": "moa-router", "messages": messages, "temperature": 0}
            task = asyncio.create_task(client.post(f"{base}/v1/chat/completions", json=body))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            count += 1
            await asyncio.sleep(rng.expovariate(rate_per_s))
        await asyncio.gather(*tasks, return_exceptions=True)
    return count


def screenshot(base: str, out: Path, window: str) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        page = browser.new_page(viewport={"width": 1440, "height": 1000})
        page.goto(f"{base}/dashboard#window={window}")
        page.wait_for_selector("#chart-latency[data-rendered]", timeout=30_000)
        page.screenshot(path=str(out), full_page=True)
        browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--rate", type=float, default=3.0, help="requests per second")
    parser.add_argument("--budget", type=float, default=2.0, help="daily mixture cap in USD (shown on the page)")
    parser.add_argument("--window", default="hour")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=ROOT / "bench/dashboard.png")
    parser.add_argument("--data-dir", type=Path, help="the service's data directory (default: a temporary one)")
    args = parser.parse_args()

    from router.app import create_app
    from router.background_server import BackgroundServer
    from router.commands.serve import demo_settings
    from router.simulator.fleet import default_fleet
    from router.simulator.runner import SimulatorServer

    with (
        tempfile.TemporaryDirectory() as tmp,
        SimulatorServer(default_fleet()) as sim,
        EmbeddedRedis(Path(tmp) / "redis", persist=False) as redis,
    ):
        overrides = {
            "redis_url": redis.url,
            "data_dir": str(args.data_dir or Path(tmp) / "data"),
            "budget": {"mixture_daily_usd": args.budget},
        }
        server = BackgroundServer(create_app(demo_settings(sim.base_url, overrides)))
        base = server.start()
        try:
            sent = asyncio.run(send_traffic(base, args.minutes, args.rate, args.seed))
            screenshot(base, args.out, args.window)
        finally:
            server.stop()
    print(f"sent {sent} requests over {args.minutes} min; saved {args.out}")


if __name__ == "__main__":
    main()
