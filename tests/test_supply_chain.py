"""The dependency lock: every pin exact and hash-checked; litellm at a release we trust (never 1.82.7 or
1.82.8, the releases that shipped a credential stealer); the image's runtime subset complete."""

from __future__ import annotations

import importlib.metadata
import re
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.version import Version

from deploy.runtime_lock import normalise, parse_lock, runtime_pins

ROOT = Path(__file__).resolve().parent.parent
LOCK = (ROOT / "requirements.lock").read_text(encoding="utf-8")
PYPROJECT = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
COMPROMISED = {"litellm": {Version("1.82.7"), Version("1.82.8")}}
_REQUIREMENT_START = re.compile(r"^[A-Za-z0-9]")


def requirement_lines(lock: str) -> list[str]:
    """Each requirement of the lock as one logical line (continuations joined)."""
    logical = lock.replace("\\\n", " ")
    return [line.strip() for line in logical.splitlines() if _REQUIREMENT_START.match(line)]


def lock_problems(lock: str) -> list[str]:
    problems = []
    for line in requirement_lines(lock):
        spec = line.split(" --hash=")[0].strip()
        requirement = Requirement(spec)
        pinned = [s for s in requirement.specifier if s.operator == "=="]
        if len(pinned) != 1 or len(requirement.specifier) != 1:
            problems.append(f"{requirement.name}: not pinned to one version ({requirement.specifier})")
            continue
        version = Version(pinned[0].version)
        if "--hash=sha256:" not in line:
            problems.append(f"{requirement.name}=={version}: no hash")
        if version in COMPROMISED.get(normalise(requirement.name), set()):
            problems.append(f"{requirement.name}=={version}: a compromised release")
    return problems


def test_the_lock_pins_every_package_with_hashes() -> None:
    assert requirement_lines(LOCK), "the lock holds no requirement"
    assert lock_problems(LOCK) == []


def test_the_lock_holds_a_recent_litellm() -> None:
    pins = {normalise(line.split("==")[0]): line.split("==")[1].split()[0] for line in requirement_lines(LOCK)}
    assert Version(pins["litellm"]) >= Version("1.83")


@pytest.mark.parametrize("version", ["1.82.7", "1.82.8"])
def test_the_check_catches_a_compromised_litellm(version: str) -> None:
    bad = LOCK.replace("litellm==1.110.2", f"litellm=={version}")
    assert bad != LOCK
    assert any("compromised" in problem for problem in lock_problems(bad))


def test_the_check_catches_missing_hashes_and_loose_pins() -> None:
    assert lock_problems("orjson==3.10.0\n") == ["orjson==3.10.0: no hash"]
    assert lock_problems("orjson>=3.10 --hash=sha256:00\n")[0].startswith("orjson: not pinned")


def test_pyproject_pins_litellm_exactly() -> None:
    assert re.search(r'"litellm==1\.110\.2"', PYPROJECT)


def test_the_image_installs_every_runtime_dependency_and_no_dev_tool() -> None:
    kept = {pin.name for pin in runtime_pins(LOCK, PYPROJECT)}
    assert {"litellm", "fastapi", "uvicorn", "redis", "scikit-learn", "httpx"} <= kept
    assert not {"pytest", "playwright", "schemathesis", "hypothesis", "mypy", "ruff"} & kept
    # Complete: each kept package's own requirements (for this platform, no extras) are kept too.
    environment = default_environment()
    environment["extra"] = ""
    missing = set()
    for name in kept:
        for text in importlib.metadata.requires(name) or ():
            requirement = Requirement(text)
            applies = requirement.marker is None or requirement.marker.evaluate(environment)
            if applies and normalise(requirement.name) not in kept:
                missing.add(f"{name} -> {requirement.name}")
    assert missing == set()


def test_every_lock_entry_parses() -> None:
    assert len(parse_lock(LOCK)) == len(requirement_lines(LOCK))
