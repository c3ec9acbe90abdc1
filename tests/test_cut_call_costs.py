"""Upstream calls the router cut off before they reported their usage (a proposer at its deadline, a call
cut by the request's timeout or its own, an aggregator stream whose first words came too late, a call that
timed out before its fallback entry took over) are still billed upstream for the prompt they were sent:
each is logged with that prompt's tokens, estimated, and their price; a call that reported its own usage is
logged as it reported, never also estimated; a call that never left the router (it waited for a free
upstream connection) was billed nothing."""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from collections.abc import AsyncIterator

import pytest

from router.config import ModelEntry, ResilienceSettings
from router.mixture import CallRecord, MixtureResult
from router.providers.base import CallMeter, CallResult, CompletionRequest, Provider, ProviderError, StreamItem, Usage
from router.providers.pricing import estimate_prompt_tokens
from router.resilience import Breakers, ResilientProvider
from router.routes import RouteResult, abandoned_call, run_route, stream_route, timed_out_call
from router.simulator.runner import SimulatorServer
from tests.conftest import TEST_MODELS, entry
from tests.test_chat_api import ASK, Service, chat, logged_event, patch_model
from tests.test_mixture import engine
from tests.test_routes import BEGAN, PRICE_IN, REQUEST, PricedProvider, providers

PROMPT_TOKENS = estimate_prompt_tokens(REQUEST)  # 100


def by_model(calls: list[CallRecord], model: str) -> CallRecord:
    [call] = [call for call in calls if call.model == model]
    return call


async def test_a_proposer_cut_off_at_the_deadline_is_billed_for_its_prompt() -> None:
    proposers = [PricedProvider("a"), PricedProvider("b"), PricedProvider("slow")]
    proposers[2].delay = 5.0
    result = await engine(proposers, PricedProvider("agg"), quorum=2, proposer_deadline_s=0.2).run(REQUEST)  # type: ignore[arg-type]
    late = by_model(result.calls, "openai/slow")
    assert (late.status, late.error, late.usage_estimated) == ("late", "deadline", True)
    assert late.usage == Usage(PROMPT_TOKENS, 0)  # what it generated before it was cut off is unknown
    assert late.cost_usd == pytest.approx(PROMPT_TOKENS * PRICE_IN)  # was 0
    assert result.cost_usd == pytest.approx(3 * 0.01 + late.cost_usd)  # counted in the request's spend
    answered = by_model(result.calls, "openai/a")
    assert (answered.usage, answered.cost_usd, answered.usage_estimated) == (Usage(10, 5), 0.01, False)


async def test_a_proposer_cut_off_while_its_fallback_answered_is_priced_as_the_fallback() -> None:
    backup = ModelEntry(model="openai/backup", input_cost_per_token=5e-6, output_cost_per_token=7e-6)

    class FallsBack(PricedProvider):
        async def complete(self, request: CompletionRequest, meter: CallMeter | None = None) -> CallResult:
            assert meter is not None
            meter.start(self.entry, request)
            meter.start(backup, request)  # the primary failed at once; the backup hangs
            meter.sent = True
            await asyncio.sleep(5)
            raise AssertionError("cut off before this")

    proposers = [PricedProvider("a"), PricedProvider("b"), FallsBack("c")]
    result = await engine(proposers, PricedProvider("agg"), quorum=2, proposer_deadline_s=0.2).run(REQUEST)  # type: ignore[arg-type]
    late = by_model(result.calls, "openai/backup")
    assert late.cost_usd == pytest.approx(PROMPT_TOKENS * 5e-6)


async def test_a_proposer_that_answered_as_the_request_timed_out_is_logged_as_it_reported() -> None:
    outer: list[asyncio.Task[MixtureResult]] = []

    class AnswersAsTheTimeoutFires(PricedProvider):
        async def complete(self, request: CompletionRequest, meter: CallMeter | None = None) -> CallResult:
            answer = await super().complete(request, meter)
            outer[0].cancel()  # the request's timeout cancels the mixture as this answer arrives
            return answer

    slow = PricedProvider("slow")
    slow.delay = 5.0
    result = MixtureResult()
    mixture = engine([AnswersAsTheTimeoutFires("a"), slow], PricedProvider("agg"), quorum=2)
    outer.append(asyncio.create_task(mixture.run(REQUEST, result)))
    with pytest.raises(asyncio.CancelledError):
        await outer[0]
    answered = by_model(result.calls, "openai/a")
    # It reported its usage: logged with it (was "late" with no cost), and not estimated as well.
    assert (answered.status, answered.usage, answered.cost_usd) == ("ok", Usage(10, 5), 0.01)
    assert by_model(result.calls, "openai/slow").cost_usd == pytest.approx(PROMPT_TOKENS * PRICE_IN)


