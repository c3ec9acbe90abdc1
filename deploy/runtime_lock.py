"""Print the runtime part of requirements.lock: the pins (with their hashes) that the service needs,
without the development tools (pytest, playwright, schemathesis, ...). The container image installs
this with `pip install --require-hashes --no-deps`, so it stays slim and every file stays hash-checked.

The lock's `# via` comments say which package needs which; a pin is kept when the project's runtime
dependencies (pyproject.toml `[project] dependencies`) reach it. Standard library only.

    python deploy/runtime_lock.py requirements.lock pyproject.toml > runtime.lock
"""

from __future__ import annotations

import re
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?==")
_NAME = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)")
_PROJECT = "moa-router"


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass
class Pin:
    name: str
    lines: list[str] = field(default_factory=list)
    needed_by: set[str] = field(default_factory=set)


def parse_lock(text: str) -> dict[str, Pin]:
    """Each pin with its own lines (requirement and hashes) and the packages its `# via` names."""
    pins: dict[str, Pin] = {}
    current: Pin | None = None
    in_via = False
    for line in text.splitlines():
        stripped = line.strip()
        match = _PIN.match(line)
        if match:
            current = pins[normalise(match.group(1))] = Pin(normalise(match.group(1)), [line])
            in_via = False
            continue
        if current is None:
            continue
        if stripped.startswith("--hash="):
            current.lines.append(line)
        elif stripped == "# via":
            in_via = True
        elif stripped.startswith("# via "):
            current.needed_by.add(_via_name(stripped[len("# via ") :]))
            in_via = False
        elif in_via and stripped.startswith("#   "):
            current.needed_by.add(_via_name(stripped[len("#   ") :]))
        else:
            in_via = False
    return pins


def _via_name(text: str) -> str:
    if text.startswith(_PROJECT):
        return _PROJECT
    match = _NAME.match(text.strip())
    return normalise(match.group(1)) if match else text


def runtime_names(pyproject: str) -> set[str]:
    dependencies = tomllib.loads(pyproject)["project"]["dependencies"]
    names = set()
    for spec in dependencies:
        match = _NAME.match(spec.strip())
        if match:
            names.add(normalise(match.group(1)))
    return names


def runtime_pins(lock: str, pyproject: str) -> list[Pin]:
    """The pins reached from the runtime dependencies, following the lock's `# via` edges downwards."""
    pins = parse_lock(lock)
    needs: dict[str, set[str]] = {name: set() for name in pins}
    for pin in pins.values():
        for parent in pin.needed_by:
            if parent in needs:
                needs[parent].add(pin.name)
    wanted = [name for name in runtime_names(pyproject) if name in pins]
    missing = runtime_names(pyproject) - set(pins)
    if missing:
        raise SystemExit(f"runtime dependencies missing from the lock: {', '.join(sorted(missing))}")
    kept: set[str] = set()
    while wanted:
        name = wanted.pop()
        if name not in kept:
            kept.add(name)
            wanted.extend(needs[name] - kept)
    return [pins[name] for name in sorted(kept)]


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print("usage: runtime_lock.py requirements.lock pyproject.toml", file=sys.stderr)
        return 2
    lock_path, pyproject_path = Path(argv[1]), Path(argv[2])
    pins = runtime_pins(lock_path.read_text(encoding="utf-8"), pyproject_path.read_text(encoding="utf-8"))
    print("# The runtime part of requirements.lock, made by deploy/runtime_lock.py; do not edit.")
    for pin in pins:
        print("\n".join(pin.lines))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
