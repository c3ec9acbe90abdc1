"""Hot reload: a version announced in Redis (or in the registry's ACTIVE file) is swapped in by a
running service within seconds, with no request failing meanwhile."""

from __future__ import annotations

import asyncio
import shutil
import threading
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

from classifier.artifacts import WEIGHTS_FILE
from classifier.registry import LoadedModel, ModelRegistry
from router.cli import main
from router.config import PolicySettings
from router.hot_reload import RETRY_FIRST_S, RETRY_MAX_S, HotReloader, active_version_key, announce_active_version
from router.redis_server import EmbeddedRedis, free_port
from router.scoring import ActiveClassifier
from tests.conftest import settings_dict

Service = Callable[..., str]


def new_version(models_dir: Path, stakes_threshold: float = 0.61) -> str:
    """A version other than the seed (the seed's weights, other thresholds)."""
    registry = ModelRegistry(models_dir)
    seed = registry.load("seed")
    meta = {key: value for key, value in seed.meta.items() if key not in ("version", "created_at")}
    meta["thresholds"] = {**meta["thresholds"], "stakes": stakes_threshold}
    return registry.save(seed.scorer, meta)


@pytest.fixture
def prefix() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


async def test_a_version_announced_in_redis_is_swapped_in(tmp_path: Path, redis_url: str, prefix: str) -> None:
    registry = ModelRegistry(tmp_path / "models")
    classifier = ActiveClassifier(registry, PolicySettings())
    version = new_version(tmp_path / "models")
    redis = AsyncRedis.from_url(redis_url)
    reloader = HotReloader(redis, prefix, classifier)
    try:
        assert not await reloader.check()  # nothing announced yet
        assert classifier.version == "seed"
        await redis.set(active_version_key(prefix), version)
        assert await reloader.check()
        assert classifier.version == version and classifier.thresholds.stakes == pytest.approx(0.61)
        assert not await reloader.check()  # no change, no reload
        await redis.set(active_version_key(prefix), "v-missing")
        assert not await reloader.check()  # a version this replica cannot load is not swapped in
        assert classifier.version == version
        await redis.set(active_version_key(prefix), "seed")
        assert await reloader.check() and classifier.version == "seed"
    finally:
        await redis.aclose()
    assert reloader.reloads == 2


async def test_a_promotion_on_disk_is_followed_without_redis(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path / "models")
    classifier = ActiveClassifier(registry, PolicySettings())
    reloader = HotReloader(None, "moa", classifier)
    version = new_version(tmp_path / "models")
    assert not await reloader.check()
    registry.promote(version)
    assert await reloader.check() and classifier.version == version
    registry.rollback()
    assert await reloader.check() and classifier.version == "seed"


def test_the_running_service_picks_up_a_promotion_without_dropping_requests(
    make_service: Service, redis_url: str, prefix: str, tmp_path: Path
) -> None:
    base = make_service(redis_url=redis_url, redis_prefix=prefix)
    payload = {"model": "m", "messages": [{"role": "user", "content": "Which version answers?"}]}
    seen: list[tuple[int, str]] = []
    stop = threading.Event()

    def traffic() -> None:
        with httpx.Client(timeout=30) as client:
            while not stop.is_set():
                response = client.post(f"{base}/v1/chat/completions", json=payload, headers={"x-moa-route": "cheap"})
                seen.append((response.status_code, response.headers.get("x-moa-classifier-version", "")))

    thread = threading.Thread(target=traffic)
    thread.start()
    try:
        while len(seen) < 5:
            time.sleep(0.01)
        version = new_version(tmp_path / "data" / "models")
        client: Any = Redis.from_url(redis_url)
        announce_active_version(client, prefix, version)
        client.close()
        deadline = time.monotonic() + 10
        while not (seen and seen[-1][1] == version) and time.monotonic() < deadline:
            time.sleep(0.05)
        count = len(seen)
        while len(seen) < count + 5:
            time.sleep(0.01)
    finally:
        stop.set()
        thread.join()
    assert all(status == 200 for status, _ in seen)
    versions = [v for _, v in seen]
    assert versions[0] == "seed" and versions[-1] == version
    switch = versions.index(version)
    assert set(versions[:switch]) == {"seed"} and set(versions[switch:]) == {version}  # one clean switch