class SlowToStart(PricedProvider):
    """An aggregator whose stream sends nothing for `delay` seconds."""

    async def stream(self, request: CompletionRequest, meter: CallMeter | None = None):  # type: ignore[no-untyped-def]
        if meter is not None:
            meter.start(self.entry, request)
            meter.sent = True
        self.seen.append(request)
        await asyncio.sleep(self.delay)
        yield "too late"


async def test_an_aggregator_stream_cut_off_before_its_first_words_is_billed_for_what_it_was_shown() -> None:
    aggregator = SlowToStart("agg")
    aggregator.delay = 5.0
    mixture = engine([PricedProvider("a"), PricedProvider("b")], aggregator, quorum=2)
    meter = CallMeter()
    timed = CompletionRequest(REQUEST.messages, timeout_s=1.0)
    items = [item async for item in mixture.stream(timed, meter=meter)]
    result = items[-1]
    assert isinstance(result, MixtureResult) and result.fallback == "proposer"
    cut = by_model(result.calls, "openai/agg")
    shown = estimate_prompt_tokens(aggregator.seen[0])  # the question and both proposers' answers
    assert (cut.status, cut.error, cut.usage_estimated) == ("error", "timeout", True)
    assert cut.usage == Usage(shown, 0) and cut.cost_usd == pytest.approx(shown * PRICE_IN)


async def test_an_aggregator_call_that_timed_out_after_it_was_sent_is_billed_for_its_prompt() -> None:
    class TimesOut(PricedProvider):
        reached = True

        async def complete(self, request: CompletionRequest, meter: CallMeter | None = None) -> CallResult:
            if meter is not None:
                meter.start(self.entry, request)
                meter.sent = True
            raise ProviderError(self.name, "timeout", "too slow", reached_upstream=self.reached)

    aggregator = TimesOut("agg")
    mixture = engine([PricedProvider("a"), PricedProvider("b")], aggregator, quorum=2)
    result = await mixture.run(REQUEST, meter=CallMeter())
    cut = by_model(result.calls, "openai/agg")
    assert cut.usage.prompt_tokens > PROMPT_TOKENS and cut.cost_usd == pytest.approx(cut.usage.prompt_tokens * PRICE_IN)
    aggregator.reached = False  # it waited for a free upstream connection: nothing was sent, nothing billed
    result = await mixture.run(REQUEST, meter=CallMeter())
    unsent = by_model(result.calls, "openai/agg")
    assert (unsent.usage, unsent.cost_usd, unsent.usage_estimated) == (Usage(), 0.0, False)
    # Without a meter following the call, nothing says what was sent: not estimated.
    result = await mixture.run(REQUEST)
    assert by_model(result.calls, "openai/agg").cost_usd == 0.0


def test_a_call_cut_off_by_the_request_timeout_is_billed_for_the_prompt_it_was_sent() -> None:
    set_ = providers()
    started = RouteResult(started=BEGAN)
    started.meter.start(set_.cheap.entry, REQUEST, at=BEGAN + 0.1)
    started.meter.sent = True
    call = timed_out_call("cheap", set_, started, BEGAN + 0.6)
    assert call is not None and (call.status, call.error, call.usage_estimated) == ("error", "timeout", True)
    assert call.usage == Usage(PROMPT_TOKENS, 0) and call.cost_usd == pytest.approx(PROMPT_TOKENS * PRICE_IN)
    # Its provider had not begun the call: nothing was sent.
    unsent = timed_out_call("cheap", set_, RouteResult(started=BEGAN), BEGAN + 0.6)
    assert unsent is not None and (unsent.model, unsent.cost_usd, unsent.usage_estimated) == ("openai/cheap", 0, False)
    # Begun, but still waiting for a free upstream connection (the pool was full): nothing was sent either.
    waiting = RouteResult(started=BEGAN)
    waiting.meter.start(set_.cheap.entry, REQUEST, at=BEGAN + 0.1)
    for route in ("cheap", "mixture"):
        unsent = timed_out_call(route, set_, waiting, BEGAN + 0.6)
        assert unsent is not None and (unsent.model, unsent.usage, unsent.cost_usd) == ("openai/cheap", Usage(), 0)
        assert not unsent.usage_estimated


