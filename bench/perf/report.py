"""The benchmark's results and the issue's targets, printed as one markdown report."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from bench.perf.load import LoadResult

MIB = 1024 * 1024
DIRECT, LITELLM, ROUTER = "direct", "litellm-proxy", "moa-router"
CHEAP, STREAM, CACHE_HIT, MIXTURE = "cheap", "stream", "cache-hit", "mixture"
GATEWAYS = (DIRECT, LITELLM, ROUTER)
SCENARIOS = (CHEAP, STREAM, CACHE_HIT, MIXTURE)


@dataclass(frozen=True, slots=True)
class Run:
    """One measured load: a gateway, a kind of request, a number of connections."""

    gateway: str
    scenario: str
    connections: int
    load: LoadResult
    cpu_s: float  # CPU time the gateway (with its child processes) used during the run

    @property
    def cpu_per_request_s(self) -> float:
        return self.cpu_s / self.load.requests if self.load.requests else 0.0


@dataclass(slots=True)
class GatewayFacts:
    ready_s: float | None = None  # start to ready, on a warm start
    rss_bytes: int = 0  # the gateway process after all its load
    rss_tree_bytes: int = 0  # with its child processes (the router's embedded redis-server)


@dataclass(slots=True)
class Report:
    runs: list[Run] = field(default_factory=list)
    facts: dict[str, GatewayFacts] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def row_keys(self) -> list[tuple[str, str, int]]:
        return list(dict.fromkeys((run.gateway, run.scenario, run.connections) for run in self.runs))

    def find(self, gateway: str, scenario: str, connections: int) -> Run | None:
        """The median of the runs of one row, by throughput (with an even count, the lower middle one),
        so that its latencies and CPU time come from one real run."""
        runs = [r for r in self.runs if (r.gateway, r.scenario, r.connections) == (gateway, scenario, connections)]
        if not runs:
            return None
        runs.sort(key=lambda run: run.load.throughput)
        return runs[(len(runs) - 1) // 2]

    def added_latency_s(self, run: Run) -> float | None:
        """The run's median latency minus the direct call's for the same kind of request (a cache hit
        is compared with a plain call) and the same concurrency."""
        kind = STREAM if run.scenario == STREAM else CHEAP
        direct = self.find(DIRECT, kind, run.connections)
        if direct is None or run.gateway == DIRECT:
            return None
        return run.load.p50_s - direct.load.p50_s

    def as_json(self) -> dict[str, Any]:
        return {
            "runs": [
                {**asdict(run), "throughput": run.load.throughput, "cpu_per_request_s": run.cpu_per_request_s}
                for run in self.runs
            ],
            "facts": {name: asdict(facts) for name, facts in self.facts.items()},
            "targets": [asdict(target) for target in targets(self)],
            "notes": self.notes,
        }


@dataclass(frozen=True, slots=True)
class Target:
    name: str
    measured: str
    goal: str
    passed: bool | None  # None: not measured


def _ratio(report: Report, gateway: str, scenario: str, base_scenario: str, connections: int = 16) -> float | None:
    run, base = report.find(gateway, scenario, connections), report.find(LITELLM, base_scenario, connections)
    if run is None or base is None or base.load.throughput <= 0:
        return None
    return run.load.throughput / base.load.throughput


def _at_least(name: str, value: float | None, goal: float, unit: str, fmt: str = "{:.1f}") -> Target:
    shown = "not measured" if value is None else fmt.format(value) + unit
    return Target(name, shown, f">= {fmt.format(goal)}{unit}", None if value is None else value >= goal)


def _at_most(name: str, value: float | None, goal: float, unit: str, fmt: str = "{:.2f}") -> Target:
    shown = "not measured" if value is None else fmt.format(value) + unit
    return Target(name, shown, f"<= {fmt.format(goal)}{unit}", None if value is None else value <= goal)


def targets(report: Report) -> list[Target]:
    """The issue's targets (issue 7), each computed from runs of this one invocation."""
    cheap_c1 = report.find(ROUTER, CHEAP, 1)
    hit_c1 = report.find(ROUTER, CACHE_HIT, 1)
    router = report.facts.get(ROUTER, GatewayFacts())
    added = report.added_latency_s(cheap_c1) if cheap_c1 is not None else None
    return [
        _at_least("cheap route throughput vs LiteLLM (16 conns)", _ratio(report, ROUTER, CHEAP, CHEAP), 5, "x"),
        _at_most("cheap route added p50 latency (1 conn)", None if added is None else added * 1000, 2, " ms"),
        _at_least("streaming throughput vs LiteLLM (16 conns)", _ratio(report, ROUTER, STREAM, STREAM), 5, "x"),
        _at_most("cache hit p50 latency (1 conn)", None if hit_c1 is None else hit_c1.load.p50_s * 1000, 1, " ms"),
        _at_least("cache hit throughput vs LiteLLM (16 conns)", _ratio(report, ROUTER, CACHE_HIT, CHEAP), 10, "x"),
        _at_least(
            "mixture (4+1 calls) throughput vs LiteLLM single call",
            _ratio(report, ROUTER, MIXTURE, CHEAP),
            1,
            "x",
            "{:.2f}",
        ),
        _at_most(
            "router resident memory after load",
            router.rss_bytes / MIB if router.rss_bytes else None,
            200,
            " MiB",
            "{:.0f}",
        ),
        _at_most("router start to ready", router.ready_s, 2, " s", "{:.2f}"),
    ]


def _ms(seconds: float | None) -> str:
    return "" if seconds is None else f"{seconds * 1000:.2f}"


def _table(header: Iterable[str], rows: Iterable[Iterable[str]]) -> list[str]:
    header = list(header)
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def _row_order(run: Run) -> tuple[int, int, int]:
    return (SCENARIOS.index(run.scenario), run.connections, GATEWAYS.index(run.gateway))


def render(report: Report, title: str) -> str:
    rows = []
    shown: set[str] = set()
    medians = [run for key in report.row_keys() if (run := report.find(*key)) is not None]
    for run in sorted(medians, key=_row_order):
        facts = report.facts.get(run.gateway) if run.gateway not in shown else None
        shown.add(run.gateway)
        rows.append(
            [
                run.scenario,
                str(run.connections),
                run.gateway,
                f"{run.load.throughput:,.0f}",
                _ms(run.load.p50_s),
                _ms(run.load.p99_s),
                _ms(report.added_latency_s(run)),
                f"{run.cpu_per_request_s * 1000:.2f}",
                str(run.load.errors),
                f"{facts.rss_bytes / MIB:.0f}" if facts and facts.rss_bytes else "",
                f"{facts.ready_s:.2f}" if facts and facts.ready_s is not None else "",
            ]
        )
    header = [
        "request",
        "conns",
        "gateway",
        "req/s",
        "p50 ms",
        "p99 ms",
        "added p50 ms",
        "CPU ms/req",
        "errors",
        "RSS MiB",
        "ready s",
    ]
    lines = [f"## {title}", "", *_table(header, rows), ""]
    marks = {True: "PASS", False: "FAIL", None: "n/a"}
    lines += _table(
        ["target (issue 7)", "measured", "goal", ""],
        ([t.name, t.measured, t.goal, marks[t.passed]] for t in targets(report)),
    )
    lines += ["", *(f"- {note}" for note in report.notes)]
    return "\n".join(lines).rstrip() + "\n"
