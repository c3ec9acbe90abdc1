"""The classifier commands (`train`, `calibrate`, `models`, `evaluate`) use the classifier versions of the
service with the same config: those under its `data_dir`, announced in its Redis. They used ./.moa-router
(or MOA_ROUTER_DATA_DIR) while announcing in the config's Redis, so the service could not load what they
promoted."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from redis import Redis

from classifier.registry import SEED_VERSION, ModelRegistry
from router.cli import main
from router.hot_reload import active_version_key
from router.redis_server import free_port
from tests.conftest import settings_dict

FIXTURE = Path(__file__).parent / "fixtures" / "classifier_rows.jsonl"
HELD_BACK = "0.3"


@dataclass(frozen=True)
class ServiceConfig:
    """A config file as `make_service` builds its service (same data_dir, Redis and prefix), and how a
    command is told of it: `--config FILE`, or MOA_ROUTER_CONFIG as the service reads it."""

    path: Path
    data_dir: Path
    redis_url: str
    prefix: str
    named_by: str

    @property
    def registry(self) -> ModelRegistry:
        return ModelRegistry(self.data_dir / "models")

    def run(self, *args: str) -> int:
        return main([*args, "--config", str(self.path)] if self.named_by == "flag" else list(args))

    def announced(self) -> str | None:
        client: Any = Redis.from_url(self.redis_url)
        try:
            raw = client.get(active_version_key(self.prefix))
        finally:
            client.close()
        return None if raw is None else str(raw.decode())


@pytest.fixture(params=["flag", "env"])
def config(
    request: pytest.FixtureRequest, tmp_path: Path, sim_url: str, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> ServiceConfig:
    for name in ("MOA_ROUTER_DATA_DIR", "MOA_ROUTER_CONFIG", "REDIS_URL"):
        monkeypatch.delenv(name, raising=False)
    prefix = f"t{uuid.uuid4().hex[:10]}"
    data_dir = tmp_path / "data"  # make_service's
    path = tmp_path / "config.yaml"
    settings = settings_dict(sim_url, data_dir, redis_url=redis_url, redis_prefix=prefix)
    path.write_text(yaml.safe_dump(settings), encoding="utf-8")
    if request.param == "env":
        monkeypatch.setenv("MOA_ROUTER_CONFIG", str(path))
    elsewhere = tmp_path / "elsewhere"  # the working directory is not the config's data directory
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    return ServiceConfig(path, data_dir, redis_url, prefix, request.param)


def served_version(make_service: Callable[..., str], config: ServiceConfig) -> str:
    """The classifier version a service started from `config` answers with."""
    base = make_service(redis_url=config.redis_url, redis_prefix=config.prefix)
    response = httpx.post(
        f"{base}/v1/chat/completions",
        json={"model": "m", "messages": [{"role": "user", "content": "Which version answers?"}]},
        headers={"x-moa-route": "cheap"},
        timeout=30,
    )
    response.raise_for_status()
    return response.headers["x-moa-classifier-version"]


def new_version(registry: ModelRegistry) -> str:
    """A version other than the seed (its weights, another stakes threshold)."""
    seed = registry.load(SEED_VERSION)
    meta = {key: value for key, value in seed.meta.items() if key not in ("version", "created_at")}
    meta["thresholds"] = {**meta["thresholds"], "stakes": 0.61}
    return registry.save(seed.scorer, meta)


def flipped_rows(path: Path) -> Path:
    """The fixture rows with both labels reversed: a version trained on them is beaten by one trained right."""
    rows = [json.loads(line) for line in FIXTURE.read_text(encoding="utf-8").splitlines()]
    for row in rows:
        row["difficulty"], row["stakes"] = 1 - row["difficulty"], 1 - row["stakes"]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def assert_nothing_in_the_working_directory() -> None:
    assert not Path(".moa-router").exists()


def test_train_saves_and_promotes_where_the_service_loads_and_announces_it(
    config: ServiceConfig, make_service: Callable[..., str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    train = ("train", "--held-back-fraction", HELD_BACK, "--data")
    assert config.run(*train, str(flipped_rows(tmp_path / "flipped.jsonl")), "--no-promote") == 0
    (backwards,) = [info.version for info in config.registry.list_versions() if info.version != SEED_VERSION]
    config.registry.promote(backwards)  # an active version a version trained right beats
    capsys.readouterr()

    assert config.run(*train, str(FIXTURE)) == 0
    out = capsys.readouterr().out
    trained = config.registry.active_version()
    assert trained not in (backwards, SEED_VERSION) and f"promoted {trained}" in out
    assert backwards in out  # compared with the config's active version
    assert config.announced() == trained
    assert_nothing_in_the_working_directory()
    assert served_version(make_service, config) == trained


def test_train_from_log_reads_the_log_of_the_config_it_saves_under(
    tmp_path: Path, sim_url: str, redis_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # MOA_ROUTER_CONFIG names another service, whose Redis does not answer: --config's log is read.
    other = tmp_path / "other.yaml"
    unreachable = f"redis://127.0.0.1:{free_port()}/0"
    other.write_text(yaml.safe_dump(settings_dict(sim_url, tmp_path / "other", redis_url=unreachable)), "utf-8")
    monkeypatch.setenv("MOA_ROUTER_CONFIG", str(other))
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.delenv("MOA_ROUTER_DATA_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(settings_dict(sim_url, tmp_path / "data", redis_url=redis_url)), "utf-8")
    args = ["train", "--held-back-fraction", HELD_BACK, "--data", str(FIXTURE), "--from-log", "--no-promote"]
    assert main([*args, "--config", str(config)]) == 0, capsys.readouterr().err
    assert len(ModelRegistry(tmp_path / "data" / "models").list_versions()) == 2  # the seed and this one
    assert not (tmp_path / "other").exists()


def test_calibrate_promotes_where_the_service_loads_and_announces_it(
    config: ServiceConfig, make_service: Callable[..., str]
) -> None:
    args = ("calibrate", "--target-escalation-rate", "0.3", "--data", str(FIXTURE), "--held-back-fraction", "0.5")
    assert config.run(*args) == 0
    calibrated = config.registry.active_version()
    assert calibrated != SEED_VERSION
    assert config.registry.load(calibrated).meta["derived_from"] == SEED_VERSION
    assert config.announced() == calibrated
    assert_nothing_in_the_working_directory()
    assert served_version(make_service, config) == calibrated


def test_models_promote_list_and_rollback_act_on_the_services_versions(
    config: ServiceConfig, make_service: Callable[..., str], capsys: pytest.CaptureFixture[str]
) -> None:
    version = new_version(config.registry)
    assert config.run("models", "promote", version) == 0  # `models promote V --config F`
    assert config.registry.active_version() == version and config.announced() == version
    assert served_version(make_service, config) == version
    capsys.readouterr()

    listing = ["models", "--config", str(config.path), "list"] if config.named_by == "flag" else ["models", "list"]
    assert main(listing) == 0
    assert any(line.startswith(f"* {version} ") for line in capsys.readouterr().out.splitlines())

    assert config.run("models", "rollback") == 0
    assert config.registry.active_version() == SEED_VERSION and config.announced() == SEED_VERSION
    assert_nothing_in_the_working_directory()


@pytest.mark.parametrize(
    "command",
    [
        ["train", "--data", str(FIXTURE)],
        ["calibrate", "--target-escalation-rate", "0.3", "--data", str(FIXTURE)],
        ["models", "list"],
        ["models", "promote", SEED_VERSION],
        ["evaluate", "--data", str(FIXTURE), "--no-plot"],
    ],
)
@pytest.mark.parametrize("named_by", ["flag", "env"])
def test_a_config_that_cannot_be_read_is_one_line_and_status_2(
    command: list[str],
    named_by: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.delenv("MOA_ROUTER_DATA_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    bad = tmp_path / "bad.yaml"
    bad.write_text("cheap: {model: openai/x}\npolicy: {difficulty: 2}\n", encoding="utf-8")
    for config in (bad, tmp_path / "missing.yaml"):
        if named_by == "env":
            monkeypatch.setenv("MOA_ROUTER_CONFIG", str(config))
        capsys.readouterr()
        assert main([*command, "--config", str(config)] if named_by == "flag" else command) == 2
        captured = capsys.readouterr()
        assert captured.out == ""
        assert captured.err.startswith(f"moa-router {command[0]}: ") and str(config) in captured.err
        assert "Traceback" not in captured.err and captured.err.count("moa-router") == 1  # one message
    assert_nothing_in_the_working_directory()


def test_calibrate_warns_when_the_configs_policy_overrides_what_it_chose(
    tmp_path: Path, sim_url: str, redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # The service takes the config's policy over the version's thresholds: calibrate's rates said nothing
    # of it, so an operator saw a 0.3 escalation rate the service would not route at.
    config = tmp_path / "config.yaml"
    data = settings_dict(sim_url, tmp_path / "data", redis_url=redis_url, policy={"difficulty": 0.9})
    config.write_text(yaml.safe_dump(data), "utf-8")
    args = ["calibrate", "--target-escalation-rate", "0.3", "--data", str(FIXTURE), "--held-back-fraction", "0.5"]
    assert main([*args, "--no-promote", "--config", str(config)]) == 0
    err = capsys.readouterr().err
    assert "warning: the config's policy sets {'difficulty': 0.9}; the service uses those" in err
    plain = tmp_path / "plain.yaml"
    plain.write_text(yaml.safe_dump(settings_dict(sim_url, tmp_path / "data", redis_url=redis_url)), "utf-8")
    assert main([*args, "--no-promote", "--config", str(plain)]) == 0
    assert "warning" not in capsys.readouterr().err
