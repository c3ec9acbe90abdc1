"""Where a gateway's CPU goes: py-spy samples of the running process, summarised by component.

Only the event loop's thread is counted: it runs every request. Each of its samples is charged to the
component of its innermost frame (self time), so that the shares add up to 100%; a second list gives the
router's own functions inclusively.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

# (component, path fragments); the first component with a fragment in the leaf frame's file wins.
COMPONENTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("upstream HTTP client (aiohttp)", ("/aiohttp/", "/yarl/", "/multidict/", "/aiohappyeyeballs/")),
    ("upstream HTTP client (httpx)", ("/httpx/", "/httpcore/", "/h11/")),
    ("anyio (starlette's streaming, httpx's sockets)", ("/anyio/",)),
    ("HTTP server (uvicorn, httptools)", ("/uvicorn/", "/httptools/")),
    ("ASGI framework (starlette, fastapi)", ("/starlette/", "/fastapi/")),
    ("request validation (pydantic)", ("/pydantic/", "/pydantic_core/")),
    ("Redis client (redis-py)", ("/redis/",)),
    ("classifier scoring", ("/classifier/",)),
    ("metrics (prometheus_client)", ("/prometheus_client/",)),
    ("logging", ("/logging/",)),
    (
        "router: cache, ledger, stats, budget, limits",
        ("/router/cache", "/router/ledger", "/router/stats", "/router/budget", "/router/ratelimit", "/router/shadow"),
    ),
    ("router: request path", ("/router/",)),
    ("event loop (asyncio, uvloop)", ("/asyncio/", "/uvloop/")),
    ("litellm", ("/litellm/",)),
)
OTHER = "other (stdlib, orjson, ...)"


def py_spy() -> str:
    candidate = Path(sys.executable).with_name("py-spy")
    found = str(candidate) if candidate.exists() else shutil.which("py-spy")
    if found is None:
        raise RuntimeError("py-spy is not installed (it is in the dev dependencies: `make install`)")
    return found


def record(pid: int, seconds: float, output: Path, rate: int = 250) -> Path:
    """Samples `pid` for `seconds` into a raw (collapsed stacks) file. Needs ptrace rights (root, or
    kernel.yama.ptrace_scope=0)."""
    command = [py_spy(), "record", "-p", str(pid), "-d", str(max(1, round(seconds))), "-r", str(rate)]
    command += ["-f", "raw", "--full-filenames", "--nolineno", "-o", str(output)]
    subprocess.run(command, check=True, capture_output=True, timeout=seconds + 60)
    return output


def _frames(line: str) -> tuple[list[str], int]:
    stack, _, count = line.rstrip("\n").rpartition(" ")
    return stack.split(";"), int(count)


def _file_of(frame: str) -> str:
    return frame[frame.rfind("(") + 1 : -1] if frame.endswith(")") else ""


def _function_of(frame: str) -> str:
    path = _file_of(frame)
    name = frame[: frame.rfind(" (")] if " (" in frame else frame
    module = path.rsplit("/router/", 1)[-1] if "/router/" in path else Path(path).name
    return f"{name} ({module})"


def _is_router_code(path: str) -> bool:
    """The router's own modules, less the command line that starts it (in every sample)."""
    entry_points = ("/router/cli.py", "/router/__main__.py")
    return "/router/" in path and "/commands/" not in path and not path.endswith(entry_points)


def component_of(path: str) -> str:
    for component, fragments in COMPONENTS:
        if any(fragment in path for fragment in fragments):
            return component
    return OTHER


def summarise(raw: Path, top: int = 12) -> str:
    """A markdown summary of the event loop's thread: self time by component, then the router's own
    functions inclusively, as shares of that thread's samples."""
    by_component: Counter[str] = Counter()
    router_functions: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        if not line.strip():
            continue
        frames, count = _frames(line)
        if frames[0].startswith("Thread._bootstrap"):
            continue  # pool threads parked on their queue look busy to py-spy; requests run on the main thread
        total += count
        by_component[component_of(_file_of(frames[-1]))] += count
        seen = {_function_of(f) for f in frames if _is_router_code(_file_of(f))}
        for function in seen:
            router_functions[function] += count
    if total == 0:
        return "(no samples)\n"
    lines = ["| component (self time) | share |", "|---|---|"]
    lines += [f"| {name} | {100 * n / total:.1f}% |" for name, n in by_component.most_common()]
    lines += ["", "| router function (inclusive) | share |", "|---|---|"]
    lines += [f"| {name} | {100 * n / total:.1f}% |" for name, n in router_functions.most_common(top)]
    return "\n".join(lines) + "\n"
