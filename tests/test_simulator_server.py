"""The simulator as an OpenAI-compatible server: its errors for bad requests, its API key, its model list,
the official client against it, a clean stop, and `moa-router simulate`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import orjson
import pytest

from router.redis_server import free_port
from router.simulator import SimulatorServer
from router.simulator.answers import count_tokens
from tests.support.simulator import (
    QUESTION,
    WAIT_LIMIT_S,
    answer_text,
    client,
    faulty_fleet,
    faulty_sim,
    sim_chat,
    wait_until,
)

__all__ = ["client", "faulty_sim"]  # fixtures, used by name


def test_unknown_model_is_404(client: httpx.Client) -> None:
    response = sim_chat(client, "gpt-nonexistent")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "model_not_found"


@pytest.mark.parametrize(
    "content",
    [
        b"{not json",
        b"[]",
        orjson.dumps({"model": "alpha"}),
        orjson.dumps({"model": "alpha", "messages": []}),
        orjson.dumps({"model": "alpha", "messages": [{"role": "wizard", "content": "hi"}]}),
        orjson.dumps({"model": "alpha", "messages": [{"role": "user", "content": 5}]}),
        orjson.dumps({"model": "alpha", "messages": QUESTION, "stream": "yes"}),
        orjson.dumps({"model": "alpha", "messages": QUESTION, "n": 2}),
        orjson.dumps({"model": "alpha", "messages": QUESTION, "max_tokens": 0}),
        orjson.dumps({"messages": QUESTION}),
    ],
)
def test_bad_bodies_are_400(client: httpx.Client, content: bytes) -> None:
    response = client.post("/v1/chat/completions", content=content, headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_api_key_is_enforced_when_configured() -> None:
    with SimulatorServer(faulty_fleet(api_key="s3cret")) as server, httpx.Client(base_url=server.root_url) as http:
        assert sim_chat(http, "alpha").status_code == 401
        http.headers["authorization"] = "Bearer wrong"
        assert sim_chat(http, "alpha").status_code == 401
        http.headers["authorization"] = "Bearer s3cret"
        assert sim_chat(http, "alpha").status_code == 200


def test_models_endpoint_lists_the_fleet(client: httpx.Client) -> None:
    body = client.get("/v1/models").json()
    assert body["object"] == "list"
    assert [m["id"] for m in body["data"]] == [m.name for m in faulty_fleet().models]


def test_official_openai_client_works_streamed_and_not(faulty_sim: SimulatorServer) -> None:
    import openai
    from openai.types.chat import ChatCompletionMessageParam

    question: list[ChatCompletionMessageParam] = [{"role": "user", "content": QUESTION[0]["content"]}]
    with openai.OpenAI(base_url=faulty_sim.base_url, api_key="anything", max_retries=0) as oai:
        completion = oai.chat.completions.create(model="alpha", messages=question)
        assert completion.usage is not None
        content = completion.choices[0].message.content or ""
        assert completion.usage.completion_tokens == count_tokens(content)
        stream = oai.chat.completions.create(
            model="alpha",
            messages=question,
            stream=True,
            stream_options={"include_usage": True},
        )
        pieces: list[str] = []
        usage = None
        for chunk in stream:
            pieces.extend(choice.delta.content or "" for choice in chunk.choices)
            usage = chunk.usage or usage
        assert "".join(pieces) == content
        assert usage is not None
        assert usage.total_tokens == completion.usage.total_tokens
        with pytest.raises(openai.RateLimitError):
            oai.chat.completions.create(model="limited", messages=question)


def test_stop_releases_hanging_calls_and_ends_the_thread() -> None:
    threads_before = set(threading.enumerate())
    server = SimulatorServer(faulty_fleet())
    server.start()
    outcome: list[BaseException | int] = []

    def call() -> None:
        try:
            outcome.append(
                httpx.post(
                    f"{server.base_url}/chat/completions",
                    json={"model": "hanging", "messages": QUESTION},
                    timeout=WAIT_LIMIT_S * 3,
                ).status_code
            )
        except httpx.HTTPError as exc:
            outcome.append(exc)

    caller = threading.Thread(target=call)
    caller.start()
    wait_until(lambda: server.state.stats()["in_flight"] == 1)
    base_url = server.base_url
    server.stop()
    caller.join(timeout=WAIT_LIMIT_S)
    assert not caller.is_alive()
    assert outcome and outcome[0] != 200
    assert set(threading.enumerate()) <= threads_before
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{base_url}/models")


def test_simulate_command_serves_until_interrupted() -> None:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    command = [sys.executable, "-m", "router", "simulate", "--port", str(port), "--latency-scale", "0"]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as http:

            def ready() -> bool:
                try:
                    return http.get("/v1/models").status_code == 200
                except httpx.TransportError:
                    assert process.poll() is None, process.stderr.read() if process.stderr else ""
                    return False

            wait_until(ready)
            assert answer_text(sim_chat(http, "sim-mini")) != ""
    finally:
        process.send_signal(signal.SIGINT)
        stdout, _ = process.communicate(timeout=WAIT_LIMIT_S)
    assert process.returncode == 0
    assert f"127.0.0.1:{port}/v1".encode() in stdout
