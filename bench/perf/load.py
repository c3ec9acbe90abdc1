"""Load from a separate process: Debian's `wrk` with a Lua script that POSTs a fixed JSON body."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

LUA_SCRIPT = Path(__file__).with_name("load.lua")
INSTALL_HINT = "install it with `apt-get install wrk` (Debian/Ubuntu) and run again"


class LoadError(RuntimeError):
    """wrk is missing or did not report results."""


def wrk_binary() -> str:
    found = shutil.which("wrk")
    if found is None:
        raise LoadError(f"the benchmark drives load with wrk, which is not installed: {INSTALL_HINT}")
    return found


@dataclass(frozen=True, slots=True)
class LoadResult:
    """What one wrk run measured. Latencies in seconds."""

    requests: int
    duration_s: float
    errors: int  # connect/read/write errors, timeouts and non-2xx answers
    p50_s: float
    p90_s: float
    p99_s: float

    @property
    def throughput(self) -> float:
        return self.requests / self.duration_s if self.duration_s > 0 else 0.0

    @classmethod
    def from_wrk(cls, report: Mapping[str, Any]) -> LoadResult:
        errors = sum(int(report[k]) for k in ("connect_errors", "read_errors", "write_errors", "status_errors"))
        return cls(
            requests=int(report["requests"]),
            duration_s=float(report["duration_us"]) / 1e6,
            errors=errors + int(report["timeouts"]),
            p50_s=float(report["p50_us"]) / 1e6,
            p90_s=float(report["p90_us"]) / 1e6,
            p99_s=float(report["p99_us"]) / 1e6,
        )


def run_wrk(
    url: str,
    body: bytes,
    headers: Mapping[str, str],
    connections: int,
    duration_s: float,
    cpus: Sequence[int] | None = None,
) -> LoadResult:
    """POST `body` to `url` over `connections` keep-alive connections for `duration_s`, one wrk thread.

    `cpus` pins wrk to those CPUs (so that it does not compete with the gateway under test)."""
    with tempfile.NamedTemporaryFile("wb", suffix=".json", delete=False) as handle:
        handle.write(body)
        body_path = handle.name
    env = {
        **os.environ,
        "WRK_BODY": body_path,
        "WRK_HEADERS": "\n".join(f"{name}: {value}" for name, value in headers.items()),
    }
    seconds = max(1, round(duration_s))
    command = [wrk_binary(), "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s"]
    command += ["-s", str(LUA_SCRIPT), url]
    try:
        done = subprocess.run(
            command,
            env=env,
            capture_output=True,
            text=True,
            timeout=seconds + 30,
            check=False,
            preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None,
        )
    finally:
        os.unlink(body_path)
    for line in reversed(done.stdout.splitlines()):
        if line.startswith("{"):
            return LoadResult.from_wrk(json.loads(line))
    raise LoadError(f"wrk exited {done.returncode} without results: {done.stderr.strip() or done.stdout.strip()}")
