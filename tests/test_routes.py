"""The calls a route left unfinished, still logged: the one a client cut off by leaving mid-stream (and
what it cost), and the one the request's timeout cut off; unit cases, then through the service."""

from __future__ import annotations

import uuid

import httpx
import pytest

from router.config import ModelEntry
from router.mixture import CallRecord
from router.prompts import with_candidates
from router.providers.base import CompletionRequest, Usage
from router.providers.pricing import estimate_prompt_tokens
from router.providers.registry import ProviderSet
from router.routes import RouteResult, abandoned_call, call_latency, stand_in, timed_out_call
from router.simulator.runner import SimulatorServer
from tests.conftest import entry
from tests.test_chat_api import ASK, Service, chat, logged_event, patch_model
from tests.test_mixture import FakeProvider

PRICE_IN, PRICE_OUT = 1e-6, 2e-6
REQUEST = CompletionRequest([{"role": "user", "content": "x" * 400}])  # 100 tokens by the estimate
BEGAN = 1000.0  # a route's start on the perf_counter clock


class PricedProvider(FakeProvider):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self._entry = ModelEntry(model=f"openai/{name}", input_cost_per_token=PRICE_IN, output_cost_per_token=PRICE_OUT)


def providers() -> ProviderSet:
    cheap, aggregator = PricedProvider("cheap"), PricedProvider("agg")
    proposers = (PricedProvider("a"), PricedProvider("b"))
    return ProviderSet(cheap=cheap, proposers=proposers, aggregator=aggregator, judge=cheap, strong=aggregator)


def proposer(layer: int, completion_tokens: int, status: str = "ok") -> CallRecord:
    return CallRecord("openai/a", "proposer", status, 1.0, Usage(100, completion_tokens), 0.1, layer)  # type: ignore[arg-type]


def test_a_stand_in_answer_is_named() -> None:
    fleet = providers()
    own, entry_answered = RouteResult(model=fleet.cheap.name), RouteResult(model="openai/backup")
    assert stand_in("cheap", fleet, own) is None
    assert stand_in("cheap", fleet, entry_answered) == "entry"  # a fallback entry answered for the cheap model
    assert stand_in("mixture", fleet, RouteResult(model=fleet.aggregator.name)) is None
    assert stand_in("mixture", fleet, RouteResult(model="openai/backup")) is None  # it aggregated the proposers
    assert stand_in("mixture", fleet, RouteResult(model="openai/a", fallback="proposer")) == "proposer"


def test_the_cut_off_single_model_is_billed_for_its_prompt_and_what_was_sent() -> None:
    call = abandoned_call("cheap", REQUEST, providers(), RouteResult(started=BEGAN), "y" * 80, BEGAN + 0.5)
    assert call is not None
    assert (call.model, call.role, call.status, call.error) == ("openai/cheap", "cheap", "late", "client_disconnected")
    assert call.usage == Usage(100, 20)
    assert call.cost_usd == 100 * PRICE_IN + 20 * PRICE_OUT and call.latency_s == 0.5


def test_the_cut_off_aggregator_is_billed_for_what_it_was_shown() -> None:
    # Layer 2's answer came from a layer that missed its quorum: the aggregator was shown layer 1's.
    result = RouteResult(calls=[proposer(1, 500), proposer(2, 30)], started=BEGAN)
    shown = CompletionRequest(with_candidates(REQUEST.messages, ["z" * 2000]))
    result.meter.start(providers().aggregator.entry, shown, at=BEGAN + 1.5)  # after its proposers
    call = abandoned_call("mixture", REQUEST, providers(), result, "y" * 8, BEGAN + 2.0)
    assert call is not None and (call.model, call.role) == ("openai/agg", "aggregator")
    assert call.latency_s == 0.5  # its own time, not the proposers' too
    assert estimate_prompt_tokens(shown) > 100 + 500 and call.usage == Usage(estimate_prompt_tokens(shown), 2)


def test_nothing_is_added_when_the_call_finished_or_a_proposer_answer_was_streaming() -> None:
    finished = RouteResult(calls=[CallRecord("openai/cheap", "cheap", "ok", 1.0, Usage(100, 20), 0.1)])
    assert abandoned_call("cheap", REQUEST, providers(), finished, "y", BEGAN) is None
    assert abandoned_call("mixture", REQUEST, providers(), RouteResult(fallback="proposer"), "y", BEGAN) is None


def test_the_cut_off_call_is_priced_as_the_fallback_that_was_streaming() -> None:
    fallback = ModelEntry(model="openai/backup", input_cost_per_token=5e-6, output_cost_per_token=7e-6)
    for route, role in (("cheap", "cheap"), ("mixture", "aggregator")):
        result = RouteResult(started=BEGAN)
        result.meter.start(fallback, REQUEST, at=BEGAN + 0.2)  # the primary failed before its first delta
        call = abandoned_call(route, REQUEST, providers(), result, "y" * 80, BEGAN + 0.5)
        assert call is not None and (call.model, call.role) == ("openai/backup", role)
        assert call.usage == Usage(100, 20) and call.cost_usd == 100 * 5e-6 + 20 * 7e-6
        assert call.latency_s == pytest.approx(0.3)


