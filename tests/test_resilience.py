"""Retries only where safe and within the deadline; the per-model breaker and its fallback."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from router.config import ModelEntry, ResilienceSettings
from router.providers.base import CallMeter, CallResult, CompletionRequest, ProviderError, StreamItem, Usage
from router.providers.openai_compat import OpenAICompatibleProvider
from router.providers.pricing import Prices
from router.resilience import Breakers, CircuitBreaker, ResilientProvider, resilient
from router.simulator.runner import SimulatorServer
from tests.conftest import entry, sim_stats

Outcome = ProviderError | str  # an error to raise, or the text to answer


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class ScriptedProvider:
    """Answers each call with the next scripted outcome; records the timeout each call was given."""

    def __init__(self, name: str, outcomes: list[Outcome], stream_deltas_before_error: int = 0) -> None:
        self._entry = ModelEntry(model=f"openai/{name}", timeout_s=10.0)
        self.outcomes = list(outcomes)
        self.timeouts: list[float | None] = []
        self.closed = 0
        self._deltas_before_error = stream_deltas_before_error

    @property
    def entry(self) -> ModelEntry:
        return self._entry

    @property
    def name(self) -> str:
        return self._entry.model

    def _next(self, request: CompletionRequest) -> Outcome:
        self.timeouts.append(request.timeout_s)
        return self.outcomes.pop(0) if self.outcomes else "ok"

    async def complete(self, request: CompletionRequest, meter: CallMeter | None = None) -> CallResult:
        if meter is not None:  # as the real providers do: the model called is the one answering, sent at once
            meter.start(self._entry, request)
            meter.sent = True
        outcome = self._next(request)
        if isinstance(outcome, ProviderError):
            raise outcome
        return CallResult(self.name, outcome, Usage(3, 2), 0.0, 0.0)

    async def stream(self, request: CompletionRequest, meter: CallMeter | None = None) -> AsyncIterator[StreamItem]:
        if meter is not None:  # as the real providers do: the model called is the one answering, sent at once
            meter.start(self._entry, request)
            meter.sent = True
        outcome = self._next(request)
        try:
            if isinstance(outcome, ProviderError):
                for index in range(self._deltas_before_error):
                    yield f"part{index} "
                raise outcome
            for word in outcome.split():
                yield word
            yield CallResult(self.name, outcome, Usage(3, 2), 0.0, 0.0)
        finally:
            self.closed += 1


def err(kind: Any, status: int | None = None, retry_after: float | None = None, model: str = "m") -> ProviderError:
    return ProviderError(model, kind, "simulated", status, retry_after)


def make(
    primary: ScriptedProvider,
    clock: FakeClock,
    fallback: ScriptedProvider | None = None,
    **settings: Any,
) -> ResilientProvider:
    config = ResilienceSettings(**{"backoff_base_s": 0.1, "backoff_max_s": 1.0, **settings})
    breakers = Breakers(config, clock)
    wrapped_fallback = (
        ResilientProvider(fallback, breakers.get(fallback.name), config, clock=clock, sleep=clock.sleep)
        if fallback is not None
        else None
    )
    return ResilientProvider(
        primary,
        breakers.get(primary.name),
        config,
        wrapped_fallback,
        clock=clock,
        sleep=clock.sleep,
        rng=random.Random(1),
    )


REQUEST = CompletionRequest([{"role": "user", "content": "hi"}], timeout_s=30.0)


async def test_connection_errors_and_5xx_are_retried_until_an_answer() -> None:
    clock = FakeClock()
    primary = ScriptedProvider("a", [err("connection"), err("upstream", 503), "fine"])
    result = await make(primary, clock).complete(REQUEST)
    assert result.text == "fine"
    assert len(primary.timeouts) == 3
    assert len(clock.sleeps) == 2
    # Exponential backoff with jitter: the second wait is drawn from a range twice as high.
    assert 0.05 <= clock.sleeps[0] <= 0.1 and 0.1 <= clock.sleeps[1] <= 0.2


async def test_429_waits_exactly_its_retry_after() -> None:
    clock = FakeClock()
    primary = ScriptedProvider("a", [err("rate_limit", 429, retry_after=1.5), "fine"])
    assert (await make(primary, clock).complete(REQUEST)).text == "fine"
    assert clock.sleeps == [1.5]


@pytest.mark.anyio
@pytest.mark.parametrize(
    "failure",
    [
        err("bad_request", 400),
        err("auth", 401),
        err("timeout"),
        err("malformed"),
        err("rate_limit", 429, retry_after=60.0),  # longer than max_retry_after_s: not waited for
        err("upstream", 503, retry_after=60.0),  # nor is a 5xx's: a retry sooner than asked would fail too
    ],
    ids=["400", "401", "timeout", "malformed", "long-retry-after", "5xx-long-retry-after"],
)
async def test_unsafe_or_pointless_retries_are_not_made(failure: ProviderError) -> None:
    clock = FakeClock()
    primary = ScriptedProvider("a", [failure, "fine"])
    with pytest.raises(ProviderError) as raised:
        await make(primary, clock, max_retry_after_s=10.0).complete(REQUEST)
    assert raised.value is failure
    assert len(primary.timeouts) == 1 and clock.sleeps == []


async def test_no_retry_that_would_end_after_the_deadline() -> None:
    clock = FakeClock()
    primary = ScriptedProvider("a", [err("rate_limit", 429, retry_after=5.0), "fine"])
    request = CompletionRequest(REQUEST.messages, timeout_s=4.0)
    with pytest.raises(ProviderError):
        await make(primary, clock).complete(request)
    assert len(primary.timeouts) == 1 and clock.sleeps == []


async def test_each_attempt_gets_only_the_time_left() -> None:
    clock = FakeClock()
    primary = ScriptedProvider("a", [err("rate_limit", 429, retry_after=2.0), err("rate_limit", 429, retry_after=3.0)])
    await make(primary, clock).complete(CompletionRequest(REQUEST.messages, timeout_s=10.0))
    assert primary.timeouts == [10.0, 8.0, 5.0]


async def test_attempts_are_bounded() -> None:
    clock = FakeClock()
    primary = ScriptedProvider("a", [err("connection")] * 5)
    with pytest.raises(ProviderError):
        await make(primary, clock, max_attempts=3).complete(REQUEST)
    assert len(primary.timeouts) == 3


async def test_repeated_failures_cool_the_model_down_and_its_traffic_goes_to_the_fallback() -> None:
    clock = FakeClock()
    primary = ScriptedProvider("a", [err("upstream", 500)] * 4)
    fallback = ScriptedProvider("b", [])
    provider = make(primary, clock, fallback, max_attempts=1, failure_threshold=2, cooldown_s=30.0)
    answers = [(await provider.complete(REQUEST)).model for _ in range(4)]
    # Each failed call was answered by the fallback; once cooled down, the primary is not even called.
    assert answers == ["openai/b"] * 4
    assert len(primary.timeouts) == 2
    assert provider.breaker.state == "open"
    clock.now += 31.0  # the cooldown ends: one trial call reaches the primary again
    primary.outcomes = ["back"]
    assert (await provider.complete(REQUEST)).text == "back"
    assert provider.breaker.state == "closed"


async def test_a_failed_trial_call_keeps_the_breaker_open() -> None:
    clock = FakeClock()
    primary = ScriptedProvider("a", [err("upstream", 500)] * 3)
    provider = make(primary, clock, max_attempts=1, failure_threshold=2, cooldown_s=30.0)
    for _ in range(2):
        with pytest.raises(ProviderError):
            await provider.complete(REQUEST)
    clock.now += 31.0
    with pytest.raises(ProviderError):
        await provider.complete(REQUEST)  # the trial, which fails
    calls = len(primary.timeouts)
    with pytest.raises(ProviderError) as raised:
        await provider.complete(REQUEST)
    assert len(primary.timeouts) == calls  # refused without a call
    assert raised.value.status == 503 and "cooled down" in str(raised.value)


async def test_requests_the_model_refuses_do_not_cool_it_down() -> None:
    clock = FakeClock()
    primary = ScriptedProvider("a", [err("bad_request", 400)] * 5)
    provider = make(primary, clock, failure_threshold=2)
    for _ in range(5):
        with pytest.raises(ProviderError):
            await provider.complete(REQUEST)
    assert provider.breaker.state == "closed"


@pytest.mark.parametrize("refusal", [err("bad_request", 400), err("timeout")], ids=["400", "a-timeout-not-reaching-it"])
async def test_a_trial_call_that_proves_nothing_lets_the_next_call_be_the_trial(refusal: ProviderError) -> None:
    if refusal.kind == "timeout":
        refusal.reached_upstream = False  # it waited for a pooled connection that never came free
    clock = FakeClock()
    primary = ScriptedProvider("a", [err("upstream", 500)] * 2 + [refusal])
    provider = make(primary, clock, max_attempts=1, failure_threshold=2, cooldown_s=30.0)
    for _ in range(3):
        with pytest.raises(ProviderError):
            await provider.complete(REQUEST)  # the last one refused as cooled down, without a call
    assert len(primary.timeouts) == 2
    clock.now += 31.0
    with pytest.raises(ProviderError) as raised:
        await provider.complete(REQUEST)  # the trial: the model refuses the request itself, so it is up
    assert raised.value is refusal
    assert (await provider.complete(REQUEST)).text == "ok"  # not cooled down for another 30 s
    assert provider.breaker.state == "closed"


async def test_one_breaker_per_model_whatever_its_roles() -> None:
    breakers = Breakers(ResilienceSettings())
    assert breakers.get("openai/x") is breakers.get("openai/x")
    assert breakers.get("openai/x") is not breakers.get("openai/y")
    assert breakers.states() == {"openai/x": "closed", "openai/y": "closed"}


def test_breaker_opens_only_on_consecutive_failures() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker("m", ResilienceSettings(failure_threshold=3), clock)
    for _ in range(2):
        breaker.record_failure()
    breaker.record_success()
    for _ in range(2):
        breaker.record_failure()
    assert breaker.state == "closed" and breaker.allow()
    breaker.record_failure()
    assert breaker.state == "open" and not breaker.allow()


async def collect(items: AsyncIterator[StreamItem]) -> list[StreamItem]:
    return [item async for item in items]


async def test_a_stream_is_retried_before_its_first_delta() -> None:
    clock = FakeClock()
    primary = ScriptedProvider("a", [err("connection"), "hello there"])
    items = await collect(make(primary, clock).stream(REQUEST))
    assert [i for i in items if isinstance(i, str)] == ["hello", "there"]
    assert isinstance(items[-1], CallResult)
    assert len(primary.timeouts) == 2


async def test_a_stream_is_never_retried_after_text_was_sent() -> None:
    clock = FakeClock()
    billed = CallResult("openai/a", "part0 part1 ", Usage(3, 4), 0.25, 0.1, "error", usage_estimated=True)
    failure = ProviderError("openai/a", "connection", "cut off", partial=billed)
    primary = ScriptedProvider("a", [failure, "never"], stream_deltas_before_error=2)
    fallback = ScriptedProvider("b", [])
    received: list[StreamItem] = []
    with pytest.raises(ProviderError) as raised:
        async for item in make(primary, clock, fallback).stream(REQUEST):
            received.append(item)
    assert received == ["part0 ", "part1 "]
    assert len(primary.timeouts) == 1 and fallback.timeouts == []
    assert raised.value.partial is billed  # what the cut-off call was billed reaches the caller


@pytest.mark.parametrize("streaming", [False, True])
async def test_the_meter_is_told_which_entry_answers(streaming: bool) -> None:
    clock = FakeClock()
    primary = ScriptedProvider("a", [err("upstream", 500), err("upstream", 500), "from a"])
    fallback = ScriptedProvider("b", [])
    provider = make(primary, clock, fallback, max_attempts=1, failure_threshold=2, cooldown_s=30.0)

    async def answered_by() -> ModelEntry | None:
        meter = CallMeter()
        if streaming:
            await collect(provider.stream(REQUEST, meter))
        else:
            await provider.complete(REQUEST, meter)
        return meter.entry

    # Twice the primary fails before it answers, then it is cooled down: the fallback answers each time.
    assert [await answered_by() for _ in range(3)] == [fallback.entry] * 3
    assert provider.breaker.state == "open"
    clock.now += 31.0  # the cooldown is over: the primary answers again
    assert await answered_by() is primary.entry


async def test_a_stream_falls_back_before_its_first_delta() -> None:
    clock = FakeClock()
    primary = ScriptedProvider("a", [err("malformed")])
    fallback = ScriptedProvider("b", ["from fallback"])
    items = await collect(make(primary, clock, fallback).stream(REQUEST))
    assert isinstance(items[-1], CallResult) and items[-1].model == "openai/b"


class OversleepingClock(FakeClock):
    """A loop so busy that a wait ends a second later than asked."""

    async def sleep(self, seconds: float) -> None:
        await super().sleep(seconds + 1.0)


@pytest.mark.parametrize("streaming", [False, True])
async def test_a_deadline_that_passed_before_a_retry_made_no_call(streaming: bool) -> None:
    clock = OversleepingClock()
    primary = ScriptedProvider("a", [err("upstream", 503, model="openai/a")])  # sent, failed, not billed
    provider = make(primary, clock)
    request = CompletionRequest(REQUEST.messages, timeout_s=0.5)  # the retry's wait fits, the oversleep does not
    meter = CallMeter()
    with pytest.raises(ProviderError) as raised:
        if streaming:
            await collect(provider.stream(request, meter))
        else:
            await provider.complete(request, meter)
    assert len(primary.timeouts) == 1 and raised.value.kind == "timeout"
    assert not raised.value.reached_upstream  # it made no call: nothing to cool down, nothing billed
    # The 503'd attempt was not billed, and nothing was on the wire while the retry waited.
    assert not meter.sent and meter.billed_prompt(raised.value) is None


def timed_out(name: str, reached_upstream: bool = True) -> ProviderError:
    return ProviderError(f"openai/{name}", "timeout", "simulated", reached_upstream=reached_upstream)


@pytest.mark.parametrize("streaming", [False, True])
async def test_a_primary_that_timed_out_after_it_was_sent_is_kept_for_the_caller_when_its_fallback_answers(
    streaming: bool,
) -> None:
    clock = FakeClock()
    primary, fallback = ScriptedProvider("a", [timed_out("a")]), ScriptedProvider("b", ["from b"])
    provider = make(primary, clock, fallback)
    meter = CallMeter()
    if streaming:
        items = await collect(provider.stream(REQUEST, meter))
        assert isinstance(items[-1], CallResult) and items[-1].model == "openai/b"
    else:
        assert (await provider.complete(REQUEST, meter)).model == "openai/b"
    # The caller hears only of the fallback's call; the primary's billed prompt waits on the meter for it.
    [replaced] = meter.take_replaced()
    assert (replaced.entry, replaced.error, replaced.latency_s >= 0) == (primary.entry, "timeout", True)
    assert replaced.request.messages == REQUEST.messages
    assert meter.entry is fallback.entry and meter.take_replaced() == []  # handed out once


@pytest.mark.parametrize(
    "failure",
    [
        timed_out("a", reached_upstream=False),
        err("upstream", 500, model="openai/a"),
        err("connection", model="openai/a"),
    ],
    ids=["never-sent", "5xx", "connection"],
)
async def test_a_primary_that_was_not_billed_is_not_kept_when_its_fallback_answers(failure: ProviderError) -> None:
    clock = FakeClock()
    primary, fallback = ScriptedProvider("a", [failure]), ScriptedProvider("b", ["from b"])
    meter = CallMeter()
    assert (await make(primary, clock, fallback, max_attempts=1).complete(REQUEST, meter)).model == "openai/b"
    assert meter.replaced == []


async def test_a_primary_that_timed_out_with_no_fallback_is_left_to_its_caller() -> None:
    clock = FakeClock()
    meter = CallMeter()
    with pytest.raises(ProviderError) as raised:
        await make(ScriptedProvider("a", [timed_out("a")]), clock).complete(REQUEST, meter)
    # Its caller logs it from the error it raised (estimated from the meter): not kept twice.
    assert meter.replaced == [] and meter.billed_prompt(raised.value) is not None


async def test_an_abandoned_stream_closes_the_upstream_stream() -> None:
    clock = FakeClock()
    primary = ScriptedProvider("a", ["one two three"])
    stream = make(primary, clock).stream(REQUEST)
    assert await anext(stream) == "one"
    await stream.aclose()  # type: ignore[attr-defined]
    assert primary.closed == 1


def test_fallback_chain_follows_the_config() -> None:
    config = ResilienceSettings()
    top = ModelEntry(model="openai/a", fallback={"model": "openai/b", "fallback": {"model": "openai/c"}})
    built: list[str] = []

    def build(e: ModelEntry) -> ScriptedProvider:
        built.append(e.model)
        return ScriptedProvider(e.model.split("/")[1], [])

    provider = resilient(top, build, config, Breakers(config))
    assert provider.name == "openai/a"
    assert built == ["openai/c", "openai/b", "openai/a"]


# Through real HTTP: the lean provider against the simulator's injected faults.


def sim_provider(sim_url: str, client: httpx.AsyncClient, name: str, **settings: Any) -> ResilientProvider:
    model_entry = ModelEntry.model_validate(entry(sim_url, name))
    config = ResilienceSettings(**{"backoff_base_s": 0.0, **settings})
    inner = OpenAICompatibleProvider(model_entry, Prices(0.0, 0.0), client)
    return ResilientProvider(inner, Breakers(config).get(name), config)


async def test_simulated_500s_are_retried_over_http(sim: SimulatorServer, sim_url: str) -> None:
    async with httpx.AsyncClient() as client:
        patched = await client.patch(f"{sim.root_url}/_sim/models/cheap-1", json={"fail_next": 2})
        patched.raise_for_status()
        result = await sim_provider(sim_url, client, "cheap-1").complete(REQUEST)
    assert result.text
    model_stats = sim_stats(sim)["models"]["cheap-1"]
    assert model_stats["calls"] == 3 and model_stats["faults"] == {"error": 2}


async def test_simulated_429_retry_after_is_honoured_over_http(sim: SimulatorServer, sim_url: str) -> None:
    async with httpx.AsyncClient() as client:
        patched = await client.patch(
            f"{sim.root_url}/_sim/models/cheap-1", json={"rate_limit_rate": 1.0, "retry_after_s": 0.0}
        )
        patched.raise_for_status()
        with pytest.raises(ProviderError) as raised:
            await sim_provider(sim_url, client, "cheap-1", max_attempts=4).complete(REQUEST)
    assert raised.value.kind == "rate_limit" and raised.value.retry_after_s == 0.0
    assert sim_stats(sim)["models"]["cheap-1"]["calls"] == 4
