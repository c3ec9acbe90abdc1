"""Graceful shutdown: requests in flight when the service is told to stop are answered in full, and
their events reach the outcome log, which is flushed before the Redis client closes."""

from __future__ import annotations

import concurrent.futures
import re
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from redis import Redis

from router.app import create_app
from router.background_server import BackgroundServer
from router.config import settings_from_mapping
from router.simulator.runner import SimulatorServer
from tests.conftest import settings_dict, sim_stats

IN_FLIGHT = 12


def ask(base: str, index: int) -> httpx.Response:
    payload = {
        "model": "moa-router",
        "messages": [{"role": "user", "content": f"Slow question number {index}"}],
        "stream": index % 2 == 0,
    }
    return httpx.post(f"{base}/v1/chat/completions", json=payload, headers={"x-moa-route": route_of(index)}, timeout=30)


def route_of(index: int) -> str:
    return "mixture" if index % 3 == 0 else "cheap"


def test_stopping_drains_in_flight_requests_and_flushes_their_events(
    sim: SimulatorServer, sim_url: str, redis_url: str, tmp_path: Path
) -> None:
    for model in ("cheap-1", "prop-a", "prop-b", "prop-c", "agg-1"):
        httpx.patch(f"{sim.root_url}/_sim/models/{model}", json={"ttft_s": 0.8}, timeout=5).raise_for_status()
    prefix = f"t{uuid.uuid4().hex[:10]}"
    settings = settings_from_mapping(
        settings_dict(sim_url, tmp_path / "data", redis_url=redis_url, redis_prefix=prefix)
    )
    server = BackgroundServer(create_app(settings), graceful_s=20)
    base = server.start()
    with concurrent.futures.ThreadPoolExecutor(max_workers=IN_FLIGHT + 1) as pool:
        pending = [pool.submit(ask, base, index) for index in range(IN_FLIGHT)]
        # Every request is waiting on its upstream calls (three proposers for a mixture, else one).
        upstream = sum(3 if route_of(index) == "mixture" else 1 for index in range(IN_FLIGHT))
        _wait_for_upstream_in_flight(sim, minimum=upstream)
        stopping = pool.submit(server.stop)  # as on SIGTERM: stop accepting, drain, then shut down
        responses = [future.result(timeout=60) for future in pending]
        stopping.result(timeout=60)
    assert [r.status_code for r in responses] == [200] * IN_FLIGHT
    for index, response in enumerate(responses):
        if index % 2 == 0:
            assert response.text.rstrip().endswith("data: [DONE]")
            assert '"finish_reason":"stop"' in response.text
        else:
            assert response.json()["choices"][0]["message"]["content"]
    logged = _logged_request_ids(redis_url, prefix)
    assert {_request_id(r) for r in responses} <= logged


def _request_id(response: httpx.Response) -> str:
    return response.headers["x-request-id"]


def _logged_request_ids(redis_url: str, prefix: str) -> set[str]:
    client = Redis.from_url(redis_url)
    try:
        entries: list[tuple[bytes, dict[bytes, bytes]]] = client.xrange(f"{prefix}:ledger:events")
    finally:
        client.close()
    return set(re.findall(r"chatcmpl-[0-9a-f]{32}", "\n".join(repr(fields) for _, fields in entries)))


def _wait_for_upstream_in_flight(sim: SimulatorServer, minimum: int, within_s: float = 20.0) -> None:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        stats: dict[str, Any] = sim_stats(sim)
        if stats["in_flight"] >= minimum:
            return
        time.sleep(0.01)
    raise AssertionError(f"the requests never were in flight upstream together: {sim_stats(sim)}")