async def test_a_promotion_on_disk_is_followed_while_redis_is_down(tmp_path: Path, own_redis: EmbeddedRedis) -> None:
    registry = ModelRegistry(tmp_path / "models")
    classifier = ActiveClassifier(registry, PolicySettings())
    announced, on_disk = new_version(tmp_path / "models"), new_version(tmp_path / "models", 0.7)
    redis = AsyncRedis.from_url(own_redis.url, socket_connect_timeout=1, socket_timeout=1)
    reloader = HotReloader(redis, "moa", classifier)
    try:
        await redis.set(active_version_key("moa"), announced)
        assert await reloader.check() and classifier.version == announced
        own_redis.stop()
        # `models promote` could not reach Redis either: it told the operator replicas follow the file.
        registry.promote(on_disk)
        await reloader.check()  # the poll that first sees the file's change (it used to lose it to Redis)
        await reloader.check()
        assert classifier.version == on_disk
        own_redis.start()  # back with the old announcement, which this replica has already followed
        assert not await reloader.check()
        assert classifier.version == on_disk
    finally:
        await redis.aclose()


def test_a_rollback_while_the_service_is_stopped_survives_its_restart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The demo's embedded Redis keeps the announcement in its append-only file: a promotion or rollback
    # made while it was stopped used to change only the ACTIVE file, and the restarted service went back
    # to the version Redis still named.
    monkeypatch.setenv("MOA_ROUTER_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.delenv("MOA_ROUTER_CONFIG", raising=False)
    registry = ModelRegistry(tmp_path / "models")
    version = new_version(tmp_path / "models")
    with EmbeddedRedis(tmp_path / "redis", persist=True):  # the demo runs
        assert main(["models", "promote", version]) == 0
    assert main(["models", "rollback"]) == 0  # the demo is stopped
    assert registry.active_version() == "seed"

    async def restarted_replica_serves() -> str:
        with EmbeddedRedis(tmp_path / "redis", persist=True) as server:
            redis = AsyncRedis.from_url(server.url)
            classifier = ActiveClassifier(registry, PolicySettings())
            try:
                await HotReloader(redis, "moa", classifier).check()
            finally:
                await redis.aclose()
            return classifier.version

    assert asyncio.run(restarted_replica_serves()) == "seed"


def test_a_promotion_that_redis_did_not_hear_of_fails_and_says_what_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MOA_ROUTER_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")  # nothing listens there
    monkeypatch.delenv("MOA_ROUTER_CONFIG", raising=False)
    version = new_version(tmp_path / "models")
    assert main(["models", "promote", version]) == 1
    err = capsys.readouterr().err
    assert f"could not announce {version}" in err and f"moa-router models promote {version}` again" in err
    assert ModelRegistry(tmp_path / "models").active_version() == version  # the file follows it all the same


class _CountingRegistry(ModelRegistry):
    """The registry, counting the loads of each version (each reads and checks its files)."""

    def __init__(self, models_dir: Path) -> None:
        super().__init__(models_dir)
        self.loads: dict[str, int] = {}

    def load(self, version: str | None = None) -> LoadedModel:
        if version is not None:
            self.loads[version] = self.loads.get(version, 0) + 1
        return super().load(version)


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _promote_broken(models_dir: Path) -> tuple[str, bytes]:
    """A promoted version whose weights file is then emptied (a copy cut short); returns it and its weights."""
    version = new_version(models_dir)
    ModelRegistry(models_dir).promote(version)
    weights = models_dir / version / WEIGHTS_FILE
    good = weights.read_bytes()
    weights.write_bytes(b"")
    return version, good


async def test_a_version_that_fails_to_load_is_tried_again_less_and_less_often(tmp_path: Path) -> None:
    registry, clock = _CountingRegistry(tmp_path / "models"), _Clock()
    classifier = ActiveClassifier(registry, PolicySettings())
    registry.loads.clear()  # the seed's, at startup
    reloader = HotReloader(None, "moa", classifier, clock=clock)
    broken, _ = _promote_broken(tmp_path / "models")
    for _ in range(5):  # every worker read it every second until it was fixed
        assert not await reloader.check()
    assert registry.loads == {broken: 1} and classifier.failure is not None
    tries = []
    for _ in range(8):
        clock.now += RETRY_FIRST_S
        await reloader.check()
        tries.append(registry.loads[broken])
    assert tries == [2, 2, 3, 3, 3, 3, 4, 4]  # after 2 s, then 4 s, then 8 s
    for _ in range(3):
        clock.now += RETRY_MAX_S  # the wait stops growing
        await reloader.check()
    assert registry.loads[broken] == 7
    assert classifier.version == "seed" and classifier.health().failed_loads["reload"] == 1  # reported once

    promoted = new_version(tmp_path / "models", 0.7)
    ModelRegistry(tmp_path / "models").promote(promoted)
    assert await reloader.check() and classifier.version == promoted  # a new promotion: at the next poll
    assert classifier.failure is None


async def test_a_version_whose_files_are_restored_is_loaded_at_the_next_poll(tmp_path: Path) -> None:
    registry, clock = _CountingRegistry(tmp_path / "models"), _Clock()
    classifier = ActiveClassifier(registry, PolicySettings())
    registry.loads.clear()  # the seed's, at startup
    reloader = HotReloader(None, "moa", classifier, clock=clock)
    broken, good = _promote_broken(tmp_path / "models")
    assert not await reloader.check()
    assert not await reloader.check()
    (tmp_path / "models" / broken / WEIGHTS_FILE).write_bytes(good)
    assert await reloader.check() and classifier.version == broken and classifier.failure is None
    assert registry.loads[broken] == 2


async def test_a_missing_version_is_loaded_once_its_directory_arrives(tmp_path: Path) -> None:
    registry, clock = _CountingRegistry(tmp_path / "models"), _Clock()
    classifier = ActiveClassifier(registry, PolicySettings())
    registry.loads.clear()  # the seed's, at startup
    reloader = HotReloader(None, "moa", classifier, clock=clock)
    version = new_version(tmp_path / "models")
    ModelRegistry(tmp_path / "models").promote(version)
    shutil.move(tmp_path / "models" / version, tmp_path / version)  # promoted elsewhere; not yet copied here
    assert not await reloader.check()
    assert not await reloader.check()
    assert registry.loads == {version: 1} and classifier.failure is not None
    shutil.move(tmp_path / version, tmp_path / "models" / version)
    assert await reloader.check() and classifier.version == version


def test_a_promotion_is_announced_in_the_redis_of_the_config_given(
    tmp_path: Path, redis_url: str, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A command's --config names the registry's data directory; MOA_ROUTER_CONFIG may name another service,
    # whose Redis was told instead (here it does not answer).
    from router.hot_reload import announce_promotion

    other = tmp_path / "other.yaml"
    unreachable = f"redis://127.0.0.1:{free_port()}/0"
    other.write_text(yaml.safe_dump(settings_dict("http://127.0.0.1:9/v1", tmp_path, redis_url=unreachable)))
    monkeypatch.setenv("MOA_ROUTER_CONFIG", str(other))
    monkeypatch.delenv("REDIS_URL", raising=False)
    config = tmp_path / "config.yaml"
    settings = settings_dict("http://127.0.0.1:9/v1", tmp_path, redis_url=redis_url, redis_prefix=prefix)
    config.write_text(yaml.safe_dump(settings))
    announcement = announce_promotion("v-announced", str(config))
    assert announcement.ok, announcement.message
    client: Any = Redis.from_url(redis_url)
    try:
        assert client.get(active_version_key(prefix)) == b"v-announced"
    finally:
        client.close()