def test_a_call_cut_off_by_the_request_timeout() -> None:
    set_ = providers()
    cheap = timed_out_call("cheap", set_, RouteResult(started=BEGAN), BEGAN + 0.6)
    assert cheap is not None and (cheap.model, cheap.role, cheap.status, cheap.error) == (
        "openai/cheap",
        "cheap",
        "error",
        "timeout",
    )
    assert cheap.latency_s == pytest.approx(0.6)  # cut off before its provider began: the route's time
    # The mixture: only once its aggregator was called (the meter says so); proposers are logged apart.
    assert timed_out_call("mixture", set_, RouteResult(started=BEGAN), BEGAN + 0.6) is None
    aggregating = RouteResult(started=BEGAN)
    aggregating.meter.start(set_.aggregator.entry, REQUEST, at=BEGAN + 0.4)
    call = timed_out_call("mixture", set_, aggregating, BEGAN + 0.6)
    assert call is not None and (call.model, call.role) == ("openai/agg", "aggregator")
    assert call.latency_s == pytest.approx(0.2)
    finished = RouteResult(calls=[CallRecord("openai/cheap", "cheap", "ok", 1.0, Usage(100, 20), 0.1)])
    assert timed_out_call("cheap", set_, finished, BEGAN) is None


def test_the_meter_times_an_entry_from_its_first_attempt_and_a_fallback_from_its_own() -> None:
    primary, fallback = ModelEntry(model="openai/a"), ModelEntry(model="openai/b")
    result = RouteResult(started=BEGAN)
    assert call_latency(result, BEGAN + 1.0) == 1.0  # not yet called: the route's time
    result.meter.start(primary, REQUEST, at=BEGAN + 0.1)
    result.meter.start(primary, REQUEST, at=BEGAN + 0.5)  # a retry: still the same call
    assert call_latency(result, BEGAN + 1.0) == pytest.approx(0.9)
    result.meter.start(fallback, REQUEST, at=BEGAN + 0.7)  # the fallback took over
    assert result.meter.entry is fallback and call_latency(result, BEGAN + 1.0) == pytest.approx(0.3)


def test_a_call_cut_off_by_the_request_timeout_is_named_as_the_fallback_that_took_over() -> None:
    fallback = ModelEntry(model="openai/backup")
    result = RouteResult(started=BEGAN)
    result.meter.start(fallback, REQUEST, at=BEGAN + 0.5)  # the primary failed; its fallback was answering
    call = timed_out_call("cheap", providers(), result, BEGAN + 0.75)
    assert call is not None and (call.model, call.role, call.latency_s) == ("openai/backup", "cheap", 0.25)


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
def test_a_failed_cheap_call_is_logged_with_how_long_it_took(
    make_service: Service, sim: SimulatorServer, redis_url: str, stream: bool
) -> None:
    prefix = f"t{uuid.uuid4().hex[:10]}"
    cheap = entry(sim.base_url, "cheap-1", timeout_s=0.5)
    base = make_service(redis_url=redis_url, redis_prefix=prefix, cheap=cheap)
    patch_model(sim, "cheap-1", ttft_s=10.0)
    response = chat(base, "cheap", stream=stream)
    assert response.status_code == 504 and response.json()["error"]["code"] == "upstream_timeout"
    event = logged_event(redis_url, prefix, response.headers["x-request-id"])
    assert event is not None
    [call] = event["calls"]
    assert (call["model"], call["status"], call["error"]) == ("openai/cheap-1", "error", "timeout")
    assert call["latency_s"] >= 0.45  # its own 0.5 s timeout ended it (was logged as 0); timers fire a hair early


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
def test_a_cheap_call_cut_off_by_the_request_timeout_is_logged(
    make_service: Service, sim: SimulatorServer, redis_url: str, stream: bool
) -> None:
    # The request's timeout and the call's (the same 0.6 s) race: either way the call is logged once.
    prefix = f"t{uuid.uuid4().hex[:10]}"
    base = make_service(redis_url=redis_url, redis_prefix=prefix, limits={"request_timeout_s": 0.6})
    patch_model(sim, "cheap-1", ttft_s=5.0)
    response = chat(base, "cheap", stream=stream)
    assert response.status_code == 504
    assert response.json()["error"]["code"] in ("request_timeout", "upstream_timeout")
    event = logged_event(redis_url, prefix, response.headers["x-request-id"])
    assert event is not None
    [call] = event["calls"]  # a stream cut off by the request's timeout logged none
    assert (call["model"], call["status"], call["error"]) == ("openai/cheap-1", "error", "timeout")
    assert call["latency_s"] >= 0.5


