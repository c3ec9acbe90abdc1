"""Shared fixtures: a real Redis, the simulated provider fleet over real HTTP, and the service itself."""

from __future__ import annotations

import inspect
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from router.redis_server import EmbeddedRedis
from router.simulator.fleet import FleetConfig, SimModel
from router.simulator.runner import SimulatorServer


@pytest.hookimpl(tryfirst=True)
def pytest_pycollect_makeitem(collector: pytest.Collector, name: str, obj: object) -> None:
    # Every `async def` test runs on asyncio through anyio's pytest plugin; no marker needed. Marked
    # before collection so that parametrized async tests get the marker too.
    if inspect.iscoroutinefunction(obj) and name.startswith("test"):
        pytest.mark.anyio(obj)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


PER_M = 1e-6
# The test fleet: no latency, fixed answer lengths, known prices (USD per token).
TEST_MODELS: dict[str, tuple[str, float, float]] = {
    "cheap-1": ("cheapfam", 0.15 * PER_M, 0.60 * PER_M),
    "prop-a": ("alpha", 2.5 * PER_M, 10 * PER_M),
    "prop-b": ("beta", 3.0 * PER_M, 15 * PER_M),
    "prop-c": ("gamma", 0.9 * PER_M, 0.9 * PER_M),
    "agg-1": ("delta", 2.5 * PER_M, 10 * PER_M),
    "judge-1": ("epsilon", 0.4 * PER_M, 1.6 * PER_M),
}


def test_fleet() -> FleetConfig:
    return FleetConfig(seed=7, models=tuple(
        SimModel(name=name, family=family, input_cost_per_token=inp, output_cost_per_token=out,
                 ttft_s=0.0, per_token_s=0.0, output_tokens=40)
        for name, (family, inp, out) in TEST_MODELS.items()
    ))


def entry(sim_url: str, name: str, **extra: Any) -> dict[str, Any]:
    family, inp, out = TEST_MODELS[name]
    return {"model": f"openai/{name}", "api_base": sim_url, "api_key": "sim-key", "family": family,
            "input_cost_per_token": inp, "output_cost_per_token": out, "timeout_s": 10.0, **extra}


def settings_dict(sim_url: str, data_dir: Path, **overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "cheap": entry(sim_url, "cheap-1"),
        "proposers": [entry(sim_url, "prop-a"), entry(sim_url, "prop-b"), entry(sim_url, "prop-c")],
        "aggregator": entry(sim_url, "agg-1"),
        "judge": entry(sim_url, "judge-1"),
        "auth": {"open": True},
        "mixture": {"proposer_deadline_s": 5.0, "quorum": 2},
        "data_dir": str(data_dir),
        "redis_prefix": f"t{uuid.uuid4().hex[:10]}",
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    return data


@pytest.fixture(scope="session")
def sim() -> Iterator[SimulatorServer]:
    with SimulatorServer(test_fleet()) as server:
        yield server


@pytest.fixture
def sim_url(sim: SimulatorServer) -> Iterator[str]:
    """The simulator's OpenAI base URL, with counters and model behaviour reset for each test."""
    httpx.post(f"{sim.root_url}/_sim/reset", timeout=5).raise_for_status()
    for name in TEST_MODELS:
        httpx.patch(f"{sim.root_url}/_sim/models/{name}", timeout=5, json={
            "ttft_s": 0.0, "per_token_s": 0.0, "error_rate": 0.0, "rate_limit_rate": 0.0, "hang_rate": 0.0,
            "malformed_rate": 0.0, "drop_stream_rate": 0.0, "fail_next": 0}).raise_for_status()
    yield sim.base_url


def sim_stats(sim: SimulatorServer) -> dict[str, Any]:
    stats: dict[str, Any] = httpx.get(f"{sim.root_url}/_sim/stats", timeout=5).json()
    return stats


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Redis: REDIS_URL when set, otherwise a redis-server these tests start. Tests keep apart by
    key prefix, never by flushing."""
    if os.environ.get("REDIS_URL"):
        yield os.environ["REDIS_URL"]
        return
    with EmbeddedRedis(tmp_path_factory.mktemp("redis"), persist=False) as server:
        yield server.url


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    """A Redis of this test's own, which the test may stop and start again."""
    server = EmbeddedRedis(tmp_path / "redis", persist=True)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def make_service(sim_url: str, tmp_path: Path) -> Iterator[Any]:
    """Starts the real service over real HTTP with settings built from the test fleet plus overrides;
    returns its base URL. Every service started is stopped (a normal shutdown) after the test."""
    from router.app import create_app
    from router.background_server import BackgroundServer
    from router.config import settings_from_mapping

    servers: list[BackgroundServer] = []

    def start(**overrides: Any) -> str:
        settings = settings_from_mapping(settings_dict(sim_url, tmp_path / "data", **overrides))
        server = BackgroundServer(create_app(settings))
        servers.append(server)
        return server.start()

    yield start
    for server in servers:
        server.stop()
