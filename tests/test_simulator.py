"""The simulated provider fleet, exercised through real HTTP on loopback."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from router.simulator import (
    FleetConfig,
    SimModel,
    SimulatorServer,
    default_fleet,
    demo_model_entries,
    load_fleet,
)
from router.simulator.answers import count_tokens, find_candidates, prompt_tokens

QUESTION = [{"role": "user", "content": "How does photosynthesis convert sunlight into chemical energy?"}]
WAIT_LIMIT_S = 10.0  # an upper bound for conditions that must come true, never a measured timing


def _fleet(seed: int = 7, api_key: str | None = None) -> FleetConfig:
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


@pytest.fixture(scope="module")
def faulty_sim() -> Iterator[SimulatorServer]:
    with SimulatorServer(_fleet()) as server:
        yield server


@pytest.fixture
def client(faulty_sim: SimulatorServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=faulty_sim.root_url, timeout=WAIT_LIMIT_S) as http:
        http.post("/_sim/reset").raise_for_status()
        yield http


def _chat(
    client: httpx.Client, model: str, messages: list[dict[str, Any]] = QUESTION, /, **extra: Any
) -> httpx.Response:
    return client.post("/v1/chat/completions", json={"model": model, "messages": messages, **extra})


def _content(response: httpx.Response) -> str:
    response.raise_for_status()
    content: str = response.json()["choices"][0]["message"]["content"]
    return content


def _events(client: httpx.Client, model: str, **extra: Any) -> list[bytes]:
    """The `data:` payloads of a streamed completion, in order."""
    body = {"model": model, "messages": QUESTION, "stream": True, **extra}
    with client.stream("POST", "/v1/chat/completions", json=body) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        raw = response.read()
    frames = [frame for frame in raw.split(b"\n\n") if frame]
    assert all(frame.startswith(b"data: ") for frame in frames)
    return [frame.removeprefix(b"data: ") for frame in frames]


def _stats(client: httpx.Client, model: str) -> dict[str, Any]:
    stats: dict[str, Any] = client.get("/_sim/stats").json()["models"][model]
    return stats


def _wait_until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WAIT_LIMIT_S
    while not condition():
        assert time.monotonic() < deadline, "condition did not come true"
        time.sleep(0.01)


def test_completion_has_openai_shape_and_consistent_usage(client: httpx.Client) -> None:
    body = _chat(client, "alpha").json()
    assert body["object"] == "chat.completion"
    assert body["id"].startswith("chatcmpl-")
    assert body["model"] == "alpha"
    assert isinstance(body["created"], int)
    (choice,) = body["choices"]
    assert choice["message"]["role"] == "assistant"
    assert choice["finish_reason"] == "stop"
    usage = body["usage"]
    assert usage["completion_tokens"] == count_tokens(choice["message"]["content"])
    assert usage["completion_tokens"] >= 40
    assert usage["prompt_tokens"] == prompt_tokens(QUESTION)
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def test_stream_yields_the_same_answer_with_a_usage_chunk(client: httpx.Client) -> None:
    whole = _chat(client, "alpha").json()
    events = _events(client, "alpha", stream_options={"include_usage": True})
    assert events[-1] == b"[DONE]"
    chunks = [orjson.loads(event) for event in events[:-1]]
    assert all(chunk["object"] == "chat.completion.chunk" for chunk in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == whole["choices"][0]["message"]["content"]
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == whole["usage"]


def test_stream_without_include_usage_has_no_usage_chunk(client: httpx.Client) -> None:
    chunks = [orjson.loads(event) for event in _events(client, "beta")[:-1]]
    assert all("usage" not in chunk for chunk in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


def test_answers_are_deterministic_per_seed(client: httpx.Client) -> None:
    first, second = _content(_chat(client, "alpha")), _content(_chat(client, "alpha"))
    assert first == second
    with SimulatorServer(_fleet(seed=8)) as other, httpx.Client(base_url=other.root_url) as other_client:
        assert _content(_chat(other_client, "alpha")) != first


def test_each_model_answers_in_its_own_voice_about_the_question(client: httpx.Client) -> None:
    answers = {name: _content(_chat(client, name)) for name in ("alpha", "beta", "gamma")}
    assert len(set(answers.values())) == 3
    for answer in answers.values():
        assert "photosynthesis" in answer
    other_question = [{"role": "user", "content": "Which volcanoes erupted during the eighteenth century?"}]
    assert "volcanoes" in _content(_chat(client, "alpha", other_question))


def test_aggregation_request_names_and_merges_the_candidates(client: httpx.Client) -> None:
    proposals = [_content(_chat(client, name)) for name in ("alpha", "beta", "gamma")]
    numbered = "\n\n".join(f"Candidate {i}: {text}" for i, text in enumerate(proposals, 1))
    messages = [
        {"role": "system", "content": f"Critically merge these candidate answers.\n\n{numbered}"},
        *QUESTION,
    ]
    answer = _content(_chat(client, "maestro", messages))
    assert "3 candidate answers" in answer
    for index, proposal in enumerate(proposals, 1):
        assert f'Candidate {index} says: "{" ".join(proposal.split()[:4])}' in answer
    assert "photosynthesis" in answer


def test_plain_numbered_candidates_are_found_but_a_short_list_is_a_question() -> None:
    long_answer = "This candidate explains the topic at some length with several plain words. " * 2
    question, candidates = find_candidates([f"Question: why?\n1. {long_answer}\n2. {long_answer}"])
    assert candidates == [long_answer.strip(), long_answer.strip()]
    assert question.strip() == "Question: why?"
    _, none = find_candidates(["Compare:\n1. apples\n2. pears"])
    assert none == []


@pytest.mark.parametrize("field", ["max_tokens", "max_completion_tokens"])
def test_token_limit_stops_with_length(client: httpx.Client, field: str) -> None:
    full = _content(_chat(client, "alpha"))
    body = _chat(client, "alpha", **{field: 5}).json()
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["usage"]["completion_tokens"] == 5
    assert full.startswith(body["choices"][0]["message"]["content"])
    chunks = [
        orjson.loads(e) for e in _events(client, "alpha", stream_options={"include_usage": True}, **{field: 5})[:-1]
    ]
    assert chunks[-2]["choices"][0]["finish_reason"] == "length"
    assert chunks[-1]["usage"]["completion_tokens"] == 5


def test_a_generous_limit_changes_nothing(client: httpx.Client) -> None:
    body = _chat(client, "beta", max_tokens=10_000).json()
    assert body["choices"][0]["finish_reason"] == "stop"


def test_error_rate_gives_500_in_openai_error_shape(client: httpx.Client) -> None:
    response = _chat(client, "failing")
    assert response.status_code == 500
    assert response.json()["error"]["type"] == "server_error"
    assert _stats(client, "failing")["faults"] == {"error": 1}


def test_rate_limit_gives_429_with_retry_after(client: httpx.Client) -> None:
    response = _chat(client, "limited")
    assert response.status_code == 429
    assert response.headers["retry-after"] == "7"
    assert response.headers["retry-after-ms"] == "7000"
    assert response.json()["error"]["code"] == "rate_limit_exceeded"


def test_malformed_gives_200_with_invalid_json(client: httpx.Client) -> None:
    response = _chat(client, "garbled")
    assert response.status_code == 200
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(response.content)
    events = _events(client, "garbled")
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(events[0])


def test_dropped_stream_closes_the_connection_mid_way(client: httpx.Client) -> None:
    received: list[bytes] = []
    body = {"model": "dropping", "messages": QUESTION, "stream": True}
    with pytest.raises(httpx.RemoteProtocolError), client.stream("POST", "/v1/chat/completions", json=body) as response:
        received.extend(response.iter_bytes())
    assert b"data: " in b"".join(received)
    assert b"[DONE]" not in b"".join(received)
    assert _content(_chat(client, "dropping")) != ""  # a non-streamed call cannot be cut; it answers


def test_hang_never_answers_and_frees_the_slot_when_the_client_leaves(client: httpx.Client) -> None:
    with pytest.raises(httpx.ReadTimeout):
        client.post("/v1/chat/completions", json={"model": "hanging", "messages": QUESTION}, timeout=0.2)
    _wait_until(lambda: _stats(client, "hanging")["in_flight"] == 0)
    assert _stats(client, "hanging")["faults"] == {"hang": 1}


def test_latency_is_applied(client: httpx.Client) -> None:
    with pytest.raises(httpx.ReadTimeout):
        client.post("/v1/chat/completions", json={"model": "slow", "messages": QUESTION}, timeout=0.2)
    _wait_until(lambda: _stats(client, "slow")["in_flight"] == 0)


def test_fail_next_fails_exactly_that_many_calls(client: httpx.Client) -> None:
    assert client.patch("/_sim/models/patchable", json={"fail_next": 2}).json()["fail_next"] == 2
    statuses = [_chat(client, "patchable").status_code for _ in range(4)]
    assert statuses == [500, 500, 200, 200]
    assert _stats(client, "patchable")["faults"] == {"error": 2}


def test_patch_changes_behaviour_at_runtime(client: httpx.Client) -> None:
    client.patch("/_sim/models/patchable", json={"rate_limit_rate": 1.0}).raise_for_status()
    try:
        assert _chat(client, "patchable").status_code == 429
    finally:
        client.patch("/_sim/models/patchable", json={"rate_limit_rate": 0.0}).raise_for_status()
    assert _chat(client, "patchable").status_code == 200


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
        _chat(client, "beta")
    _chat(client, "gamma")
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
    _wait_until(lambda: _stats(client, "hanging")["in_flight"] == 0)
    assert _stats(client, "hanging")["max_in_flight"] == 3
    reset = client.post("/_sim/reset").json()
    assert reset["total_calls"] == 0
    assert reset["models"]["beta"] == {"calls": 0, "in_flight": 0, "max_in_flight": 0, "faults": {}}


def test_unknown_model_is_404(client: httpx.Client) -> None:
    response = _chat(client, "gpt-nonexistent")
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
    with SimulatorServer(_fleet(api_key="s3cret")) as server, httpx.Client(base_url=server.root_url) as http:
        assert _chat(http, "alpha").status_code == 401
        http.headers["authorization"] = "Bearer wrong"
        assert _chat(http, "alpha").status_code == 401
        http.headers["authorization"] = "Bearer s3cret"
        assert _chat(http, "alpha").status_code == 200


def test_models_endpoint_lists_the_fleet(client: httpx.Client) -> None:
    body = client.get("/v1/models").json()
    assert body["object"] == "list"
    assert [m["id"] for m in body["data"]] == [m.name for m in _fleet().models]


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
    server = SimulatorServer(_fleet())
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
    _wait_until(lambda: server.state.stats()["in_flight"] == 1)
    base_url = server.base_url
    server.stop()
    caller.join(timeout=WAIT_LIMIT_S)
    assert not caller.is_alive()
    assert outcome and outcome[0] != 200
    assert set(threading.enumerate()) <= threads_before
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{base_url}/models")


def test_fleet_loads_from_yaml_and_validates(tmp_path: Path) -> None:
    path = tmp_path / "fleet.yaml"
    path.write_text("seed: 3\nmodels:\n  - {name: m1, family: f1, output_tokens: [5, 9], error_rate: 0.2}\n")
    fleet = load_fleet(path)
    assert fleet.seed == 3
    assert fleet.models[0].output_tokens == (5, 9)
    bad_models: list[dict[str, Any]] = [
        {"name": "m", "family": "f", "error_rate": 0.6, "hang_rate": 0.6},
        {"name": "m", "family": "f", "output_tokens": [9, 5]},
        {"name": "m", "family": "f", "unknown_field": 1},
    ]
    for bad in bad_models:
        with pytest.raises(ValueError):
            FleetConfig.model_validate({"models": [bad]})
    with pytest.raises(ValueError, match="duplicate"):
        FleetConfig.model_validate({"models": [{"name": "m", "family": "a"}, {"name": "m", "family": "b"}]})


def test_default_fleet_and_demo_entries() -> None:
    fleet = default_fleet()
    entries = demo_model_entries("http://127.0.0.1:9/v1", fleet)
    assert entries["cheap"]["model"] == "openai/sim-mini"
    assert entries["cheap"]["input_cost_per_token"] == pytest.approx(0.15e-6)
    proposer_names = [e["model"].removeprefix("openai/") for e in entries["proposers"]]
    families = {m.family for m in fleet.models if m.name in proposer_names}
    assert len(families) == len(proposer_names) == 3
    for entry in [entries["cheap"], entries["aggregator"], entries["judge"], *entries["proposers"]]:
        assert entry["api_base"] == "http://127.0.0.1:9/v1"
        assert entry["output_cost_per_token"] > entry["input_cost_per_token"] * 0.99
    assert fleet.scaled(0).models[0].ttft_s == 0


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def test_simulate_command_serves_until_interrupted() -> None:
    port = _free_port()
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

            _wait_until(ready)
            assert _content(_chat(http, "sim-mini")) != ""
    finally:
        process.send_signal(signal.SIGINT)
        stdout, _ = process.communicate(timeout=WAIT_LIMIT_S)
    assert process.returncode == 0
    assert f"127.0.0.1:{port}/v1".encode() in stdout


def test_a_judge_prompt_gets_a_verdict_line(sim_url: str) -> None:
    from router.shadow import judge_messages, parse_verdict

    messages = judge_messages([{"role": "user", "content": "2+2?"}], "4", "five")
    verdicts = set()
    for attempt in range(12):
        response = httpx.post(f"{sim_url}/chat/completions", timeout=10, json={
            "model": "judge-1", "messages": [*messages, {"role": "user", "content": f"case {attempt}"}]})
        verdicts.add(parse_verdict(response.json()["choices"][0]["message"]["content"]))
    assert None not in verdicts and len(verdicts) > 1
