"""The endpoint through real HTTP against the simulated fleet: routes, concurrency, deadline, quorum,
usage and cost, and bad input."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import orjson
import pytest
import redis

from router.prompts import with_candidates
from router.simulator.runner import SimulatorServer
from tests.conftest import TEST_MODELS, sim_stats

ASK = [{"role": "user", "content": "Explain how a hash map handles collisions."}]
Service = Callable[..., str]


def chat(base: str, route: str = "auto", stream: bool = False, **body: Any) -> httpx.Response:
    payload = {"model": "moa-router", "messages": ASK, "temperature": 0, **body}
    if stream:
        payload["stream"] = True
        payload["stream_options"] = {"include_usage": True}
    return httpx.post(f"{base}/v1/chat/completions", json=payload, headers={"x-moa-route": route}, timeout=30)


def patch_model(sim: SimulatorServer, name: str, **changes: Any) -> None:
    httpx.patch(f"{sim.root_url}/_sim/models/{name}", json=changes, timeout=5).raise_for_status()


def calls_by_model(sim: SimulatorServer) -> dict[str, int]:
    return {name: m["calls"] for name, m in sim_stats(sim)["models"].items() if m["calls"]}


def direct(sim: SimulatorServer, model: str, messages: list[dict[str, Any]]) -> dict[str, Any]:
    """The same call made straight to the simulator (its answers are deterministic)."""
    response = httpx.post(
        f"{sim.base_url}/chat/completions", timeout=10, json={"model": model, "messages": messages, "temperature": 0}
    )
    body: dict[str, Any] = response.json()
    return body


def price(model: str, usage: dict[str, int]) -> float:
    _, inp, out = TEST_MODELS[model]
    return usage["prompt_tokens"] * inp + usage["completion_tokens"] * out


def test_cheap_route_makes_exactly_one_call_with_its_cost(make_service: Service, sim: SimulatorServer) -> None:
    base = make_service()
    response = chat(base, "cheap")
    assert response.status_code == 200, response.text
    assert calls_by_model(sim) == {"cheap-1": 1}
    body = response.json()
    assert response.headers["x-moa-route"] == "cheap"
    assert response.headers["x-moa-cache"] == "miss"
    assert 0 <= float(response.headers["x-moa-difficulty"]) <= 1
    assert 0 <= float(response.headers["x-moa-stakes"]) <= 1
    assert response.headers["x-request-id"] == body["id"]
    expected = direct(sim, "cheap-1", ASK)
    assert body["choices"][0]["message"]["content"] == expected["choices"][0]["message"]["content"]
    assert body["usage"] == expected["usage"]
    assert float(response.headers["x-moa-cost-usd"]) == pytest.approx(price("cheap-1", expected["usage"]), rel=1e-6)


def test_mixture_calls_each_proposer_and_the_aggregator_concurrently(
    make_service: Service, sim: SimulatorServer
) -> None:
    base = make_service()
    for name in ("prop-a", "prop-b", "prop-c"):
        patch_model(sim, name, ttft_s=0.4)
    patch_model(sim, "agg-1", ttft_s=0.2)
    started = time.perf_counter()
    response = chat(base, "mixture")
    elapsed = time.perf_counter() - started
    assert response.status_code == 200, response.text
    assert calls_by_model(sim) == {"prop-a": 1, "prop-b": 1, "prop-c": 1, "agg-1": 1}
    assert 0.6 <= elapsed < 0.4 * 3 + 0.2  # slowest proposer + aggregator, not their sum
    assert response.headers["x-moa-route"] == "mixture"
    assert response.headers["x-moa-route-reason"] == "override"

    # Usage and cost are the sums over every call, checked against the same calls made directly.
    answers = [direct(sim, name, ASK) for name in ("prop-a", "prop-b", "prop-c")]
    texts = [a["choices"][0]["message"]["content"] for a in answers]
    aggregated = direct(sim, "agg-1", with_candidates(ASK, texts))
    body = response.json()
    assert body["choices"][0]["message"]["content"] == aggregated["choices"][0]["message"]["content"]
    usages = [a["usage"] for a in answers] + [aggregated["usage"]]
    assert body["usage"]["prompt_tokens"] == sum(u["prompt_tokens"] for u in usages)
    assert body["usage"]["completion_tokens"] == sum(u["completion_tokens"] for u in usages)
    cost = sum(price(n, u) for n, u in zip(("prop-a", "prop-b", "prop-c", "agg-1"), usages, strict=True))
    assert float(response.headers["x-moa-cost-usd"]) == pytest.approx(cost, rel=1e-6)


def test_hanging_proposer_does_not_delay_past_the_deadline(make_service: Service, sim: SimulatorServer) -> None:
    base = make_service(mixture={"proposer_deadline_s": 0.5, "quorum": 2})
    patch_model(sim, "prop-c", hang_rate=1.0)
    started = time.perf_counter()
    response = chat(base, "mixture")
    assert response.status_code == 200, response.text
    assert time.perf_counter() - started < 0.5 + 1.5


def test_erroring_proposer_is_tolerated_while_quorum_holds(make_service: Service, sim: SimulatorServer) -> None:
    base = make_service()
    patch_model(sim, "prop-b", error_rate=1.0)
    response = chat(base, "mixture")
    assert response.status_code == 200, response.text


def test_below_quorum_is_a_clear_502(make_service: Service, sim: SimulatorServer) -> None:
    base = make_service()
    patch_model(sim, "prop-a", error_rate=1.0)
    patch_model(sim, "prop-b", error_rate=1.0)
    for stream in (False, True):
        response = chat(base, "mixture", stream=stream)
        assert response.status_code == 502
        error = response.json()["error"]
        assert error["code"] == "mixture_quorum_failed"
        assert error["type"] == "api_error" and "mixture" in error["message"]


def test_aggregator_failure_falls_back_to_a_proposer_answer(make_service: Service, sim: SimulatorServer) -> None:
    base = make_service()
    patch_model(sim, "agg-1", error_rate=1.0)
    response = chat(base, "mixture")
    assert response.status_code == 200
    assert response.headers["x-moa-fallback"] == "proposer"
    proposer_texts = {direct(sim, n, ASK)["choices"][0]["message"]["content"] for n in ("prop-a", "prop-b", "prop-c")}
    assert response.json()["choices"][0]["message"]["content"] in proposer_texts


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
def test_a_proposer_deadline_past_the_request_deadline_is_cut_to_it(
    make_service: Service, sim: SimulatorServer, redis_url: str, stream: bool
) -> None:
    # The proposers' deadline is longer than the request's: the layer is cut at the request's deadline
    # less the fallback margin, so a hung proposer ends in a proposer's answer, not a 504.
    prefix = f"t{uuid.uuid4().hex[:10]}"
    limits, mixture = {"request_timeout_s": 1.5}, {"proposer_deadline_s": 5.0}
    base = make_service(redis_url=redis_url, redis_prefix=prefix, limits=limits, mixture=mixture)
    patch_model(sim, "prop-c", ttft_s=10.0)
    response = chat(base, "mixture", stream=stream)
    assert response.status_code == 200, response.text
    assert response.headers["x-moa-fallback"] == "proposer"
    event = logged_event(redis_url, prefix, response.headers["x-request-id"])
    assert event is not None and event["status"] == 200 and event["fallback"] == "proposer"
    statuses = dict(sorted((call["model"], call["status"]) for call in event["calls"]))
    # Each call once; no time was left to call the aggregator. The hung one was cut by the layer's
    # deadline ("late") or by its own timeout, which is the same instant ("error").
    assert len(event["calls"]) == 3 and statuses.pop("openai/prop-c") in ("late", "error")
    assert statuses == {"openai/prop-a": "ok", "openai/prop-b": "ok"}
    assert event["cost_usd"] > 0


def test_layers_that_cannot_all_fit_the_request_deadline_still_end_in_the_aggregators_answer(
    make_service: Service, sim: SimulatorServer, redis_url: str
) -> None:
    # Three layers of a 0.5 s proposer deadline fill the whole 1.5 s request: a hung proposer used to
    # leave the aggregator no time. Now the later layers get what is left less one proposer deadline
    # kept for the aggregator, so layer 3 has none and the aggregator answers from layer 2's answers.
    prefix = f"t{uuid.uuid4().hex[:10]}"
    limits, mixture = {"request_timeout_s": 1.5}, {"proposer_deadline_s": 0.5, "layers": 3}
    base = make_service(redis_url=redis_url, redis_prefix=prefix, limits=limits, mixture=mixture)
    patch_model(sim, "prop-c", ttft_s=10.0)
    response = chat(base, "mixture")
    assert response.status_code == 200, response.text
    assert "x-moa-fallback" not in response.headers
    event = logged_event(redis_url, prefix, response.headers["x-request-id"])
    assert event is not None and event["status"] == 200 and event["fallback"] is None
    answered = sorted((call["layer"], call["model"]) for call in event["calls"] if call["status"] == "ok")
    assert answered == [
        (0, "openai/agg-1"),
        (1, "openai/prop-a"),
        (1, "openai/prop-b"),
        (2, "openai/prop-a"),
        (2, "openai/prop-b"),
    ]


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
def test_an_aggregator_slower_than_the_request_timeout_falls_back_to_a_proposer(
    make_service: Service, sim: SimulatorServer, redis_url: str, stream: bool
) -> None:
    prefix = f"t{uuid.uuid4().hex[:10]}"
    limits, mixture = {"request_timeout_s": 1.5}, {"proposer_deadline_s": 1.0}
    base = make_service(redis_url=redis_url, redis_prefix=prefix, limits=limits, mixture=mixture)
    patch_model(sim, "agg-1", ttft_s=10.0)
    response = chat(base, "mixture", stream=stream)
    assert response.status_code == 200, response.text  # not the request timeout's 504
    assert response.headers["x-moa-fallback"] == "proposer"
    proposer_texts = {direct(sim, n, ASK)["choices"][0]["message"]["content"] for n in ("prop-a", "prop-b", "prop-c")}
    if stream:
        events = _sse(response)
        text = "".join(e["choices"][0]["delta"].get("content") or "" for e in events if e["choices"])
    else:
        text = response.json()["choices"][0]["message"]["content"]
    assert text in proposer_texts
    event = logged_event(redis_url, prefix, response.headers["x-request-id"])
    assert event is not None and event["status"] == 200
    assert event["fallback"] == "proposer"
    aggregator = [call for call in event["calls"] if call["model"] == "openai/agg-1"]
    assert [(call["status"], call["error"]) for call in aggregator] == [("error", "timeout")]


def test_an_aggregator_stream_that_started_in_time_is_not_cut_off_by_the_fallback_margin(
    make_service: Service, sim: SimulatorServer, redis_url: str
) -> None:
    # Only the first delta races the deadline less the margin: once text is sent no fallback is
    # possible, so the rest of the stream keeps the request's own timeout (as the cheap route does).
    prefix = f"t{uuid.uuid4().hex[:10]}"
    limits, mixture = {"request_timeout_s": 1.5}, {"proposer_deadline_s": 1.0}
    base = make_service(redis_url=redis_url, redis_prefix=prefix, limits=limits, mixture=mixture)
    for name in ("prop-a", "prop-b", "prop-c"):
        patch_model(sim, name, ttft_s=0.3)
    patch_model(sim, "agg-1", per_token_s=0.008)  # the answer streams until past the deadline less the margin
    response = chat(base, "mixture", stream=True)
    events = _sse(response)
    assert not [event for event in events if "error" in event]
    event = logged_event(redis_url, prefix, response.headers["x-request-id"])
    assert event is not None and event["status"] == 200
    assert [call["status"] for call in event["calls"] if call["role"] == "aggregator"] == ["ok"]


def _sse(response: httpx.Response) -> list[dict[str, Any]]:
    events = []
    for line in response.text.splitlines():
        if line.startswith("data: ") and line != "data: [DONE]":
            events.append(orjson.loads(line[6:]))
    assert response.text.rstrip().endswith("data: [DONE]")
    return events


@pytest.mark.parametrize("route", ["cheap", "mixture"])
def test_streaming_matches_non_streaming_text_usage_and_cost(
    make_service: Service, sim: SimulatorServer, route: str
) -> None:
    base = make_service(cache={"enabled": False})  # the second request must run, not hit the cache
    plain = chat(base, route)
    streamed = chat(base, route, stream=True)
    assert streamed.status_code == 200
    assert streamed.headers["content-type"].startswith("text/event-stream")
    events = _sse(streamed)
    text = "".join(e["choices"][0]["delta"].get("content") or "" for e in events if e["choices"])
    assert len([e for e in events if e["choices"] and e["choices"][0]["delta"].get("content")]) > 2  # real deltas
    assert text == plain.json()["choices"][0]["message"]["content"]
    usage_event = events[-1]
    assert usage_event["choices"] == []
    assert usage_event["usage"] == plain.json()["usage"]
    assert usage_event["moa"]["cost_usd"] == pytest.approx(float(plain.headers["x-moa-cost-usd"]), rel=1e-6)


BAD_BODIES: list[tuple[bytes, str]] = [
    (b"{not json", "invalid_json"),
    (b"[]", "invalid_request"),
    (orjson.dumps({"model": "m"}), "invalid_request"),
    (orjson.dumps({"model": "m", "messages": "hi"}), "invalid_request"),
    (orjson.dumps({"model": "m", "messages": []}), "invalid_request"),
    (orjson.dumps({"model": "m", "messages": [{"role": "wizard", "content": "x"}]}), "invalid_request"),
    (orjson.dumps({"model": "m", "messages": [{"role": "user", "content": 5}]}), "invalid_request"),
    (orjson.dumps({"model": "m", "messages": [{"role": "assistant", "content": "x"}]}), "invalid_request"),
    (orjson.dumps({"model": "m", "messages": ASK, "n": 2}), "invalid_request"),
    (orjson.dumps({"model": "m", "messages": ASK, "temperature": "hot"}), "invalid_request"),
    (orjson.dumps({"model": "m", "messages": ASK, "tools": [{"type": "function"}]}), "unsupported_param"),
    (orjson.dumps({"model": "m", "messages": ASK, "api_base": "http://evil"}), "forbidden_param"),
    (orjson.dumps({"model": "m", "messages": ASK, "frobnicate": 1}), "invalid_request"),
    (orjson.dumps({"model": "m", "messages": ASK, "max_tokens": 10_000_000}), "max_tokens_too_large"),
]


def test_bad_input_is_a_clear_4xx(make_service: Service, sim: SimulatorServer) -> None:
    base = make_service(limits={"max_body_bytes": 4096})
    for body, code in BAD_BODIES:
        response = httpx.post(
            f"{base}/v1/chat/completions", content=body, timeout=10, headers={"content-type": "application/json"}
        )
        assert response.status_code == 400, (body, response.text)
        error = response.json()["error"]
        assert error["code"] == code, (body, error)
        assert error["message"] and error["type"] == "invalid_request_error"
    huge = orjson.dumps({"model": "m", "messages": [{"role": "user", "content": "x" * 5000}]})
    response = httpx.post(f"{base}/v1/chat/completions", content=huge, timeout=10)
    assert response.status_code == 413 and response.json()["error"]["code"] == "body_too_large"
    response = chat(base, "sideways")
    assert response.status_code == 400 and response.json()["error"]["param"] == "x-moa-route"
    assert sim_stats(sim)["total_calls"] == 0  # nothing bad reached an upstream


def test_routes_a_client_may_not_force_are_a_403(make_service: Service, sim: SimulatorServer) -> None:
    # Any client could send every request through the mixture with x-moa-route, at several times the cost.
    base = make_service(policy={"client_overrides": ["cheap"]})
    forced = chat(base, "Mixture")
    assert forced.status_code == 403
    error = forced.json()["error"]
    assert (error["type"], error["code"], error["param"]) == (
        "permission_error",
        "route_override_not_allowed",
        "x-moa-route",
    )
    assert sim_stats(sim)["total_calls"] == 0
    assert chat(base, "cheap").headers["x-moa-route"] == "cheap"  # allowed
    assert chat(base, "auto").status_code == 200  # the policy's own choice is always allowed


def test_non_ascii_digits_in_headers_are_a_400(make_service: Service, sim: SimulatorServer) -> None:
    base = make_service()
    payload = orjson.dumps({"model": "m", "temperature": 0, "messages": ASK})
    # "²" is a digit to str.isdigit but not to int(); headers arrive as latin-1.
    response = httpx.post(
        f"{base}/v1/chat/completions",
        content=payload,
        timeout=10,
        headers={"content-type": "application/json", "x-moa-cache-control": b"ttl=\xb2"},
    )
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_cache_control"
    assert sim_stats(sim)["total_calls"] == 0


def logged_event(redis_url: str, prefix: str, request_id: str, within_s: float = 10.0) -> dict[str, Any] | None:
    client = redis.Redis.from_url(redis_url)
    try:
        deadline = time.monotonic() + within_s
        while time.monotonic() < deadline:
            for _, fields in client.xrange(f"{prefix}:ledger:events"):
                event: dict[str, Any] = orjson.loads(fields[b"e"])
                if event.get("request_id") == request_id:
                    return event
            time.sleep(0.1)
        return None
    finally:
        client.close()


def test_a_bug_on_the_request_path_is_a_traced_500_and_logged_as_one(
    make_service: Service, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    prefix = f"t{uuid.uuid4().hex[:10]}"
    base = make_service(redis_url=redis_url, redis_prefix=prefix)

    def broken_policy(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr("router.api.chat.decide", broken_policy)  # a fault no client input can cause
    response = chat(base)
    assert response.status_code == 500 and response.json()["error"]["code"] == "internal_error"
    event = logged_event(redis_url, prefix, response.headers["x-request-id"])
    assert event is not None and event["status"] == 500 and event["error"] == "internal_error"


def test_unknown_paths_and_methods_use_the_error_shape(make_service: Service) -> None:
    base = make_service()
    assert httpx.get(f"{base}/v1/nope", timeout=5).json()["error"]["code"] == "not_found"
    response = httpx.get(f"{base}/v1/chat/completions", timeout=5)
    assert response.status_code == 405 and response.json()["error"]["code"] == "method_not_allowed"


def test_models_health_and_readiness(make_service: Service) -> None:
    base = make_service()
    assert httpx.get(f"{base}/healthz", timeout=5).json() == {"status": "ok"}
    ready = httpx.get(f"{base}/readyz", timeout=5)
    assert ready.status_code == 200 and ready.json()["checks"]["classifier"]
    models = httpx.get(f"{base}/v1/models", timeout=5).json()
    assert models["object"] == "list" and models["data"][0]["id"] == "moa-router"
