"""The deployment files: example configs that load, an image that is slim and non-root, a compose file
with several workers, Redis persistence and health checks; and `serve --workers N --config FILE`."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from router.config import load_settings
from router.providers.pricing import prices_for
from router.redis_server import free_port
from tests.conftest import settings_dict
from tests.test_metrics import samples

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("name", ["config.yaml", "config.simulated.yaml"])
def test_example_configs_load_and_every_model_has_a_price(name: str) -> None:
    settings = load_settings(ROOT / "deploy" / name)
    entries = [settings.cheap, *settings.proposers, settings.aggregator, settings.judge_entry]
    entries += [entry.fallback for entry in entries if entry.fallback is not None]
    for entry in entries:
        assert prices_for(entry).output_per_token > 0
        assert entry.api_key is None  # upstream keys come from the environment, never from the file


def test_the_production_example_is_closed_by_default() -> None:
    settings = load_settings(ROOT / "deploy" / "config.yaml")
    assert not settings.auth.open and not settings.demo and not settings.ledger.store_prompts


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
    return data


def test_compose_runs_several_workers_and_a_persistent_redis_with_health_checks() -> None:
    services = compose()["services"]
    redis, router = services["redis"], services["router"]
    assert "--appendonly" in redis["command"] and redis["command"][redis["command"].index("--appendonly") + 1] == "yes"
    assert any(volume.endswith(":/data") for volume in redis["volumes"])
    assert "healthcheck" in redis and "healthcheck" in router
    command = router["command"]
    assert int(command[command.index("--workers") + 1].split(":-")[-1].rstrip("}")) > 1
    assert router["depends_on"]["redis"]["condition"] == "service_healthy"
    assert router["environment"]["REDIS_URL"].startswith("redis://redis:")


# CI installs Debian's docker-compose (.ci/run), so there a missing client fails instead of skipping.
@pytest.mark.skipif(
    shutil.which("docker-compose") is None and not os.environ.get("CI"), reason="docker-compose is not installed"
)
def test_docker_compose_config_validates() -> None:
    result = subprocess.run(
        ["docker-compose", "-f", str(ROOT / "docker-compose.yml"), "config", "--quiet"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr


def test_the_image_is_slim_non_root_and_hash_checked() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    assert "--require-hashes" in dockerfile
    assert "-slim" in dockerfile
    user = [line.split()[1] for line in dockerfile.splitlines() if line.startswith("USER ")]
    assert user and not user[-1].startswith(("0", "root"))
    base = [line for line in dockerfile.splitlines() if line.startswith("ARG PYTHON_IMAGE=")]
    assert base and base[0].split(":", 1)[1].count(".") >= 2  # a patch release, not a moving tag


def test_serve_with_workers_answers_and_stops_cleanly(sim_url: str, redis_url: str, tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(settings_dict(sim_url, tmp_path / "data")), encoding="utf-8")
    port = free_port()
    env = {**os.environ, "REDIS_URL": redis_url, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    command = [sys.executable, "-m", "router", "serve", "--workers", "2", "--config", str(config), "--port", str(port)]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=ROOT)
    try:
        base = f"http://127.0.0.1:{port}"
        assert _wait_healthy(base, process), "the service did not come up"
        chat = {"model": "moa-router", "messages": [{"role": "user", "content": "hello"}]}
        with httpx.Client(base_url=base, timeout=30) as client:
            statuses = {client.post("/v1/chat/completions", json=chat).status_code for _ in range(8)}
        assert statuses == {200}
        # Whichever worker answers a scrape, it counts every worker's requests (one client per scrape:
        # a new connection, so scrapes go to either worker).
        for _ in range(6):
            found = samples(httpx.get(f"{base}/metrics", timeout=10).text)
            assert sum(v for (name, _), v in found.items() if name == "moa_requests_total") == 8
            assert sum(v for (name, _), v in found.items() if name == "moa_request_latency_seconds_count") == 8
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=60)
    assert process.returncode == 0, output.decode(errors="replace")[-2000:]


def _wait_healthy(base: str, process: subprocess.Popen[bytes], within_s: float = 60.0) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    return False
