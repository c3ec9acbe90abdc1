"""Upstream faults from the simulator (errors, 429s, hangs, malformed bodies, streams cut mid-way)
against both routes, streaming or not, through the real service; and Redis stopped mid-run."""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
import orjson
import pytest

from router.redis_server import EmbeddedRedis
from router.simulator.runner import SimulatorServer
from tests.conftest import entry, sim_stats
from tests.test_chat_api import logged_event, price

PROPOSERS = ("prop-a", "prop-b", "prop-c")
FAST_RETRIES = {"backoff_base_s": 0.0, "max_attempts": 3}


def patch(sim: SimulatorServer, model: str, **changes: Any) -> None:
    httpx.patch(f"{sim.root_url}/_sim/models/{model}", json=changes, timeout=5).raise_for_status()


def ask(
    base: str, route: str, stream: bool = False, text: str = "Explain the Krebs cycle.", **body: Any
) -> httpx.Response:
    payload = {"model": "moa-router", "messages": [{"role": "user", "content": text}], "stream": stream, **body}
    return httpx.post(f"{base}/v1/chat/completions", json=payload, headers={"x-moa-route": route}, timeout=30)


def sse_events(response: httpx.Response) -> list[Any]:
    events: list[Any] = []
    for line in response.text.splitlines():
        if line.startswith("data: "):
            data = line[len("data: ") :]
            events.append(data if data == "[DONE]" else orjson.loads(data))
    return events


def streamed_text(events: list[Any]) -> str:
    return "".join(
        choice["delta"].get("content") or ""
        for event in events
        if isinstance(event, dict)
        for choice in event.get("choices", ())
    )


def finished(events: list[Any]) -> bool:
    """Whether a chunk declares the answer complete."""
    return any(
        choice.get("finish_reason") in ("stop", "length")
        for event in events
        if isinstance(event, dict)
        for choice in event.get("choices", ())
    )


def assert_openai_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code and error["type"] == "api_error" and error["message"]
    assert response.headers["x-request-id"]


def calls(sim: SimulatorServer, model: str) -> int:
    count: int = sim_stats(sim)["models"][model]["calls"]
    return count


@pytest.fixture
def service(make_service: Any, redis_url: str) -> str:
    base: str = make_service(redis_url=redis_url, resilience=FAST_RETRIES, mixture={"proposer_deadline_s": 2.0})
    return base


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
def test_cheap_route_survives_transient_errors_by_retrying(service: str, sim: SimulatorServer, stream: bool) -> None:
    patch(sim, "cheap-1", fail_next=2)
    response = ask(service, "cheap", stream)
    assert response.status_code == 200
    assert calls(sim, "cheap-1") == 3
    if stream:
        events = sse_events(response)
        assert events[-1] == "[DONE]" and streamed_text(events)


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
def test_cheap_route_persistent_errors_are_a_502_after_bounded_retries(
    service: str, sim: SimulatorServer, stream: bool
) -> None:
    patch(sim, "cheap-1", error_rate=1.0)
    assert_openai_error(ask(service, "cheap", stream), 502, "upstream_error")
    assert calls(sim, "cheap-1") == FAST_RETRIES["max_attempts"]


def test_cheap_route_429s_are_retried_after_retry_after(make_service: Any, sim: SimulatorServer) -> None:
    base = make_service(resilience={**FAST_RETRIES, "max_attempts": 6})
    patch(sim, "cheap-1", rate_limit_rate=0.3, retry_after_s=0.0)
    statuses = [ask(base, "cheap", text=f"question {i}").status_code for i in range(12)]
    faults = sim_stats(sim)["models"]["cheap-1"]["faults"]
    assert faults.get("rate_limit", 0) > 0  # 429s happened, and the retries hid them
    assert statuses == [200] * 12


def test_persistent_429s_end_in_a_5xx(service: str, sim: SimulatorServer) -> None:
    patch(sim, "cheap-1", rate_limit_rate=1.0, retry_after_s=0.0)
    response = ask(service, "cheap")
    assert_openai_error(response, 503, "upstream_rate_limited")
    assert "rate-limited" in response.json()["error"]["message"]


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
def test_a_hanging_cheap_model_times_out_without_retry(make_service: Any, sim: SimulatorServer, stream: bool) -> None:
    base = make_service(cheap=entry(sim.base_url, "cheap-1", timeout_s=0.5), resilience=FAST_RETRIES)
    patch(sim, "cheap-1", hang_rate=1.0)
    assert_openai_error(ask(base, "cheap", stream), 504, "upstream_timeout")
    assert calls(sim, "cheap-1") == 1


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
def test_a_malformed_cheap_answer_is_a_502_not_a_crash(service: str, sim: SimulatorServer, stream: bool) -> None:
    patch(sim, "cheap-1", malformed_rate=1.0)
    assert_openai_error(ask(service, "cheap", stream), 502, "upstream_error")
    assert calls(sim, "cheap-1") == 1  # a malformed answer is not retried


