"""Load and soak benchmark: many concurrent clients against the real service for a while, with upstream
faults injected by the simulator and one Redis restart in the middle. Loopback only, bounded in time.

    .venv/bin/python bench/soak.py --clients 200 --duration 60 --fault-rate 0.10

Three processes besides this one: the simulated fleet (`moa-router simulate`), the router
(`moa-router serve --config ... --workers N`) and a redis-server with an append-only file, which this
script stops and starts again half-way. It reports requests answered, errors by kind, latency
percentiles, the router's memory before and after, and the events in the outcome log against the
requests that reached the service (after the router's graceful shutdown has flushed the log).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from router.auth import hash_key
from router.redis_server import EmbeddedRedis, free_port
from router.simulator.fleet import default_fleet, demo_model_entries

ROOT = Path(__file__).resolve().parent.parent
KEYS = {"tenant-a": "sk-soak-tenant-a", "tenant-b": "sk-soak-tenant-b"}
PREFIX = "soak"
# 5xx codes that an injected upstream fault explains; anything else would be a router bug.
FAULT_CODES = {
    "upstream_error",
    "upstream_timeout",
    "upstream_rate_limited",
    "mixture_quorum_failed",
    "request_timeout",
}
TOPICS = [
    "the causes of inflation",
    "how a hash map handles collisions",
    "the side effects of ibuprofen",
    "whether a verbal contract is binding",
    "the proof that there are infinitely many primes",
    "how TLS certificate pinning works",
    "a good name for a bakery",
    "the difference between TCP and UDP",
]


@dataclass
class Results:
    latencies: list[float] = field(default_factory=list)
    kinds: Counter[str] = field(default_factory=Counter)
    reached: int = 0  # requests that got an HTTP response (or timed out after sending): each is an event

    def add(self, kind: str, latency: float, reached: bool) -> None:
        self.kinds[kind] += 1
        self.reached += reached
        if kind.startswith("ok"):
            self.latencies.append(latency)


def fleet_file(directory: Path, fault_rate: float) -> Path:
    """The demo fleet with `fault_rate` of calls faulty, spread over every kind the simulator injects."""
    share = {"error_rate": 0.3, "rate_limit_rate": 0.3, "malformed_rate": 0.15, "hang_rate": 0.05}
    share["drop_stream_rate"] = 1 - sum(share.values())
    models = []
    for model in default_fleet(seed=11).models:
        data = model.model_dump(mode="json")
        data.update({name: round(fault_rate * part, 4) for name, part in share.items()})
        data["retry_after_s"] = 0.2
        models.append(data)
    path = directory / "fleet.yaml"
    path.write_text(yaml.safe_dump({"seed": 11, "max_hang_s": 8.0, "models": models}), encoding="utf-8")
    return path


def config_file(directory: Path, sim_base: str) -> Path:
    entries = demo_model_entries(sim_base, default_fleet(seed=11))
    for role in ("cheap", "aggregator", "judge"):
        entries[role]["timeout_s"] = 4.0
    for proposer in entries["proposers"]:
        proposer["timeout_s"] = 4.0
    config = {
        **entries,
        "mixture": {"proposer_deadline_s": 3.0, "quorum": 2},
        "limits": {"request_timeout_s": 20.0},
        "auth": {
            "open": False,
            "keys": [{"tenant": tenant, "key_sha256": hash_key(key)} for tenant, key in KEYS.items()],
            "requests_per_minute": 1_000_000,
            "tokens_per_minute": 1_000_000_000,
        },
        "resilience": {"shutdown_grace_s": 30},
        "redis_prefix": PREFIX,
        "data_dir": str(directory / "data"),
    }
    path = directory / "config.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def process_tree(pid: int) -> list[int]:
    """A process and its children (the router's workers)."""
    pids = [pid]
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                pids.append(int(entry.name))
    return pids


def cpu_s(pid: int) -> float:
    """User + system CPU seconds used so far by the process tree."""
    total = 0
    for each in process_tree(pid):
        try:
            fields = Path(f"/proc/{each}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime in clock ticks
    return total / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int) -> float:
    """Resident memory of the process tree, in MiB."""
    total_kib = 0
    for each in process_tree(pid):
        try:
            for line in Path(f"/proc/{each}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total_kib += int(line.split()[1])
        except OSError:
            continue
    return total_kib / 1024


def wait_until_up(url: str, process: subprocess.Popen[bytes], within_s: float = 90.0) -> None:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"process for {url} exited with {process.returncode}")
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{url} did not come up within {within_s} s")


def request_body(rng: random.Random) -> tuple[dict[str, Any], dict[str, str]]:
    tenant = rng.choice(list(KEYS))
    repeated = rng.random() < 0.15  # a small pool of repeated deterministic prompts: cache hits
    topic = rng.choice(TOPICS)
    text = f"Explain {topic}." if repeated else f"Explain {topic} to reader #{rng.randrange(10**9)}."
    body: dict[str, Any] = {
        "model": "moa-router",
        "messages": [{"role": "user", "content": text}],
        "stream": rng.random() < 0.3,
        "max_tokens": 200,
    }
    if repeated:
        body["temperature"] = 0
    headers = {"authorization": f"Bearer {KEYS[tenant]}"}
    if rng.random() < 0.1:
        headers["x-moa-route"] = "mixture"
    return body, headers


async def one_request(client: httpx.AsyncClient, rng: random.Random, results: Results) -> None:
    body, headers = request_body(rng)
    started = time.perf_counter()
    try:
        if body["stream"]:
            async with client.stream("POST", "/v1/chat/completions", json=body, headers=headers) as response:
                text = (await response.aread()).decode()
            kind = _stream_kind(response.status_code, text)
        else:
            response = await client.post("/v1/chat/completions", json=body, headers=headers)
            kind = "ok" if response.status_code == 200 else _error_kind(response.status_code, response.text)
    except httpx.TimeoutException:
        results.add("client_timeout", time.perf_counter() - started, reached=True)
        return
    except httpx.HTTPError as exc:
        results.add(f"connection:{type(exc).__name__}", time.perf_counter() - started, reached=False)
        return
    results.add(kind, time.perf_counter() - started, reached=True)


def _error_kind(status: int, text: str) -> str:
    try:
        code = json.loads(text)["error"]["code"]
    except (ValueError, KeyError, TypeError):
        code = "unparsed"
    return f"http_{status}:{code}"


def _stream_kind(status: int, text: str) -> str:
    if status != 200:
        return _error_kind(status, text)
    if '"error"' in text:
        return "stream_cut:upstream_error"
    return "ok_stream" if text.rstrip().endswith("data: [DONE]") else "stream_incomplete"


async def client_loop(client: httpx.AsyncClient, seed: int, until: float, results: Results) -> None:
    rng = random.Random(seed)
    while time.monotonic() < until:
        await one_request(client, rng, results)


async def restart_redis(redis: EmbeddedRedis, at_s: float, down_s: float, log: list[str]) -> None:
    await asyncio.sleep(at_s)
    log.append(f"{time.strftime('%H:%M:%S')} Redis stopped")
    await asyncio.to_thread(redis.stop)
    await asyncio.sleep(down_s)
    await asyncio.to_thread(redis.start)
    log.append(f"{time.strftime('%H:%M:%S')} Redis started again after {down_s:.0f} s down")


async def load(base: str, clients: int, duration_s: float, redis: EmbeddedRedis | None, log: list[str]) -> Results:
    """`clients` concurrent clients for `duration_s`; Redis (when given) is restarted half-way."""
    results = Results()
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base, timeout=30.0, limits=limits) as client:
        until = time.monotonic() + duration_s
        restart = asyncio.create_task(restart_redis(redis, duration_s / 2, 2.0, log)) if redis else None
        await asyncio.gather(*(client_loop(client, seed, until, results) for seed in range(clients)))
        if restart is not None:
            await restart
    return results


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return statistics.quantiles(values, n=1000, method="inclusive")[min(998, max(0, round(q * 1000) - 1))]