def leave_after_the_first_words(base: str, route: str) -> str:
    """Streams a cacheable question and leaves once the first words arrived; returns its request id."""
    payload = {"model": "moa-router", "messages": ASK, "temperature": 0, "stream": True}
    with httpx.stream(
        "POST", f"{base}/v1/chat/completions", json=payload, headers={"x-moa-route": route}, timeout=30
    ) as response:
        assert response.status_code == 200 and response.headers["x-moa-cache"] == "miss"
        lines = response.iter_lines()
        while "content" not in next(lines):
            pass
        return response.headers["x-request-id"]


@pytest.mark.parametrize("route", ["cheap", "mixture"])
def test_a_client_that_leaves_mid_stream_is_logged_with_what_was_spent(
    make_service: Service, sim: SimulatorServer, redis_url: str, route: str
) -> None:
    prefix = f"t{uuid.uuid4().hex[:10]}"
    base = make_service(redis_url=redis_url, redis_prefix=prefix)  # a cacheable miss: the single-flight path
    slow = "agg-1" if route == "mixture" else "cheap-1"
    patch_model(sim, slow, per_token_s=0.05)  # 40 tokens: two seconds of streaming
    # Left after the first words: the event is still written, as a 499.
    event = logged_event(redis_url, prefix, leave_after_the_first_words(base, route))
    assert event is not None
    assert event["status"] == 499 and event["error"] == "client_disconnected"
    if route == "mixture":  # the proposers answered in full before the aggregator started: paid for
        assert sorted(call["role"] for call in event["calls"] if call["status"] == "ok") == ["proposer"] * 3
    # The call the client cut off was billed for the words it generated: estimated, since its usage
    # comes only at the end of a stream.
    cut_off = [call for call in event["calls"] if call["status"] == "late"]
    assert [(call["model"], call["role"], call["error"]) for call in cut_off] == [
        (f"openai/{slow}", "aggregator" if route == "mixture" else "cheap", "client_disconnected")
    ]
    assert cut_off[0]["prompt_tokens"] > 0 and cut_off[0]["completion_tokens"] > 0
    assert cut_off[0]["cost_usd"] > 0 and event["cost_usd"] >= cut_off[0]["cost_usd"]


@pytest.mark.parametrize("route", ["cheap", "mixture"])
def test_a_client_that_leaves_a_stream_its_fallback_answers_is_logged_at_the_fallbacks_prices(
    make_service: Service, sim: SimulatorServer, sim_url: str, redis_url: str, route: str
) -> None:
    prefix = f"t{uuid.uuid4().hex[:10]}"
    role, primary = ("aggregator", "agg-1") if route == "mixture" else ("cheap", "cheap-1")
    # Prices unlike any other model's: the cost tells which model the cut-off call was priced as.
    backup = entry(sim_url, "judge-1", input_cost_per_token=7e-6, output_cost_per_token=9e-6)
    base = make_service(
        redis_url=redis_url,
        redis_prefix=prefix,
        resilience={"max_attempts": 1},
        **{role: entry(sim_url, primary, fallback=backup)},
    )
    patch_model(sim, primary, error_rate=1.0)  # fails before its first words: the fallback streams instead
    patch_model(sim, "judge-1", per_token_s=0.05)
    event = logged_event(redis_url, prefix, leave_after_the_first_words(base, route))
    assert event is not None and event["status"] == 499
    cut_off = [call for call in event["calls"] if call["status"] == "late"]
    assert [(call["model"], call["role"]) for call in cut_off] == [("openai/judge-1", role)]
    tokens_in, tokens_out = cut_off[0]["prompt_tokens"], cut_off[0]["completion_tokens"]
    assert tokens_in > 0 and tokens_out > 0
    assert cut_off[0]["cost_usd"] == pytest.approx(tokens_in * 7e-6 + tokens_out * 9e-6)


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
def test_a_fallback_cut_off_by_the_request_timeout_is_logged_as_the_fallback(
    make_service: Service, sim: SimulatorServer, sim_url: str, redis_url: str, stream: bool
) -> None:
    prefix = f"t{uuid.uuid4().hex[:10]}"
    base = make_service(
        redis_url=redis_url,
        redis_prefix=prefix,
        limits={"request_timeout_s": 0.6},
        resilience={"max_attempts": 1},
        cheap=entry(sim_url, "cheap-1", fallback=entry(sim_url, "judge-1")),
    )
    patch_model(sim, "cheap-1", error_rate=1.0)  # fails at once: its fallback takes over, and hangs
    patch_model(sim, "judge-1", ttft_s=5.0)
    response = chat(base, "cheap", stream=stream)
    # The request's timeout and the fallback's own (what is left of the same deadline) race: either way
    # the call logged is the fallback's.
    assert response.status_code == 504
    event = logged_event(redis_url, prefix, response.headers["x-request-id"])
    assert event is not None
    [call] = event["calls"]  # the primary's failure was not an answer; the fallback's call was cut off
    assert (call["model"], call["role"], call["status"], call["error"]) == (
        "openai/judge-1",
        "cheap",
        "error",
        "timeout",
    )
    assert 0.3 < call["latency_s"] <= 0.7