class WaitsForAConnection(PricedProvider):
    """Called, but its request waits for a free connection of the upstream pool and never leaves the router."""

    async def complete(self, request: CompletionRequest, meter: CallMeter | None = None) -> CallResult:
        if meter is not None:
            meter.start(self.entry, request)  # no `sent`: the real providers set it once they have a slot
        await asyncio.sleep(5)
        raise AssertionError("cut off before this")

    async def stream(self, request: CompletionRequest, meter: CallMeter | None = None) -> AsyncIterator[StreamItem]:
        yield await self.complete(request, meter)


def test_an_unsent_call_is_not_billed_for_a_prompt_it_never_sent() -> None:
    set_ = providers()
    waiting = RouteResult(started=BEGAN)
    waiting.meter.start(set_.cheap.entry, REQUEST, at=BEGAN + 0.1)
    left = abandoned_call("cheap", REQUEST, set_, waiting, "", BEGAN + 0.6)  # its client left before it was sent
    assert left is not None and (left.model, left.usage, left.cost_usd, left.usage_estimated) == (
        "openai/cheap",
        Usage(),
        0.0,
        False,
    )
    timed_out = ProviderError("openai/cheap", "timeout", "no answer before the deadline")  # e.g. the mixture's
    failed = CallRecord.from_error(timed_out, "cheap", 0.5, meter=waiting.meter)
    assert (failed.usage, failed.usage_estimated) == (Usage(), False)
    waiting.meter.sent = True  # once it is on the wire, the same timeout was billed
    assert CallRecord.from_error(timed_out, "cheap", 0.5, meter=waiting.meter).usage == Usage(PROMPT_TOKENS, 0)


async def test_a_proposer_cut_off_at_the_deadline_before_it_was_sent_is_not_billed() -> None:
    proposers = [PricedProvider("a"), PricedProvider("b"), WaitsForAConnection("slow")]
    result = await engine(proposers, PricedProvider("agg"), quorum=2, proposer_deadline_s=0.2).run(REQUEST)  # type: ignore[arg-type]
    late = by_model(result.calls, "openai/slow")
    assert (late.status, late.error, late.usage, late.cost_usd, late.usage_estimated) == (
        "late",
        "deadline",
        Usage(),
        0.0,
        False,
    )


async def test_an_aggregator_stream_cut_off_before_it_was_sent_is_not_billed() -> None:
    mixture = engine([PricedProvider("a"), PricedProvider("b")], WaitsForAConnection("agg"), quorum=2)
    timed = CompletionRequest(REQUEST.messages, timeout_s=1.0)
    items = [item async for item in mixture.stream(timed, meter=CallMeter())]
    result = items[-1]
    assert isinstance(result, MixtureResult) and result.fallback == "proposer"
    cut = by_model(result.calls, "openai/agg")
    assert (cut.status, cut.error, cut.usage, cut.usage_estimated) == ("error", "timeout", Usage(), False)


class TimesOutAfterSending(PricedProvider):
    """A model whose calls are sent, then time out: billed for their prompt, with no usage to show."""

    async def complete(self, request: CompletionRequest, meter: CallMeter | None = None) -> CallResult:
        if meter is not None:
            meter.start(self.entry, request)
            meter.sent = True
        self.seen.append(request)
        raise ProviderError(self.name, "timeout", "too slow")

    async def stream(self, request: CompletionRequest, meter: CallMeter | None = None) -> AsyncIterator[StreamItem]:
        yield await self.complete(request, meter)


def backed_up(primary: Provider, fallback: Provider) -> ResilientProvider:
    settings = ResilienceSettings()
    return ResilientProvider(primary, Breakers(settings).get(primary.name), settings, fallback)


