"""A classifier version whose files are missing or corrupt on a replica: the replica starts and keeps serving
the last version it can load, and says so in `/readyz`, in `/metrics` and in its log."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from redis import Redis
from redis.asyncio import Redis as AsyncRedis

from classifier.artifacts import META_FILE, WEIGHTS_FILE
from classifier.registry import ModelRegistry
from router.config import PolicySettings
from router.hot_reload import HotReloader, active_version_key, announce_active_version
from router.redis_server import free_port
from router.scoring import ActiveClassifier
from tests.conftest import settings_dict
from tests.test_hot_reload import new_version
from tests.test_metrics import samples, value

Service = Callable[..., str]


def delete(version_dir: Path) -> None:
    shutil.rmtree(version_dir)


def empty_weights(version_dir: Path) -> None:
    (version_dir / WEIGHTS_FILE).write_bytes(b"")  # a copy cut short: numpy raises EOFError


def undecodable_meta(version_dir: Path) -> None:
    (version_dir / META_FILE).write_bytes(b"\xff\xfe{")  # UnicodeDecodeError


CORRUPTIONS = {"deleted": delete, "empty weights": empty_weights, "undecodable meta": undecodable_meta}


@pytest.fixture
def prefix() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


def chat_version(base: str) -> str:
    payload = {"model": "m", "messages": [{"role": "user", "content": "Which version answers?"}]}
    response = httpx.post(f"{base}/v1/chat/completions", json=payload, headers={"x-moa-route": "cheap"}, timeout=30)
    assert response.status_code == 200
    return response.headers["x-moa-classifier-version"]


def scrape(base: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return samples(httpx.get(f"{base}/metrics", timeout=5).text)


def readyz(base: str) -> dict[str, Any]:
    response = httpx.get(f"{base}/readyz", timeout=5)
    assert response.status_code == 200  # degraded, but serving: still ready
    body: dict[str, Any] = response.json()
    assert body["status"] == "ready"
    return body


@pytest.mark.parametrize("corrupt", CORRUPTIONS.values(), ids=list(CORRUPTIONS))
def test_a_replica_whose_active_version_is_broken_starts_with_the_version_before(
    make_service: Service,
    redis_url: str,
    prefix: str,
    tmp_path: Path,
    corrupt: Callable[[Path], None],
    caplog: pytest.LogCaptureFixture,
) -> None:
    models = tmp_path / "data" / "models"
    registry = ModelRegistry(models)
    before, active = new_version(models), new_version(models, 0.7)
    registry.promote(before)
    registry.promote(active)
    corrupt(models / active)
    with caplog.at_level(logging.ERROR, logger="router.scoring"):
        base = make_service(redis_url=redis_url, redis_prefix=prefix)
    assert chat_version(base) == before
    body = readyz(base)
    assert body["checks"]["classifier"] == before
    degraded = body["degraded"]["classifier"]
    assert {key: degraded[key] for key in ("serving", "promoted", "stage")} == {
        "serving": before,
        "promoted": active,
        "stage": "startup",
    }
    assert degraded["problem"] == ("missing" if corrupt is delete else "unreadable")
    found = scrape(base)
    assert value(found, "moa_classifier_degraded") == 1
    assert value(found, "moa_classifier_serving", version=before) == 1
    assert value(found, "moa_classifier_load_failures_total", stage="startup") == 1
    assert value(found, "moa_classifier_load_failures_total", stage="reload") == 0
    logged = [record.getMessage() for record in caplog.records if record.levelno == logging.ERROR]
    assert any(active in line and f"serving {before} instead" in line for line in logged), logged


def test_with_every_promoted_version_broken_it_serves_the_shipped_seed(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path / "models")
    first, second = new_version(tmp_path / "models"), new_version(tmp_path / "models", 0.7)
    registry.promote(first)
    registry.promote(second)
    delete(tmp_path / "models" / first)
    empty_weights(tmp_path / "models" / second)
    classifier = ActiveClassifier(registry, PolicySettings())
    assert classifier.version == "seed"
    health = classifier.health()
    assert health.failure is not None and health.failure.version == second
    assert health.failed_loads == {"startup": 2, "reload": 0}


def test_a_replica_starts_when_redis_names_a_broken_version(
    make_service: Service, redis_url: str, prefix: str, tmp_path: Path
) -> None:
    broken = new_version(tmp_path / "data" / "models")
    empty_weights(tmp_path / "data" / "models" / broken)
    client: Any = Redis.from_url(redis_url)
    try:
        announce_active_version(client, prefix, broken)
    finally:
        client.close()
    base = make_service(redis_url=redis_url, redis_prefix=prefix)
    assert chat_version(base) == "seed"
    degraded = readyz(base)["degraded"]["classifier"]
    assert degraded["serving"] == "seed" and degraded["promoted"] == broken and degraded["stage"] == "startup"
    assert value(scrape(base), "moa_classifier_degraded") == 1


def test_a_failed_hot_reload_is_visible_and_the_replica_keeps_serving_until_the_files_are_restored(
    make_service: Service, redis_url: str, prefix: str, tmp_path: Path
) -> None:
    models = tmp_path / "data" / "models"
    base = make_service(redis_url=redis_url, redis_prefix=prefix)
    assert "degraded" not in readyz(base)
    assert value(scrape(base), "moa_classifier_degraded") == 0
    promoted = new_version(models)
    good_weights = (models / promoted / WEIGHTS_FILE).read_bytes()
    empty_weights(models / promoted)
    client: Any = Redis.from_url(redis_url)
    try:
        announce_active_version(client, prefix, promoted)
    finally:
        client.close()
    deadline = time.monotonic() + 10
    while "degraded" not in (body := readyz(base)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert (
        body["degraded"]["classifier"]["promoted"] == promoted and body["degraded"]["classifier"]["stage"] == "reload"
    )
    assert chat_version(base) == "seed"
    found = scrape(base)
    assert value(found, "moa_classifier_degraded") == 1
    assert value(found, "moa_classifier_load_failures_total", stage="reload") == 1
    assert value(found, "moa_classifier_serving", version="seed") == 1
    time.sleep(2.5)  # the replica tries the version again (after 2 s): a failure that persists is counted once
    assert value(scrape(base), "moa_classifier_load_failures_total", stage="reload") == 1

    (models / promoted / WEIGHTS_FILE).write_bytes(good_weights)
    deadline = time.monotonic() + 10
    while chat_version(base) != promoted and time.monotonic() < deadline:
        time.sleep(0.05)
    assert chat_version(base) == promoted and "degraded" not in readyz(base)
    found = scrape(base)
    assert value(found, "moa_classifier_degraded") == 0
    assert value(found, "moa_classifier_serving", version=promoted) == 1
    assert ("moa_classifier_serving", frozenset({("version", "seed")})) not in found


async def test_a_corrupt_announced_version_does_not_stop_the_reloader(
    tmp_path: Path, redis_url: str, prefix: str
) -> None:
    registry = ModelRegistry(tmp_path / "models")
    classifier = ActiveClassifier(registry, PolicySettings())
    broken = new_version(tmp_path / "models")
    empty_weights(tmp_path / "models" / broken)
    redis = AsyncRedis.from_url(redis_url)
    reloader = HotReloader(redis, prefix, classifier)
    try:
        await redis.set(active_version_key(prefix), broken)
        assert not await reloader.check()  # raised EOFError, which ended the polling task
        assert classifier.version == "seed"
        assert classifier.failure is not None and classifier.failure.version == broken
        working = new_version(tmp_path / "models")
        await redis.set(active_version_key(prefix), working)
        assert await reloader.check() and classifier.version == working and classifier.failure is None
    finally:
        await redis.aclose()


async def test_promoting_the_serving_version_again_clears_the_degradation(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path / "models")
    before, broken = new_version(tmp_path / "models"), new_version(tmp_path / "models", 0.7)
    registry.promote(before)
    registry.promote(broken)
    delete(tmp_path / "models" / broken)
    classifier = ActiveClassifier(registry, PolicySettings())
    reloader = HotReloader(None, "moa", classifier)
    assert not await reloader.check()  # retries the broken version: still failing, counted once
    assert classifier.failure is not None and classifier.health().failed_loads == {"startup": 1, "reload": 0}
    assert registry.rollback() == before
    assert not await reloader.check()
    assert classifier.version == before and classifier.failure is None


def test_every_worker_of_a_multi_worker_replica_reports_its_degradation(
    sim_url: str, redis_url: str, tmp_path: Path
) -> None:
    models = tmp_path / "data" / "models"
    registry = ModelRegistry(models)
    before, broken = new_version(models), new_version(models, 0.7)
    registry.promote(before)
    registry.promote(broken)
    empty_weights(models / broken)
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(settings_dict(sim_url, tmp_path / "data")), encoding="utf-8")
    port = free_port()
    env = {**os.environ, "REDIS_URL": redis_url, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    command = [sys.executable, "-m", "router", "serve", "--workers", "2", "--config", str(config), "--port", str(port)]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while not _answers(f"{base}/healthz") and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.2)
        assert readyz(base)["degraded"]["classifier"]["serving"] == before
        # Whichever worker answers, the series of both (a pid label each), once the second one has started too.
        while True:
            found = scrape(base)
            degraded = [v for (name, labels), v in found.items() if name == "moa_classifier_degraded"]
            if len(degraded) >= 2 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        serving = [dict(labels) for (name, labels), v in found.items() if name == "moa_classifier_serving" and v == 1]
        assert degraded == [1.0, 1.0] and {labels["version"] for labels in serving} == {before} and len(serving) == 2
        assert value(found, "moa_classifier_load_failures_total", stage="startup") == 2
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=60)
    assert process.returncode == 0, output.decode(errors="replace")[-2000:]


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
