"""`moa-router serve`: its arguments are checked before anything starts."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from router.cli import main
from router.redis_server import free_port
from tests.conftest import entry, settings_dict

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("port", ["70000", "0", "http"])
def test_a_port_out_of_range_is_a_usage_error(port: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:  # 70000 went on to uvicorn, which said it served there
        main(["serve", "--demo", "--port", port])
    assert stopped.value.code == 2
    assert "argument --port" in capsys.readouterr().err


def _config(tmp_path: Path, **replaced: Any) -> Path:
    config = tmp_path / "config.yaml"
    data = settings_dict("http://127.0.0.1:9/v1", tmp_path / "data")
    config.write_text(yaml.safe_dump({**data, **replaced}))  # whole sections: settings_dict would merge them
    return config


@pytest.mark.parametrize(
    ("overrides", "said"),
    [
        ({"cheap": {"model": "openai/no-such-model-xyz", "api_base": "http://127.0.0.1:9/v1"}}, "cheap: no price for"),
        # A fallback is priced too: it answers in its entry's place.
        (
            {"cheap": {**entry("http://127.0.0.1:9/v1", "cheap-1"), "fallback": {"model": "openai/no-such-model-xyz"}}},
            "cheap: no price for openai/no-such-model-xyz",
        ),
        ({"ledger": {"redact": "no_such_module_xyz:redact"}}, "ledger.redact: cannot load no_such_module_xyz:redact"),
    ],
    ids=["unknown price", "unknown fallback price", "redaction hook"],
)
def test_a_config_the_app_cannot_start_with_is_one_line_before_serving(
    overrides: dict[str, Any], said: str, tmp_path: Path
) -> None:
    # Each passed the config check and ended the app's startup with a traceback and status 3. In a process
    # of its own, with a timeout: if the check let it through, it would serve until stopped.
    command = [sys.executable, "-m", "router", "serve", "--config", str(_config(tmp_path, **overrides))]
    done = _run([*command, "--port", str(free_port())], tmp_path)
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stderr.startswith(f"moa-router: {said}") and len(done.stderr.splitlines()) == 1, done.stderr


def _run(command: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    env.pop("MOA_TEST_UNSET_UPSTREAM_KEY", None)
    return subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=120)


def test_workers_that_cannot_start_make_serve_fail(tmp_path: Path) -> None:
    # uvicorn stopped the other workers but `serve --workers 2` still ended with status 0, so a supervisor
    # that restarts only a failed service saw success.
    config = _config(tmp_path, ledger={"redact": "tests.support.parent_only_redact:redact"})
    command = [sys.executable, "-m", "router", "serve", "--config", str(config), "--workers", "2"]
    done = _run([*command, "--port", str(free_port())], tmp_path)
    assert done.returncode == 3, done.stderr[-2000:]
    assert "moa-router: a worker could not start" in done.stderr


def test_an_upstream_key_missing_from_the_environment_stops_serve_before_it_starts(tmp_path: Path) -> None:
    # It started, and every call to that model failed upstream (a 502 "failed (auth)") from the first request.
    cheap = {**entry("http://127.0.0.1:9/v1", "cheap-1"), "api_key_env": "MOA_TEST_UNSET_UPSTREAM_KEY"}
    del cheap["api_key"]
    command = [sys.executable, "-m", "router", "serve", "--config", str(_config(tmp_path, cheap=cheap))]
    done = _run([*command, "--port", str(free_port())], tmp_path)
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stderr.startswith("moa-router: upstream API keys missing from the environment")
    assert "cheap.api_key_env: $MOA_TEST_UNSET_UPSTREAM_KEY is not set" in done.stderr
