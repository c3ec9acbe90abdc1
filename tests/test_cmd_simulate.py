"""`moa-router simulate`: its refusals are one line on stderr with exit status 2, never a traceback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def simulate(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    return subprocess.run(
        [sys.executable, "-m", "router", "simulate", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("port", ["70000", "0", "-1", "http"])
def test_a_port_out_of_range_is_a_usage_error(tmp_path: Path, port: str) -> None:
    done = simulate("--port", port, cwd=tmp_path)  # 70000 was passed on to uvicorn, which said it ran there
    assert done.returncode == 2
    assert "argument --port" in done.stderr and done.stdout == ""


def test_a_port_in_use_is_a_clear_error(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        done = simulate("--port", str(port), cwd=tmp_path)  # uvicorn logged it and exited with status 3
    assert done.returncode == 2
    assert done.stderr.startswith(f"moa-router simulate: cannot listen on 127.0.0.1:{port}: ")
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("content", "said"),
    [
        (None, "cannot read fleet file"),
        (b"models: [unclosed", "is not valid YAML"),
        (b"models: 5\n", "invalid fleet file"),
        (b"models: [{name: caf\xe9}]\n", "is not UTF-8 text"),
    ],
)
def test_a_fleet_file_that_cannot_be_used_is_named(tmp_path: Path, content: bytes | None, said: str) -> None:
    fleet = tmp_path / "fleet.yaml"
    if content is not None:
        fleet.write_bytes(content)
    done = simulate("--fleet", str(fleet), cwd=tmp_path)  # a traceback before
    assert done.returncode == 2
    assert done.stderr.startswith("moa-router simulate: ") and said in done.stderr and str(fleet) in done.stderr
    assert "Traceback" not in done.stderr


def test_a_negative_latency_scale_is_refused_on_stderr(tmp_path: Path) -> None:
    done = simulate("--latency-scale", "-1", cwd=tmp_path)  # the message went to stdout
    assert done.returncode == 2
    assert done.stdout == "" and "--latency-scale must be >= 0" in done.stderr