def logged_events(redis_url: str) -> int:
    from redis import Redis

    client = Redis.from_url(redis_url)
    try:
        return int(client.xlen(f"{PREFIX}:ledger:events"))
    finally:
        client.close()


def run(args: argparse.Namespace) -> dict[str, Any]:
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    with tempfile.TemporaryDirectory(prefix="moa-soak-") as tmp:
        directory = Path(tmp)
        redis = EmbeddedRedis(directory / "redis", persist=True)
        redis.start()
        env["REDIS_URL"] = redis.url
        sim_port, router_port = free_port(), free_port()
        sim = subprocess.Popen(
            [sys.executable, "-m", "router", "simulate", "--port", str(sim_port),
             "--fleet", str(fleet_file(directory, args.fault_rate))],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT,
        )  # fmt: skip
        router_log = (directory / "router.log").open("wb")
        router = subprocess.Popen(
            [sys.executable, "-m", "router", "serve", "--config", str(config_file(directory, f"http://127.0.0.1:{sim_port}/v1")),
             "--port", str(router_port), "--workers", str(args.workers), "--log-level", "warning"],
            env=env, stdout=router_log, stderr=subprocess.STDOUT, cwd=ROOT,
        )  # fmt: skip
        base = f"http://127.0.0.1:{router_port}"
        log: list[str] = []
        try:
            wait_until_up(f"http://127.0.0.1:{sim_port}/v1/models", sim)
            wait_until_up(f"{base}/healthz", router)
            warm = asyncio.run(load(base, 4, 3.0, None, log=[])) if args.warmup else Results()
            memory_before, cpu_before, load_before = rss_mib(router.pid), cpu_s(router.pid), os.getloadavg()[0]
            started = time.monotonic()
            results = asyncio.run(load(base, args.clients, args.duration, redis, log))
            elapsed = time.monotonic() - started
            memory_after, cpu_used, load_after = rss_mib(router.pid), cpu_s(router.pid) - cpu_before, os.getloadavg()[0]
        finally:
            router.send_signal(signal.SIGTERM)  # graceful: drains, then flushes the outcome log
            try:
                exit_code = router.wait(timeout=90)
            except subprocess.TimeoutExpired:
                router.kill()
                exit_code = router.wait()
            sim.terminate()
            sim.wait(timeout=30)
            router_log.close()
        events = logged_events(redis.url)
        redis.stop()
        router_lines = (directory / "router.log").read_text(errors="replace").splitlines()
    problems = [line for line in router_lines if " ERROR " in line or line.startswith("Traceback")]
    sent = results.reached + warm.reached
    server_errors = {k: v for k, v in results.kinds.items() if k.startswith("http_5")}
    unexplained = {k: v for k, v in server_errors.items() if k.split(":", 1)[1] not in FAULT_CODES}
    return {
        "clients": args.clients,
        "duration_s": round(elapsed, 1),
        "workers": args.workers,
        "fault_rate": args.fault_rate,
        "requests": sum(results.kinds.values()),
        "answered": results.kinds["ok"] + results.kinds["ok_stream"],
        "throughput_rps": round(sum(results.kinds.values()) / elapsed, 1),
        "kinds": dict(results.kinds.most_common()),
        "unexplained_5xx": unexplained,
        "latency_s": {
            "p50": round(percentile(results.latencies, 0.50), 3),
            "p90": round(percentile(results.latencies, 0.90), 3),
            "p99": round(percentile(results.latencies, 0.99), 3),
            "max": round(max(results.latencies, default=float("nan")), 3),
        },
        "router_rss_mib": {"before": round(memory_before, 1), "after": round(memory_after, 1)},
        "router_cpu_ms_per_request": round(1000 * cpu_used / max(1, sum(results.kinds.values())), 2),
        "machine_load_average": {"before": round(load_before, 1), "after": round(load_after, 1)},
        "events_logged": events,
        "requests_reaching_service": sent,
        "events_lost": sent - events,
        "router_exit_code": exit_code,
        "redis": log,
        "router_log_errors": len(problems),
        "router_log_first_errors": problems[:5],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of load (bounded)")
    parser.add_argument("--fault-rate", type=float, default=0.10, help="share of upstream calls that fail")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--no-warmup", dest="warmup", action="store_false")
    parser.add_argument("--out", help="also write the report as JSON to this file")
    args = parser.parse_args()
    if not 0 < args.duration <= 600 or not 0 < args.clients <= 2000:
        parser.error("keep it bounded: --duration in (0, 600], --clients in (0, 2000]")
    report = run(args)
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n", encoding="utf-8")
    return 0 if report["events_lost"] == 0 and not report["unexplained_5xx"] else 1


if __name__ == "__main__":
    sys.exit(main())