def test_a_cheap_stream_cut_mid_way_ends_with_an_error_event(service: str, sim: SimulatorServer) -> None:
    patch(sim, "cheap-1", drop_stream_rate=1.0)
    response = ask(service, "cheap", stream=True)
    assert response.status_code == 200  # the stream had started
    events = sse_events(response)
    assert streamed_text(events)  # part of the answer arrived
    errors = [event["error"] for event in events if isinstance(event, dict) and "error" in event]
    assert errors and errors[0]["code"] == "upstream_error"
    assert not finished(events)
    assert calls(sim, "cheap-1") == 1  # text was sent: never retried


@pytest.mark.parametrize(
    ("route", "model", "role"), [("cheap", "cheap-1", "cheap"), ("mixture", "agg-1", "aggregator")]
)
def test_a_stream_cut_mid_way_is_logged_with_what_the_upstream_billed(
    make_service: Any, sim: SimulatorServer, redis_url: str, route: str, model: str, role: str
) -> None:
    prefix = f"t{uuid.uuid4().hex[:10]}"
    base = make_service(redis_url=redis_url, redis_prefix=prefix, resilience=FAST_RETRIES)
    patch(sim, model, drop_stream_rate=1.0)
    response = ask(base, route, stream=True)
    assert response.status_code == 200 and streamed_text(sse_events(response))
    event = logged_event(redis_url, prefix, response.headers["x-request-id"])
    assert event is not None and (event["status"], event["error"]) == (502, "upstream_stream_error")
    # The upstream billed the prompt and the half answer it sent: the failed call is logged with both,
    # estimated (its usage would have come at the end) and priced as that model.
    failed = [call for call in event["calls"] if call["status"] == "error"]
    assert [(call["model"], call["role"], call["error"]) for call in failed] == [
        (f"openai/{model}", role, "connection")
    ]
    assert failed[0]["prompt_tokens"] > 0 and failed[0]["completion_tokens"] > 0
    assert failed[0]["cost_usd"] == pytest.approx(price(model, failed[0])) and failed[0]["cost_usd"] > 0
    assert event["cost_usd"] >= failed[0]["cost_usd"]


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
@pytest.mark.parametrize("fault", ["error_rate", "rate_limit_rate", "hang_rate", "malformed_rate"])
def test_the_mixture_answers_when_one_proposer_fails(
    service: str, sim: SimulatorServer, fault: str, stream: bool
) -> None:
    patch(sim, "prop-b", **{fault: 1.0, "retry_after_s": 0.0})
    response = ask(service, "mixture", stream)
    assert response.status_code == 200, response.text
    assert response.headers["x-moa-route"] == "mixture"
    text = streamed_text(sse_events(response)) if stream else response.json()["choices"][0]["message"]["content"]
    assert text
    assert calls(sim, "agg-1") == 1


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
def test_the_mixture_below_quorum_is_a_502(service: str, sim: SimulatorServer, stream: bool) -> None:
    for name in ("prop-a", "prop-b"):
        patch(sim, name, error_rate=1.0)
    assert_openai_error(ask(service, "mixture", stream), 502, "mixture_quorum_failed")
    assert calls(sim, "agg-1") == 0


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
def test_a_failed_aggregator_falls_back_to_a_proposer_answer(service: str, sim: SimulatorServer, stream: bool) -> None:
    patch(sim, "agg-1", malformed_rate=1.0)
    response = ask(service, "mixture", stream)
    assert response.status_code == 200
    if stream:  # the headers went out before the aggregator failed; the proposer's answer follows
        events = sse_events(response)
        assert streamed_text(events) and finished(events)
    else:
        assert response.headers["x-moa-fallback"] == "proposer"
        assert response.json()["choices"][0]["message"]["content"]


def test_a_mixture_stream_cut_mid_way_ends_with_an_error_event(service: str, sim: SimulatorServer) -> None:
    patch(sim, "agg-1", drop_stream_rate=1.0)
    response = ask(service, "mixture", stream=True)
    assert response.status_code == 200
    events = sse_events(response)
    assert streamed_text(events)  # the aggregator's first half arrived
    # The answer is never presented as complete. (The cheap route also sends an error event; the
    # mixture route does not yet: see the report of issue 8.)
    assert not finished(events)


