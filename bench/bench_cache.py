"""Cache hits against misses through the real service: latency at one request in flight, and
throughput at a fixed concurrency, for the cheap and the mixture route.

Everything runs on loopback: the simulated fleet (`moa-router simulate`) and the router
(`moa-router serve`) as their own processes, a real redis-server, and this script as the client.
Each measured miss uses a prompt never seen before; the hits then repeat exactly those prompts.

    .venv/bin/python -m bench.bench_cache                      # upstream answers at once
    .venv/bin/python -m bench.bench_cache --latency-scale 1    # the demo fleet's own latencies
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import yaml

from router.redis_server import EmbeddedRedis, free_port
from router.simulator.fleet import demo_model_entries

_READY_TIMEOUT_S = 60.0


@dataclass
class Phase:
    route: str
    cache: str  # the x-moa-cache status every response of the phase should carry
    latencies_s: list[float]
    wall_s: float
    statuses: Counter[str]

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies_s)
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]

    @property
    def throughput(self) -> float:
        return len(self.latencies_s) / self.wall_s


def _wait_ready(url: str, process: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + _READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with status {process.returncode}")
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not answer at {url} within {_READY_TIMEOUT_S:.0f} s")


@contextmanager
def _process(args: list[str], ready_url: str, what: str, log: Path) -> Iterator[None]:
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    with log.open("wb") as output:
        process = subprocess.Popen(args, env=env, stdout=output, stderr=subprocess.STDOUT)
    try:
        _wait_ready(ready_url, process, f"{what} (log: {log})")
        yield
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@contextmanager
def _stack(work: Path, latency_scale: float) -> Iterator[str]:
    """Simulator, Redis and router up; yields the router's base URL."""
    sim_port, router_port = free_port(), free_port()
    simulate = [sys.executable, "-m", "router", "simulate", "--port", str(sim_port),
                "--latency-scale", str(latency_scale)]  # fmt: skip
    sim_ready = f"http://127.0.0.1:{sim_port}/v1/models"
    with (
        _process(simulate, sim_ready, "the simulator", work / "sim.log"),
        EmbeddedRedis(work / "redis", persist=False) as redis,
    ):
        config = {
            **demo_model_entries(f"http://127.0.0.1:{sim_port}/v1"),
            "auth": {"open": True},
            "redis_url": redis.url,
            "redis_prefix": f"bench{uuid.uuid4().hex[:8]}",
            "data_dir": str(work / "data"),
            "mixture": {"proposer_deadline_s": 30.0},
        }
        config_file = work / "router.yaml"
        config_file.write_text(yaml.safe_dump(config), encoding="utf-8")
        serve = [sys.executable, "-m", "router", "serve", "--config", str(config_file), "--port", str(router_port),
                 "--log-level", "warning"]  # fmt: skip
        with _process(serve, f"http://127.0.0.1:{router_port}/healthz", "the router", work / "router.log"):
            yield f"http://127.0.0.1:{router_port}"


def _prompts(count: int, route: str) -> list[str]:
    run = uuid.uuid4().hex[:8]
    return [f"[{run}/{route}/{i}] In two sentences, what does a write-ahead log protect against?" for i in range(count)]


async def _phase(client: httpx.AsyncClient, route: str, expected: str, prompts: list[str], concurrency: int) -> Phase:
    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    queue = iter(prompts)

    async def worker() -> None:
        for prompt in queue:
            body = {"model": "moa-router", "messages": [{"role": "user", "content": prompt}], "temperature": 0}
            started = time.perf_counter()
            response = await client.post("/v1/chat/completions", json=body, headers={"x-moa-route": route})
            latencies.append(time.perf_counter() - started)
            statuses[f"{response.status_code} {response.headers.get('x-moa-cache', '-')}"] += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return Phase(route, expected, latencies, time.perf_counter() - started, statuses)


async def _baseline(client: httpx.AsyncClient, count: int) -> Phase:
    """GET /healthz: the HTTP round trip between this client and the service, with no work behind it."""
    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    started = time.perf_counter()
    for _ in range(count):
        began = time.perf_counter()
        response = await client.get("/healthz")
        latencies.append(time.perf_counter() - began)
        statuses[f"{response.status_code} -"] += 1
    return Phase("GET /healthz", "-", latencies, time.perf_counter() - started, statuses)


async def _measure(base: str, routes: list[str], requests: int, concurrency: int) -> list[tuple[str, Phase]]:
    results: list[tuple[str, Phase]] = []
    limits = httpx.Limits(max_connections=concurrency + 4, max_keepalive_connections=concurrency + 4)
    async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits) as client:
        warm = _prompts(20, "warm")
        await _phase(client, "cheap", "miss", warm, 4)  # connections, code paths and Lua scripts warm
        await _phase(client, "cheap", "hit", warm, 4)
        results.append(("1 in flight", await _baseline(client, max(requests // 4, 20))))
        for route in routes:
            loads = (("1 in flight", requests // 4, 1), (f"{concurrency} in flight", requests, concurrency))
            for mode, count, width in loads:
                prompts = _prompts(count, route)
                results.append((mode, await _phase(client, route, "miss", prompts, width)))
                results.append((mode, await _phase(client, route, "hit", prompts, width)))
    return results


def _report(results: list[tuple[str, Phase]], args: argparse.Namespace) -> str:
    lines = [
        f"requests per concurrent phase: {args.requests} (a quarter of that at 1 in flight); "
        f"upstream latency scale {args.latency_scale}",
        "",
        "| route | load | cache | requests | p50 ms | p90 ms | p99 ms | req/s | statuses |",
        "|---|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for mode, phase in results:
        ms = [phase.percentile(q) * 1000 for q in (0.5, 0.9, 0.99)]
        statuses = ", ".join(f"{k}: {v}" for k, v in sorted(phase.statuses.items()))
        lines.append(
            f"| {phase.route} | {mode} | {phase.cache} | {len(phase.latencies_s)} | {ms[0]:.2f} | {ms[1]:.2f} | "
            f"{ms[2]:.2f} | {phase.throughput:.0f} | {statuses} |"
        )
    pairs = [(results[i], results[i + 1]) for i in range(1, len(results), 2)]
    lines.append("")
    for (mode, miss), (_, hit) in pairs:
        speedup = statistics.median(miss.latencies_s) / statistics.median(hit.latencies_s)
        lines.append(
            f"{miss.route}, {mode}: a hit's median latency is {speedup:.1f}x lower than a miss's; "
            f"throughput {hit.throughput / miss.throughput:.1f}x"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=400, help="requests per concurrent phase (default 400)")
    parser.add_argument("--concurrency", type=int, default=16, help="requests in flight (default 16)")
    parser.add_argument(
        "--latency-scale",
        type=float,
        default=0.0,
        help="simulated upstream latency, times the demo fleet's (default 0: answers at once)",
    )
    parser.add_argument("--routes", default="cheap,mixture", help="comma-separated routes (default cheap,mixture)")
    args = parser.parse_args(argv)
    if args.requests < 4 or args.concurrency < 1:
        parser.error("--requests must be at least 4 and --concurrency at least 1")
    routes = [route.strip() for route in args.routes.split(",") if route.strip()]
    with tempfile.TemporaryDirectory(prefix="moa-bench-cache-") as work, _stack(Path(work), args.latency_scale) as base:
        results = asyncio.run(_measure(base, routes, args.requests, args.concurrency))
    print(_report(results, args))
    wrong = [phase for _, phase in results if any(not s.startswith(f"200 {phase.cache}") for s in phase.statuses)]
    if wrong:
        print(f"\n{len(wrong)} phase(s) had responses other than the expected status; see the table", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
