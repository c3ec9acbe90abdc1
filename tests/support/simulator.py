"""Simulator test helpers: a fleet with one model for each fault, and calls to it over real HTTP."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest

from router.simulator import FleetConfig, SimModel, SimulatorServer

QUESTION = [{"role": "user", "content": "How does photosynthesis convert sunlight into chemical energy?"}]
WAIT_LIMIT_S = 10.0  # an upper bound for conditions that must come true, never a measured timing


def faulty_fleet(seed: int = 7, api_key: str | None = None) -> FleetConfig:
    return FleetConfig(
        seed=seed,
        api_key=api_key,
        models=(
            SimModel(name="alpha", family="atlas", output_tokens=(40, 60), input_cost_per_token=1e-6),
            SimModel(name="beta", family="borealis", output_tokens=50),
            SimModel(name="gamma", family="cypress", output_tokens=50),
            SimModel(name="maestro", family="maestro", output_tokens=80),
            SimModel(name="patchable", family="mini", output_tokens=30),
            SimModel(name="failing", family="mini", error_rate=1.0),
            SimModel(name="limited", family="mini", rate_limit_rate=1.0, retry_after_s=7),
            SimModel(name="hanging", family="mini", hang_rate=1.0),
            SimModel(name="garbled", family="mini", malformed_rate=1.0),
            SimModel(name="dropping", family="mini", drop_stream_rate=1.0, output_tokens=40),
            SimModel(name="slow", family="mini", ttft_s=30.0),
        ),
    )


@contextmanager
def reset_client(server: SimulatorServer) -> Iterator[httpx.Client]:
    """A client of `server`, whose counters and models are reset first."""
    with httpx.Client(base_url=server.root_url, timeout=WAIT_LIMIT_S) as http:
        http.post("/_sim/reset").raise_for_status()
        yield http


def sim_chat(
    client: httpx.Client, model: str, messages: list[dict[str, Any]] = QUESTION, /, **extra: Any
) -> httpx.Response:
    return client.post("/v1/chat/completions", json={"model": model, "messages": messages, **extra})


def answer_text(response: httpx.Response) -> str:
    response.raise_for_status()
    content: str = response.json()["choices"][0]["message"]["content"]
    return content


def stream_events(client: httpx.Client, model: str, **extra: Any) -> list[bytes]:
    """The `data:` payloads of a streamed completion, in order."""
    body = {"model": model, "messages": QUESTION, "stream": True, **extra}
    with client.stream("POST", "/v1/chat/completions", json=body) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        raw = response.read()
    frames = [frame for frame in raw.split(b"\n\n") if frame]
    assert all(frame.startswith(b"data: ") for frame in frames)
    return [frame.removeprefix(b"data: ") for frame in frames]


def model_stats(client: httpx.Client, model: str) -> dict[str, Any]:
    stats: dict[str, Any] = client.get("/_sim/stats").json()["models"][model]
    return stats


def wait_until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WAIT_LIMIT_S
    while not condition():
        assert time.monotonic() < deadline, "condition did not come true"
        time.sleep(0.01)


# The faulty fleet for a test module, and a client to it whose models are reset for each test (import both
# into the module: `__all__ = ["client", "faulty_sim"]`).
@pytest.fixture(scope="module")
def faulty_sim() -> Iterator[SimulatorServer]:
    with SimulatorServer(faulty_fleet()) as server:
        yield server


@pytest.fixture
def client(faulty_sim: SimulatorServer) -> Iterator[httpx.Client]:
    with reset_client(faulty_sim) as http:
        yield http