def test_a_cooled_down_model_sends_its_traffic_to_its_fallback(make_service: Any, sim: SimulatorServer) -> None:
    cheap = entry(sim.base_url, "cheap-1", fallback=entry(sim.base_url, "judge-1"))
    base = make_service(cheap=cheap, resilience={**FAST_RETRIES, "max_attempts": 1, "failure_threshold": 2})
    patch(sim, "cheap-1", error_rate=1.0)
    responses = [ask(base, "cheap", text=f"q{i}") for i in range(6)]
    assert [r.status_code for r in responses] == [200] * 6
    assert {r.json()["model"] for r in responses} == {"openai/judge-1"}
    assert calls(sim, "cheap-1") == 2  # after two failures the model is cooled down: not called again
    assert calls(sim, "judge-1") == 6
    # A stream names the model that answers it too, in every chunk.
    events = [event for event in sse_events(ask(base, "cheap", stream=True, text="q7")) if isinstance(event, dict)]
    assert streamed_text(events) and {event["model"] for event in events} == {"openai/judge-1"}


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
def test_an_aggregation_by_the_aggregators_fallback_entry_is_named_as_it(
    make_service: Any, sim: SimulatorServer, stream: bool
) -> None:
    aggregator = entry(sim.base_url, "agg-1", fallback=entry(sim.base_url, "judge-1"))
    base = make_service(aggregator=aggregator, resilience={**FAST_RETRIES, "max_attempts": 1})
    patch(sim, "agg-1", error_rate=1.0)
    response = ask(base, "mixture", stream)
    assert response.status_code == 200 and "x-moa-fallback" not in response.headers  # aggregated, by judge-1
    if stream:
        events = [event for event in sse_events(response) if isinstance(event, dict)]
        assert streamed_text(events) and {event["model"] for event in events} == {"openai/judge-1"}
    else:
        assert response.json()["model"] == "openai/judge-1"
    assert calls(sim, "judge-1") == 1


def test_an_aggregators_fallback_entry_too_slow_to_start_is_named_in_the_log(
    make_service: Any, sim: SimulatorServer, redis_url: str
) -> None:
    prefix = f"t{uuid.uuid4().hex[:10]}"
    aggregator = entry(sim.base_url, "agg-1", fallback=entry(sim.base_url, "judge-1"))
    base = make_service(
        redis_url=redis_url,
        redis_prefix=prefix,
        aggregator=aggregator,
        resilience={**FAST_RETRIES, "max_attempts": 1},
        limits={"request_timeout_s": 1.5},
        mixture={"proposer_deadline_s": 1.0},
    )
    patch(sim, "agg-1", error_rate=1.0)
    patch(sim, "judge-1", ttft_s=10.0)
    response = ask(base, "mixture", stream=True)
    assert response.status_code == 200 and response.headers["x-moa-fallback"] == "proposer"
    event = logged_event(redis_url, prefix, response.headers["x-request-id"])
    assert event is not None
    aggregating = [(c["model"], c["status"], c["error"]) for c in event["calls"] if c["role"] == "aggregator"]
    assert aggregating == [("openai/judge-1", "error", "timeout")]  # was logged as agg-1


def test_redis_stopped_and_restarted_mid_run(own_redis: EmbeddedRedis, make_service: Any) -> None:
    # own_redis comes first so that it is torn down after the service, which flushes to it at shutdown.
    base = make_service(redis_url=own_redis.url, auth={"requests_per_minute": 1000, "tokens_per_minute": 10_000_000})
    deterministic = {"temperature": 0}
    assert ask(base, "cheap", **deterministic).status_code == 200
    assert ask(base, "cheap", **deterministic).headers["x-moa-cache"] == "hit"
    own_redis.stop()
    during = [ask(base, "cheap", text=f"while down {i}", **deterministic) for i in range(5)]
    assert [r.status_code for r in during] == [200] * 5
    assert {r.headers["x-moa-cache"] for r in during} == {"bypass"}
    own_redis.start()
    deadline = time.monotonic() + 10
    after = [ask(base, "cheap", **deterministic)]
    while after[-1].headers["x-moa-cache"] != "hit" and time.monotonic() < deadline:
        time.sleep(0.1)  # the cache skips Redis for a moment after a failure, then tries again
        after.append(ask(base, "cheap", **deterministic))
    assert {r.status_code for r in after} == {200}
    assert after[-1].headers["x-moa-cache"] == "hit"  # the entry stored before the stop, found again


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
def test_a_rate_limited_upstream_is_a_503_with_its_wait(make_service: Any, sim: SimulatorServer, stream: bool) -> None:
    # The router's upstream quota ran out, not the client's: a 503 the client may retry after the
    # upstream's wait (a 502 without retry-after told it neither).
    base = make_service(resilience={**FAST_RETRIES, "max_attempts": 1})
    patch(sim, "cheap-1", rate_limit_rate=1.0, retry_after_s=2.5)
    response = ask(base, "cheap", stream)
    assert response.status_code == 503 and response.headers["retry-after"] == "3"
    assert response.json()["error"]["code"] == "upstream_rate_limited"
    assert "x-should-retry" not in response.headers