def is_replaced_timeout(call: CallRecord, role: str, prompt_tokens: int) -> bool:
    expected = (role, "error", "timeout", Usage(prompt_tokens, 0), True, True)
    got = (call.role, call.status, call.error, call.usage, call.usage_estimated, call.replaced_by_fallback)
    return got == expected and call.cost_usd == pytest.approx(prompt_tokens * PRICE_IN)


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
async def test_a_call_that_timed_out_before_its_fallback_answered_is_billed_for_its_prompt(stream: bool) -> None:
    fleet = dataclasses.replace(providers(), cheap=backed_up(TimesOutAfterSending("cheap"), PricedProvider("backup")))
    mixture = engine([PricedProvider("a")], PricedProvider("agg"))
    out = RouteResult()
    if stream:
        assert [delta async for delta in stream_route("cheap", REQUEST, fleet, mixture, out)]
    else:
        await run_route("cheap", REQUEST, fleet, mixture, out)
    timed_out, answered = out.calls  # was only the fallback's: the primary's prompt was lost from spend
    assert timed_out.model == "openai/cheap" and is_replaced_timeout(timed_out, "cheap", PROMPT_TOKENS)
    assert (answered.model, answered.status, answered.usage, answered.usage_estimated) == (
        "openai/backup",
        "ok",
        Usage(10, 5),
        False,
    )
    assert out.cost_usd == pytest.approx(timed_out.cost_usd + 0.01)  # each call once


async def test_a_fallback_cut_off_by_the_request_timeout_after_its_primary_timed_out_is_logged_too() -> None:
    hanging = PricedProvider("backup")
    hanging.delay = 5.0
    fleet = dataclasses.replace(providers(), cheap=backed_up(TimesOutAfterSending("cheap"), hanging))
    out = RouteResult()
    with pytest.raises(TimeoutError):  # the request's timeout: the fallback hangs far longer
        await asyncio.wait_for(run_route("cheap", REQUEST, fleet, engine([], PricedProvider("agg")), out), 0.2)
    [timed_out] = out.calls
    assert timed_out.model == "openai/cheap" and is_replaced_timeout(timed_out, "cheap", PROMPT_TOKENS)
    cut = timed_out_call("cheap", fleet, out, time.perf_counter())  # the primary's record is not the route's
    assert cut is not None and (cut.model, cut.usage, cut.replaced_by_fallback) == (
        "openai/backup",
        Usage(PROMPT_TOKENS, 0),
        False,
    )
    left = abandoned_call("cheap", REQUEST, fleet, out, "y" * 8, time.perf_counter())  # as is a client leaving
    assert left is not None and left.model == "openai/backup"


@pytest.mark.parametrize("streaming", [False, True])
async def test_a_mixture_logs_each_call_that_timed_out_before_its_fallback_answered(streaming: bool) -> None:
    proposers = [PricedProvider("a"), backed_up(TimesOutAfterSending("b"), PricedProvider("b-backup"))]
    aggregator = TimesOutAfterSending("agg")
    mixture = engine(proposers, backed_up(aggregator, PricedProvider("agg-backup")), quorum=2)  # type: ignore[arg-type]
    if streaming:
        items = [item async for item in mixture.stream(REQUEST, meter=CallMeter())]
        result = items[-1]
        assert isinstance(result, MixtureResult)
    else:
        result = await mixture.run(REQUEST, meter=CallMeter())
    assert result.fallback is None and result.model == "openai/agg-backup"
    assert sorted(call.model for call in result.calls) == sorted(
        ["openai/a", "openai/b", "openai/b-backup", "openai/agg", "openai/agg-backup"]
    )
    assert is_replaced_timeout(by_model(result.calls, "openai/b"), "proposer", PROMPT_TOKENS)
    assert by_model(result.calls, "openai/b").layer == 1
    shown = estimate_prompt_tokens(aggregator.seen[0])  # the question and both proposers' answers
    assert is_replaced_timeout(by_model(result.calls, "openai/agg"), "aggregator", shown)
    answered = sum(call.cost_usd for call in result.calls if call.status == "ok")
    assert answered == pytest.approx(3 * 0.01)  # a, b-backup and agg-backup
    assert result.cost_usd == pytest.approx(answered + (PROMPT_TOKENS + shown) * PRICE_IN)


