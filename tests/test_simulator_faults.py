"""The simulator's injected faults (errors, rate limits, garbled bodies, cut streams, hangs, latency), changed
at run time through /_sim, and the call statistics that count them."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import orjson
import pytest

from router.simulator import SimulatorServer
from tests.support.simulator import (
    QUESTION,
    WAIT_LIMIT_S,
    answer_text,
    client,
    faulty_sim,
    model_stats,
    sim_chat,
    stream_events,
    wait_until,
)

__all__ = ["client", "faulty_sim"]  # fixtures, used by name


def test_error_rate_gives_500_in_openai_error_shape(client: httpx.Client) -> None:
    response = sim_chat(client, "failing")
    assert response.status_code == 500
    assert response.json()["error"]["type"] == "server_error"
    assert model_stats(client, "failing")["faults"] == {"error": 1}


def test_rate_limit_gives_429_with_retry_after(client: httpx.Client) -> None:
    response = sim_chat(client, "limited")
    assert response.status_code == 429
    assert response.headers["retry-after"] == "7"
    assert response.headers["retry-after-ms"] == "7000"
    assert response.json()["error"]["code"] == "rate_limit_exceeded"


def test_malformed_gives_200_with_invalid_json(client: httpx.Client) -> None:
    response = sim_chat(client, "garbled")
    assert response.status_code == 200
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(response.content)
    events = stream_events(client, "garbled")
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(events[0])


def test_dropped_stream_closes_the_connection_mid_way(client: httpx.Client) -> None:
    received: list[bytes] = []
    body = {"model": "dropping", "messages": QUESTION, "stream": True}
    with pytest.raises(httpx.RemoteProtocolError), client.stream("POST", "/v1/chat/completions", json=body) as response:
        received.extend(response.iter_bytes())
    assert b"data: " in b"".join(received)
    assert b"[DONE]" not in b"".join(received)
    assert answer_text(sim_chat(client, "dropping")) != ""  # a non-streamed call cannot be cut; it answers


def test_hang_never_answers_and_frees_the_slot_when_the_client_leaves(client: httpx.Client) -> None:
    with pytest.raises(httpx.ReadTimeout):
        client.post("/v1/chat/completions", json={"model": "hanging", "messages": QUESTION}, timeout=0.2)
    wait_until(lambda: model_stats(client, "hanging")["in_flight"] == 0)
    assert model_stats(client, "hanging")["faults"] == {"hang": 1}


def test_latency_is_applied(client: httpx.Client) -> None:
    with pytest.raises(httpx.ReadTimeout):
        client.post("/v1/chat/completions", json={"model": "slow", "messages": QUESTION}, timeout=0.2)
    wait_until(lambda: model_stats(client, "slow")["in_flight"] == 0)


def test_fail_next_fails_exactly_that_many_calls(client: httpx.Client) -> None:
    assert client.patch("/_sim/models/patchable", json={"fail_next": 2}).json()["fail_next"] == 2
    statuses = [sim_chat(client, "patchable").status_code for _ in range(4)]
    assert statuses == [500, 500, 200, 200]
    assert model_stats(client, "patchable")["faults"] == {"error": 2}


def test_patch_changes_behaviour_at_runtime(client: httpx.Client) -> None:
    client.patch("/_sim/models/patchable", json={"rate_limit_rate": 1.0}).raise_for_status()
    try:
        assert sim_chat(client, "patchable").status_code == 429
    finally:
        client.patch("/_sim/models/patchable", json={"rate_limit_rate": 0.0}).raise_for_status()
    assert sim_chat(client, "patchable").status_code == 200


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        ("/_sim/models/nobody", {"error_rate": 0.5}, 404),
        ("/_sim/models/patchable", {"colour": "red"}, 400),
        ("/_sim/models/patchable", {"error_rate": 0.8, "hang_rate": 0.8}, 400),
        ("/_sim/models/patchable", {"name": "renamed"}, 400),
        ("/_sim/models/patchable", [1, 2], 400),
    ],
)
def test_patch_rejects_bad_changes(client: httpx.Client, path: str, body: Any, status: int) -> None:
    response = client.patch(path, json=body)
    assert response.status_code == status
    assert "message" in response.json()["error"]


def test_stats_count_calls_and_concurrency_and_reset_zeroes_them(
    faulty_sim: SimulatorServer, client: httpx.Client
) -> None:
    for _ in range(3):
        sim_chat(client, "beta")
    sim_chat(client, "gamma")
    stats = client.get("/_sim/stats").json()
    assert stats["total_calls"] == 4
    assert stats["models"]["beta"]["calls"] == 3
    assert stats["models"]["gamma"]["calls"] == 1

    async def hang_three_then_leave() -> None:
        async with httpx.AsyncClient(base_url=faulty_sim.root_url) as http:
            body = {"model": "hanging", "messages": QUESTION}
            calls = [asyncio.ensure_future(http.post("/v1/chat/completions", json=body)) for _ in range(3)]
            deadline = time.monotonic() + WAIT_LIMIT_S
            while (await http.get("/_sim/stats")).json()["models"]["hanging"]["in_flight"] < 3:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.01)
            for call in calls:
                call.cancel()
            await asyncio.gather(*calls, return_exceptions=True)

    asyncio.run(hang_three_then_leave())
    wait_until(lambda: model_stats(client, "hanging")["in_flight"] == 0)
    assert model_stats(client, "hanging")["max_in_flight"] == 3
    reset = client.post("/_sim/reset").json()
    assert reset["total_calls"] == 0
    assert reset["models"]["beta"] == {"calls": 0, "in_flight": 0, "max_in_flight": 0, "faults": {}}
