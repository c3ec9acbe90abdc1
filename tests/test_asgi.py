"""The worker processes' app factory (`serve --workers N`): a config a worker cannot use is one line on
stderr and uvicorn's startup-failure status, so that the workers stop instead of being started again."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from router.asgi import WORKER_STARTUP_FAILURE, app_from_env
from router.redis_server import free_port
from tests.conftest import settings_dict

REPO = Path(__file__).resolve().parents[1]


def _bad_configs(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """Name -> (config file, what its error names)."""
    invalid = tmp_path / "invalid.yaml"
    invalid.write_text("cheap: {model: openai/x}\npolicy: {difficulty: 2}\n", encoding="utf-8")
    no_hash_key = tmp_path / "no-hash-key.yaml"
    ledger = {"prompt_hash_key_env": "MOA_TEST_UNSET_HASH_KEY"}
    no_hash_key.write_text(yaml.safe_dump(settings_dict("http://127.0.0.1:9/v1", tmp_path, ledger=ledger)))
    return {
        "missing": (tmp_path / "missing.yaml", "cannot read config file"),
        "invalid": (invalid, "invalid configuration in"),
        "hash key unset": (no_hash_key, "MOA_TEST_UNSET_HASH_KEY"),
    }


@pytest.mark.parametrize("name", ["missing", "invalid", "hash key unset", "unset"])
def test_a_config_a_worker_cannot_use_is_one_message_and_the_startup_failure_status(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("MOA_TEST_UNSET_HASH_KEY", raising=False)
    if name == "unset":
        monkeypatch.delenv("MOA_ROUTER_CONFIG", raising=False)
        named = "no configuration"
    else:
        config, named = _bad_configs(tmp_path)[name]
        monkeypatch.setenv("MOA_ROUTER_CONFIG", str(config))
    with pytest.raises(SystemExit) as stopped:  # a ConfigError's traceback, in every worker
        app_from_env()
    assert stopped.value.code == WORKER_STARTUP_FAILURE
    err = capsys.readouterr().err
    assert err.startswith("moa-router: ") and named in err and "Traceback" not in err


def test_workers_that_cannot_start_stop_the_server_with_one_line_each(tmp_path: Path) -> None:
    # The parent `serve` checks the config before it starts workers; this is a config that changed since,
    # or the factory run by uvicorn itself. A worker's traceback made uvicorn start it again, forever.
    config, _ = _bad_configs(tmp_path)["missing"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    env["MOA_ROUTER_CONFIG"] = str(config)
    command = [sys.executable, "-m", "uvicorn", "router.asgi:app_from_env", "--factory", "--workers", "2"]
    process = subprocess.Popen(
        [*command, "--port", str(free_port())], env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        _, stderr = process.communicate(timeout=60)  # it ends; it used to restart the workers forever
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    err = stderr.decode(errors="replace")
    assert "Traceback" not in err, err[-2000:]
    lines = [line for line in err.splitlines() if line.startswith("moa-router: ")]
    assert 1 <= len(lines) <= 2 and all(f"cannot read config file {config}" in line for line in lines), err[-2000:]
