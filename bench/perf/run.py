"""The performance benchmark of issue 7: moa-router against a direct call and LiteLLM's proxy.

    .venv/bin/python bench/perf/run.py                 # the whole table, about 5 minutes
    .venv/bin/python bench/perf/run.py --profile       # plus a py-spy summary of the router's CPU

One fast fake upstream (the project's simulator, `moa-router simulate`, with a zero-latency fleet), and
on it LiteLLM's proxy (one worker, no database, installed from bench/perf/litellm-proxy.lock into
bench/.litellm-venv on the first run) and the router (one worker, cache on with a real Redis: REDIS_URL
when set, else its embedded one). Both gateways run side by side; one at a time is under load, and
they take turns for each row. Load comes from Debian's `wrk`, a separate process, on loopback only.
With two or more CPUs the gateway under load runs on CPU 0 and everything else (upstream, wrk, Redis)
on the others, so that the load generator does not take the gateway's CPU. Results go to
bench/results/perf/<time>/ (report.md, results.json, logs, generated configs).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository's packages importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.perf import configs, profile
from bench.perf.litellm_env import ensure_litellm_proxy
from bench.perf.load import LoadError, LoadResult, run_wrk, wrk_binary
from bench.perf.processes import Service, free_port
from bench.perf.report import (
    CACHE_HIT,
    CHEAP,
    DIRECT,
    LITELLM,
    MIXTURE,
    ROUTER,
    SCENARIOS,
    STREAM,
    GatewayFacts,
    Report,
    Run,
    render,
)

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "bench" / "results" / "perf"
CHAT_PATH = "/v1/chat/completions"
CONNECTIONS = (1, 16)


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    expect: dict[str, str] = field(default_factory=dict)  # response headers the router must send

    @property
    def streams(self) -> bool:
        return b'"stream":true' in self.body


@dataclass(frozen=True, slots=True)
class Gateway:
    name: str
    service: Service  # whose CPU time is charged to the gateway
    base_url: str
    scenarios: dict[str, Scenario]

    @property
    def url(self) -> str:
        return self.base_url + CHAT_PATH


@dataclass(slots=True)
class Bench:
    args: argparse.Namespace
    out: Path
    gateway_cpus: list[int] | None
    other_cpus: list[int] | None
    report: Report = field(default_factory=Report)
    services: list[Service] = field(default_factory=list)  # every process started, stopped at the end

    def launch(self, service: Service) -> Service:
        self.services.append(service)
        return service.start()

    def load(self, gateway: Gateway, scenario: Scenario, connections: int, seconds: float) -> LoadResult:
        return run_wrk(gateway.url, scenario.body, scenario.headers, connections, seconds, self.other_cpus)

    def measure(self, gateway: Gateway, scenario: Scenario, connections: int) -> Run:
        problem = preflight(gateway.url, scenario)
        if problem:
            raise RuntimeError(f"{gateway.name} {scenario.name}: {problem}; see {gateway.service.log_path}")
        if self.args.warmup > 0:
            self.load(gateway, scenario, connections, self.args.warmup)
        before = gateway.service.cpu_seconds()
        load = self.load(gateway, scenario, connections, self.args.duration)
        run = Run(gateway.name, scenario.name, connections, load, gateway.service.cpu_seconds() - before)
        self.report.runs.append(run)
        print(
            f"  {gateway.name:<14} {scenario.name:<9} c={connections:<3} {load.throughput:8.0f} req/s  "
            f"p50 {load.p50_s * 1000:7.2f} ms  p99 {load.p99_s * 1000:7.2f} ms  "
            f"cpu {run.cpu_per_request_s * 1000:.2f} ms/req  errors {load.errors}",
            flush=True,
        )
        return run

    def start(self, name: str, command: list[str], ready_path: str, port: int, env: Mapping[str, str]) -> Service:
        """Starts a gateway once untimed (bytecode and disk caches warm), then again timed; it keeps running."""

        def make() -> Service:
            ready = f"http://127.0.0.1:{port}{ready_path}"
            return Service(name, command, ready, self.out, env=env, cpus=self.gateway_cpus, cwd=REPO)

        with make() as first:
            first.wait_ready(self.args.start_timeout)
        service = self.launch(make())
        ready_s = service.wait_ready(self.args.start_timeout)
        self.report.facts[name] = GatewayFacts(ready_s=ready_s)
        print(f"{name}: ready {ready_s:.2f} s after start", flush=True)
        if self.other_cpus:  # the router's embedded redis-server is not the gateway: off its CPU
            for pid in service.tree()[1:]:
                os.sched_setaffinity(pid, self.other_cpus)
        return service


def preflight(url: str, scenario: Scenario) -> str | None:
    """One request before the load: it must succeed, and the router must say it took the expected path."""
    host, _, port = url.removeprefix("http://").split("/", 1)[0].partition(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        headers = {"content-type": "application/json", **scenario.headers}
        connection.request("POST", CHAT_PATH, body=scenario.body, headers=headers)
        response = connection.getresponse()
        body = response.read()
    except OSError as exc:
        return f"request failed: {exc}"
    finally:
        connection.close()
    if response.status != 200:
        return f"status {response.status}: {body[:300]!r}"
    for name, wanted in scenario.expect.items():
        if response.getheader(name) != wanted:
            return f"expected {name}: {wanted}, got {response.getheader(name)!r}"
    if scenario.streams:
        return None if body.rstrip().endswith(b"data: [DONE]") else "the stream did not end with [DONE]"
    return None if b'"choices"' in body else f"not a chat completion: {body[:300]!r}"


def child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"  # never fetch the cost map from the internet
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env.update(extra)
    return env


def start_upstream(bench: Bench, fleet: Path, port: int) -> Gateway:
    command = [sys.executable, "-m", "router", "simulate", "--port", str(port), "--fleet", str(fleet)]
    command += ["--latency-scale", "0"]
    base_url = f"http://127.0.0.1:{port}"
    service = Service("upstream", command, f"{base_url}/v1/models", bench.out, child_env(), bench.other_cpus, REPO)
    bench.launch(service).wait_ready(bench.args.start_timeout)
    model = configs.CHEAP_MODEL
    scenarios = [Scenario(CHEAP, configs.chat_body(model)), Scenario(STREAM, configs.chat_body(model, stream=True))]
    return Gateway(DIRECT, service, base_url, {s.name: s for s in scenarios})


def start_litellm(bench: Bench, command: list[str], config: Path) -> Gateway:
    port = free_port()
    command = [*command, "--config", str(config), "--host", "127.0.0.1", "--port", str(port), "--num_workers", "1"]
    service = bench.start(LITELLM, command, "/health/readiness", port, child_env())
    auth = {"Authorization": f"Bearer {configs.LITELLM_MASTER_KEY}"}
    model = configs.LITELLM_MODEL_NAME
    scenarios = [
        Scenario(CHEAP, configs.chat_body(model), auth),
        Scenario(STREAM, configs.chat_body(model, stream=True), auth),
    ]
    return Gateway(LITELLM, service, f"http://127.0.0.1:{port}", {s.name: s for s in scenarios})


def start_router(bench: Bench, config: Path) -> Gateway:
    port = free_port()
    command = [sys.executable, "-m", "router", "serve", "--config", str(config), "--port", str(port)]
    env = child_env(PYTHONPYCACHEPREFIX=str(RESULTS / "pycache"))  # warm bytecode without writing into .venv
    service = bench.start(ROUTER, command, "/readyz", port, env)
    auth = {"Authorization": f"Bearer {configs.ROUTER_KEY}"}
    bypass = {"x-moa-route": "cheap", "x-moa-cache": "bypass"}
    hit = Scenario(CACHE_HIT, configs.chat_body("moa", deterministic=True), auth)
    scenarios = [
        Scenario(CHEAP, configs.chat_body("moa"), auth, bypass),
        Scenario(STREAM, configs.chat_body("moa", stream=True), auth, bypass),
        Scenario(hit.name, hit.body, auth, {"x-moa-route": "cheap", "x-moa-cache": "hit"}),
        Scenario(MIXTURE, configs.chat_body("moa"), {**auth, "x-moa-route": "mixture"}, {"x-moa-route": "mixture"}),
    ]
    gateway = Gateway(ROUTER, service, f"http://127.0.0.1:{port}", {s.name: s for s in scenarios})
    problem = preflight(gateway.url, hit)  # stores the answer that the cache-hit runs get back
    if problem:
        raise RuntimeError(f"priming the router's cache failed: {problem}")
    return gateway


def profile_router(bench: Bench, router: Gateway) -> None:
    """py-spy on the router under the 16-connection load of the table (runs of their own, so that
    sampling does not slow the measured ones)."""
    for name in SCENARIOS:
        scenario = router.scenarios[name]
        raw = bench.out / f"profile-{name}.txt"
        loader = threading.Thread(target=bench.load, args=(router, scenario, 16, bench.args.duration + 2))
        loader.start()
        try:
            time.sleep(1)
            profile.record(router.service.pid, bench.args.duration, raw)
        finally:
            loader.join()
        summary = profile.summarise(raw)
        (bench.out / f"profile-{name}.md").write_text(summary)
        print(f"\nrouter profile, {name} requests at 16 connections:\n{summary}", flush=True)


def measure_all(bench: Bench, gateways: list[Gateway]) -> None:
    """Rounds of every (request kind, connections) pair, the gateways taking turns, so that a busy
    moment of a shared machine does not fall on one gateway only. Each gateway is warmed up first
    (LiteLLM imports much of itself on its first requests)."""
    for gateway in gateways:
        for scenario in gateway.scenarios.values():
            bench.load(gateway, scenario, 16, bench.args.first_warmup)
    for round_number in range(1, bench.args.rounds + 1):
        print(f"round {round_number} of {bench.args.rounds}", flush=True)
        for name in SCENARIOS:
            for connections in CONNECTIONS:
                for gateway in gateways:
                    if name in gateway.scenarios:
                        bench.measure(gateway, gateway.scenarios[name], connections)


def notes(bench: Bench, redis_url: str | None) -> list[str]:
    args = bench.args
    pinning = (
        f"the gateway under load pinned to CPU {bench.gateway_cpus}, upstream, wrk and Redis on {bench.other_cpus}"
        if bench.gateway_cpus
        else "no CPU pinning"
    )
    return [
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; "
        f"{pinning}",
        f"each row: the median of {args.rounds} runs (by throughput) of {args.duration:g} s after {args.warmup:g} s "
        f"of warm-up, one wrk thread, the gateways taking turns; upstream: the simulator, zero latency, "
        f"{configs.ANSWER_TOKENS}-token answers",
        "added p50 = the gateway's median latency minus the direct call's for the same request kind and "
        "connections (a cache hit is compared with a plain direct call)",
        "CPU ms/req = CPU time of the gateway process and its children (the router's embedded redis-server) / "
        "requests; RSS = the gateway process after all its load; ready = start to ready on a warm start",
        "Redis: " + ("REDIS_URL" if redis_url else "the router's embedded redis-server"),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=3.0, help="seconds of each measured run (default 3)")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds of load before each run (default 1)")
    parser.add_argument("--first-warmup", type=float, default=3.0, help="seconds of load per request kind first")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each row; the median is shown (default 3)")
    parser.add_argument("--start-timeout", type=float, default=120.0, help="seconds a gateway may take to start")
    parser.add_argument("--skip-litellm", action="store_true", help="measure the router and the direct call only")
    parser.add_argument("--profile", action="store_true", help="also sample the router with py-spy under load")
    parser.add_argument("--no-pin", action="store_true", help="do not pin the gateway under load to its own CPU")
    args = parser.parse_args(argv)
    try:
        wrk_binary()
    except LoadError as exc:
        print(f"bench/perf: {exc}", file=sys.stderr)
        return 2
    out = RESULTS / datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out.mkdir(parents=True, exist_ok=True)
    cpus = sorted(os.sched_getaffinity(0))
    pinned = not args.no_pin and len(cpus) >= 2
    bench = Bench(args, out, cpus[:1] if pinned else None, cpus[1:] if pinned else None)
    litellm = None if args.skip_litellm else ensure_litellm_proxy(log=out / "litellm-install.log")

    upstream_port = free_port()
    redis_url = os.environ.get("REDIS_URL") or None
    files = configs.write_configs(out, f"http://127.0.0.1:{upstream_port}/v1", redis_url)
    gateways: list[Gateway] = []
    try:
        gateways.append(start_upstream(bench, files.fleet, upstream_port))
        print(f"upstream: the simulator at http://127.0.0.1:{upstream_port}/v1; results in {out}", flush=True)
        if litellm is not None:
            gateways.append(start_litellm(bench, litellm, files.litellm))
        gateways.append(start_router(bench, files.router))
        measure_all(bench, gateways)
        for gateway in gateways[1:]:
            facts = bench.report.facts[gateway.name]
            facts.rss_bytes, facts.rss_tree_bytes = gateway.service.rss_bytes()
        if args.profile:
            profile_router(bench, gateways[-1])
    finally:
        for service in reversed(bench.services):
            service.stop()
    bench.report.notes += notes(bench, redis_url)
    text = render(bench.report, "moa-router vs LiteLLM's proxy vs a direct call")
    (out / "report.md").write_text(text)
    (out / "results.json").write_text(json.dumps(bench.report.as_json(), indent=2))
    print("\n" + text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