def _cheap_prompt_cost(call: dict[str, object]) -> float:
    _, price_in, _ = TEST_MODELS["cheap-1"]
    tokens = call["prompt_tokens"]
    assert isinstance(tokens, int)
    return tokens * price_in


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
@pytest.mark.parametrize("cut_by", ["request-timeout", "call-timeout"])
def test_a_cheap_call_that_timed_out_is_logged_with_its_prompts_cost(
    make_service: Service, sim: SimulatorServer, sim_url: str, redis_url: str, stream: bool, cut_by: str
) -> None:
    prefix = f"t{uuid.uuid4().hex[:10]}"
    if cut_by == "request-timeout":  # the request's timeout cuts it off long before its own
        base = make_service(redis_url=redis_url, redis_prefix=prefix, limits={"request_timeout_s": 0.5})
    else:  # its own timeout ends it long before the request's
        base = make_service(redis_url=redis_url, redis_prefix=prefix, cheap=entry(sim_url, "cheap-1", timeout_s=0.5))
    patch_model(sim, "cheap-1", ttft_s=10.0)
    response = chat(base, "cheap", stream=stream)
    assert response.status_code == 504
    event = logged_event(redis_url, prefix, response.headers["x-request-id"])
    assert event is not None
    [call] = event["calls"]
    assert (call["model"], call["status"], call["error"]) == ("openai/cheap-1", "error", "timeout")
    assert call["prompt_tokens"] >= len(ASK[0]["content"]) // 4 and call["completion_tokens"] == 0  # was 0 and 0
    assert call["cost_usd"] == pytest.approx(_cheap_prompt_cost(call)) and call["cost_usd"] > 0
    assert event["cost_usd"] == call["cost_usd"]  # what budgets, stats and metrics count


def test_a_mixture_whose_proposer_is_cut_off_counts_its_prompt_in_the_requests_cost(
    make_service: Service, sim: SimulatorServer, redis_url: str
) -> None:
    prefix = f"t{uuid.uuid4().hex[:10]}"
    base = make_service(redis_url=redis_url, redis_prefix=prefix, mixture={"proposer_deadline_s": 2.0})
    patch_model(sim, "prop-c", ttft_s=10.0)
    response = chat(base, "mixture")
    assert response.status_code == 200
    event = logged_event(redis_url, prefix, response.headers["x-request-id"])
    assert event is not None
    [late] = [call for call in event["calls"] if call["model"] == "openai/prop-c"]
    _, price_in, _ = TEST_MODELS["prop-c"]
    # Its own timeout (what was left of the layer's time) and the layer's deadline race: billed either way.
    assert (late["status"], late["error"]) in {("late", "deadline"), ("error", "timeout")}
    assert late["prompt_tokens"] > 0 and late["cost_usd"] == pytest.approx(late["prompt_tokens"] * price_in)
    assert float(response.headers["x-moa-cost-usd"]) == pytest.approx(event["cost_usd"], abs=1e-8)
    assert event["cost_usd"] == pytest.approx(sum(call["cost_usd"] for call in event["calls"]))


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
def test_a_cheap_call_that_timed_out_before_its_fallback_answered_counts_in_the_requests_cost(
    make_service: Service, sim: SimulatorServer, sim_url: str, redis_url: str, stream: bool
) -> None:
    prefix = f"t{uuid.uuid4().hex[:10]}"
    cheap = entry(sim_url, "cheap-1", timeout_s=0.5, fallback=entry(sim_url, "judge-1"))
    base = make_service(redis_url=redis_url, redis_prefix=prefix, cheap=cheap)
    patch_model(sim, "cheap-1", ttft_s=10.0)  # its own timeout ends it; the fallback answers
    response = chat(base, "cheap", stream=stream)
    assert response.status_code == 200 and response.headers["x-moa-fallback"] == "entry"
    event = logged_event(redis_url, prefix, response.headers["x-request-id"])
    assert event is not None
    timed_out, answered = event["calls"]  # was only the fallback's
    assert (timed_out["model"], timed_out["role"], timed_out["status"], timed_out["error"]) == (
        "openai/cheap-1",
        "cheap",
        "error",
        "timeout",
    )
    assert timed_out["completion_tokens"] == 0 and timed_out["cost_usd"] == pytest.approx(_cheap_prompt_cost(timed_out))
    assert timed_out["cost_usd"] > 0
    assert (answered["model"], answered["status"]) == ("openai/judge-1", "ok")
    assert event["cost_usd"] == pytest.approx(timed_out["cost_usd"] + answered["cost_usd"])  # each call once
    if not stream:
        assert float(response.headers["x-moa-cost-usd"]) == pytest.approx(event["cost_usd"], abs=1e-8)
