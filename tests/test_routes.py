"""What a client that leaves mid-stream still cost: the estimate of the call it cut off."""

from __future__ import annotations

from router.config import ModelEntry
from router.mixture import CallRecord
from router.prompts import with_candidates
from router.providers.base import CompletionRequest, Usage
from router.providers.pricing import estimate_prompt_tokens
from router.providers.registry import ProviderSet
from router.routes import RouteResult, abandoned_call, timed_out_call
from tests.test_mixture import FakeProvider

PRICE_IN, PRICE_OUT = 1e-6, 2e-6
REQUEST = CompletionRequest([{"role": "user", "content": "x" * 400}])  # 100 tokens by the estimate


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


def test_the_cut_off_single_model_is_billed_for_its_prompt_and_what_was_sent() -> None:
    call = abandoned_call("cheap", REQUEST, providers(), RouteResult(), "y" * 80, 0.5)
    assert call is not None
    assert (call.model, call.role, call.status, call.error) == ("openai/cheap", "cheap", "late", "client_disconnected")
    assert call.usage == Usage(100, 20)
    assert call.cost_usd == 100 * PRICE_IN + 20 * PRICE_OUT and call.latency_s == 0.5


def test_the_cut_off_aggregator_is_billed_for_what_it_was_shown() -> None:
    # Layer 2's answer came from a layer that missed its quorum: the aggregator was shown layer 1's.
    result = RouteResult(calls=[proposer(1, 500), proposer(2, 30)])
    shown = CompletionRequest(with_candidates(REQUEST.messages, ["z" * 2000]))
    result.meter.start(providers().aggregator.entry, shown)
    call = abandoned_call("mixture", REQUEST, providers(), result, "y" * 8, 2.0)
    assert call is not None and (call.model, call.role) == ("openai/agg", "aggregator")
    assert estimate_prompt_tokens(shown) > 100 + 500 and call.usage == Usage(estimate_prompt_tokens(shown), 2)


def test_nothing_is_added_when_the_call_finished_or_a_proposer_answer_was_streaming() -> None:
    finished = RouteResult(calls=[CallRecord("openai/cheap", "cheap", "ok", 1.0, Usage(100, 20), 0.1)])
    assert abandoned_call("cheap", REQUEST, providers(), finished, "y", 1.0) is None
    assert abandoned_call("mixture", REQUEST, providers(), RouteResult(fallback="proposer"), "y", 1.0) is None


def test_the_cut_off_call_is_priced_as_the_fallback_that_was_streaming() -> None:
    fallback = ModelEntry(model="openai/backup", input_cost_per_token=5e-6, output_cost_per_token=7e-6)
    for route, role in (("cheap", "cheap"), ("mixture", "aggregator")):
        result = RouteResult()
        result.meter.entry = fallback  # the primary failed before its first delta: its fallback answered
        call = abandoned_call(route, REQUEST, providers(), result, "y" * 80, 0.5)
        assert call is not None and (call.model, call.role) == ("openai/backup", role)
        assert call.usage == Usage(100, 20) and call.cost_usd == 100 * 5e-6 + 20 * 7e-6


def test_a_call_cut_off_by_the_request_timeout() -> None:
    set_ = providers()
    cheap = timed_out_call("cheap", set_, RouteResult(), 0.6)
    assert cheap is not None and (cheap.model, cheap.role, cheap.status, cheap.error) == (
        "openai/cheap",
        "cheap",
        "error",
        "timeout",
    )
    assert cheap.latency_s == 0.6
    # The mixture: only once its aggregator was called (the meter says so); proposers are logged apart.
    assert timed_out_call("mixture", set_, RouteResult(), 0.6) is None
    aggregating = RouteResult()
    aggregating.meter.start(set_.aggregator.entry, REQUEST)
    call = timed_out_call("mixture", set_, aggregating, 0.6)
    assert call is not None and (call.model, call.role) == ("openai/agg", "aggregator")
    finished = RouteResult(calls=[CallRecord("openai/cheap", "cheap", "ok", 1.0, Usage(100, 20), 0.1)])
    assert timed_out_call("cheap", set_, finished, 0.6) is None
