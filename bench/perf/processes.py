"""The processes under test: start one, wait until it is ready, read its CPU time and memory, stop it.

CPU and memory come from /proc (Linux): utime+stime of the process and of its descendants (the
router's embedded redis-server is its child), VmRSS for resident memory.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
_POLL_S = 0.01


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may hold spaces: split after its last ')'.
    return raw[raw.rindex(")") + 2 :].split()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of `pid` (all its threads) so far; 0 once it is gone."""
    fields = _stat_fields(pid)
    if fields is None:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS  # utime, stime (fields 14 and 15)


def descendants(pid: int) -> list[int]:
    """Every live process below `pid`, found through the parent pid of each process in /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if fields is not None:
                children.setdefault(int(fields[1]), []).append(int(entry.name))
    found: list[int] = []
    pending = [pid]
    while pending:
        for child in children.get(pending.pop(), []):
            found.append(child)
            pending.append(child)
    return found


def rss_bytes(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def http_ok(url: str, timeout_s: float = 1.0) -> bool:
    """Whether GET `url` answers 2xx now (http://host:port/path only)."""
    host_port, _, path = url.removeprefix("http://").partition("/")
    host, _, port = host_port.partition(":")
    connection = http.client.HTTPConnection(host, int(port or 80), timeout=timeout_s)
    try:
        connection.request("GET", "/" + path)
        return 200 <= connection.getresponse().status < 300
    except OSError:
        return False
    finally:
        connection.close()


class Service:
    """One server process of the benchmark, with its output in a log file.

    >>> with Service("router", [...], "http://127.0.0.1:8080/readyz", log_dir) as router:
    ...     router.wait_ready(30)
    """

    def __init__(
        self,
        name: str,
        command: Sequence[str],
        ready_url: str,
        log_dir: Path,
        env: Mapping[str, str] | None = None,
        cpus: Sequence[int] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.command = list(command)
        self.ready_url = ready_url
        self.log_path = log_dir / f"{name}.log"
        self.env = dict(env if env is not None else os.environ)
        self.cpus = list(cpus) if cpus else None
        self.cwd = cwd
        self.process: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0
        self.ready_s: float | None = None  # seconds from start to the first ready answer

    @property
    def pid(self) -> int:
        if self.process is None:
            raise RuntimeError(f"{self.name} is not running")
        return self.process.pid

    def start(self) -> Service:
        cpus = self.cpus
        with self.log_path.open("ab") as log:
            self.started_at = time.perf_counter()
            self.process = subprocess.Popen(
                self.command,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=self.cwd,
                start_new_session=True,  # its own process group: stopping it stops its children too
                preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None,
            )
        return self

    def wait_ready(self, timeout_s: float) -> float:
        """Polls the readiness URL; returns (and keeps) the seconds from start to ready."""
        deadline = self.started_at + timeout_s
        while time.perf_counter() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}; see {self.log_path}")
            if http_ok(self.ready_url, timeout_s=0.5):
                self.ready_s = time.perf_counter() - self.started_at
                return self.ready_s
            time.sleep(_POLL_S)
        raise RuntimeError(f"{self.name} was not ready within {timeout_s:.0f} s; see {self.log_path}")

    def tree(self) -> list[int]:
        return [self.pid, *descendants(self.pid)]

    def cpu_seconds(self) -> float:
        """CPU time of the process and its live descendants."""
        return sum(cpu_seconds(pid) for pid in self.tree())

    def rss_bytes(self) -> tuple[int, int]:
        """Resident memory of the process alone and of the process with its descendants."""
        own = rss_bytes(self.pid)
        return own, own + sum(rss_bytes(pid) for pid in descendants(self.pid))

    def stop(self, grace_s: float = 10.0) -> None:
        """SIGINT (a graceful shutdown), then SIGTERM, then SIGKILL to the process group."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        for sig, wait_s in ((signal.SIGINT, grace_s), (signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(process.pid, sig)
            except ProcessLookupError:
                return
            try:
                process.wait(wait_s)
                break
            except subprocess.TimeoutExpired:
                continue
        # Children that outlived the leader (e.g. a redis-server) belong to its group.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)

    def __enter__(self) -> Service:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
