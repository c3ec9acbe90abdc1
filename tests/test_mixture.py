"""The mixture engine driven by fake providers (the engine takes whatever providers it is given)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from router.config import MixtureSettings, ModelEntry
from router.mixture import (
    FALLBACK_MARGIN_S,
    MixtureEngine,
    MixtureResult,
    QuorumError,
    consensus_pick,
    fallback_margin,
)
from router.prompts import AGGREGATE_INSTRUCTIONS
from router.providers.base import CallMeter, CallResult, CompletionRequest, ProviderError, StreamItem, Usage


class FakeProvider:
    def __init__(self, name: str, answer: str = "", delay: float = 0.0, fail: bool = False, cost: float = 0.01) -> None:
        self._entry = ModelEntry(model=f"openai/{name}")
        self.answer = answer or f"answer from {name}"
        self.delay, self.fail, self.cost = delay, fail, cost
        self.seen: list[CompletionRequest] = []

    @property
    def entry(self) -> ModelEntry:
        return self._entry

    @property
    def name(self) -> str:
        return self._entry.model

    async def complete(self, request: CompletionRequest, meter: CallMeter | None = None) -> CallResult:
        if meter is not None:  # as the real providers do: called, and sent at once
            meter.start(self.entry, request)
            meter.sent = True
        self.seen.append(request)
        await asyncio.sleep(self.delay)
        if self.fail:
            raise ProviderError(self.name, "upstream", "boom", 500)
        return CallResult(self.name, self.answer, Usage(10, 5), self.cost, self.delay)

    async def stream(self, request: CompletionRequest, meter: CallMeter | None = None) -> AsyncIterator[StreamItem]:
        if meter is not None:  # as the real providers do: called, and sent at once
            meter.start(self.entry, request)
            meter.sent = True
        self.seen.append(request)
        await asyncio.sleep(self.delay)
        if self.fail:
            raise ProviderError(self.name, "upstream", "boom", 500)
        for word in self.answer.split(" "):
            yield word + " "
        yield CallResult(self.name, self.answer, Usage(10, 5), self.cost, self.delay)


REQ = CompletionRequest([{"role": "user", "content": "why is the sky blue?"}], max_tokens=50)


def engine(proposers: list[FakeProvider], aggregator: FakeProvider, **settings: float) -> MixtureEngine:
    return MixtureEngine(proposers, aggregator, MixtureSettings(**settings))  # type: ignore[arg-type]


class FakeClock:
    """The engine's clock, moved by the providers below instead of by waiting."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class TimedProvider(FakeProvider):
    """Answers at once in real time, but `delay` later on the fake clock: proposers called together
    (same start) move it to the slowest one's answer time, as concurrent calls would."""

    def __init__(self, name: str, clock: FakeClock, delay: float, answer: str = "", fail: bool = False) -> None:
        super().__init__(name, answer, fail=fail)
        self.clock, self.fake_delay = clock, delay

    async def complete(self, request: CompletionRequest, meter: CallMeter | None = None) -> CallResult:
        start = self.clock.now
        result = await super().complete(request, meter)
        await asyncio.sleep(0)  # let the other proposers of the layer start at the same fake time
        self.clock.now = max(self.clock.now, start + self.fake_delay)
        return result


def timed_engine(
    proposers: list[FakeProvider], aggregator: FakeProvider, clock: FakeClock, **settings: float
) -> MixtureEngine:
    return MixtureEngine(proposers, aggregator, MixtureSettings(**settings), clock)  # type: ignore[arg-type]


async def timed_run(
    delay: float, timeout_s: float, **settings: float
) -> tuple[list[TimedProvider], FakeProvider, MixtureResult]:
    """Two proposers that answer `delay` after they are called on the fake clock, and the aggregator."""
    clock = FakeClock()
    proposers = [TimedProvider("a", clock, delay), TimedProvider("b", clock, delay)]
    agg = FakeProvider("agg", "final")
    request = CompletionRequest([{"role": "user", "content": "hi"}], timeout_s=timeout_s)
    result = await timed_engine(proposers, agg, clock, quorum=2, **settings).run(request)
    return proposers, agg, result


async def test_proposers_run_concurrently_and_costs_sum() -> None:
    proposers = [FakeProvider(f"p{i}", delay=0.2) for i in range(3)]
    agg = FakeProvider("agg", "final", delay=0.05)
    started = time.perf_counter()
    result = await engine(proposers, agg, quorum=2).run(REQ)
    elapsed = time.perf_counter() - started
    assert elapsed < 0.2 * 3  # concurrent, not one after another
    assert result.text == "final"
    assert len(result.calls) == 4
    assert result.cost_usd == pytest.approx(0.04)
    assert result.usage == Usage(40, 20)
    aggregated = agg.seen[0].messages
    assert aggregated[0]["role"] == "system"
    assert AGGREGATE_INSTRUCTIONS[:30] in aggregated[0]["content"]
    for i in range(3):
        assert f"[{i + 1}] answer from p{i}" in aggregated[0]["content"]


async def test_late_proposer_is_cut_at_the_deadline() -> None:
    proposers = [FakeProvider("fast1"), FakeProvider("fast2"), FakeProvider("slow", delay=5)]
    started = time.perf_counter()
    result = await engine(proposers, FakeProvider("agg"), quorum=2, proposer_deadline_s=0.3).run(REQ)
    assert time.perf_counter() - started < 2
    late = [c for c in result.calls if c.status == "late"]
    assert [c.model for c in late] == ["openai/slow"]
    assert "slow" not in result.calls[-1].model


async def test_a_proposer_whose_fallback_answers_is_logged_as_the_fallback() -> None:
    class FallsBack(FakeProvider):
        """Its primary failed at once (unseen, as in ResilientProvider): `backup` answers, or fails."""

        async def complete(self, request: CompletionRequest, meter: CallMeter | None = None) -> CallResult:
            backup = ModelEntry(model=f"openai/{self.answer}")
            if meter is not None:
                meter.start(backup, request)
            await asyncio.sleep(self.delay)
            raise ProviderError(backup.model, "upstream", "boom", 500)

    proposers = [FakeProvider("ok1"), FakeProvider("ok2"), FallsBack("a", "hung-backup", delay=5)]
    result = await engine(proposers, FakeProvider("agg"), quorum=2, proposer_deadline_s=0.2).run(REQ)
    assert [(c.model, c.status) for c in result.calls if c.status != "ok"] == [("openai/hung-backup", "late")]
    proposers[2] = FallsBack("b", "failed-backup")
    result = await engine(proposers, FakeProvider("agg"), quorum=2).run(REQ)
    assert [(c.model, c.error) for c in result.calls if c.status != "ok"] == [("openai/failed-backup", "upstream")]


async def test_failed_proposer_is_recorded_not_fatal() -> None:
    proposers = [FakeProvider("ok1"), FakeProvider("bad", fail=True), FakeProvider("ok2")]
    result = await engine(proposers, FakeProvider("agg"), quorum=2).run(REQ)
    assert [c.status for c in result.calls if c.role == "proposer"].count("error") == 1
    assert result.fallback is None


async def test_a_blank_proposer_answer_is_billed_but_neither_a_candidate_nor_counted_for_the_quorum() -> None:
    agg = FakeProvider("agg")
    proposers = [FakeProvider("ok1"), FakeProvider("blank", answer=" \n"), FakeProvider("ok2")]
    result = await engine(proposers, agg, quorum=2).run(REQ)
    shown = agg.seen[0].messages[0]["content"]
    assert "2 candidate answers" in shown and "[3]" not in shown and "answer from ok2" in shown
    blank = next(call for call in result.calls if call.model == "openai/blank")
    assert (blank.status, blank.error, blank.cost_usd, blank.usage) == ("error", "empty", 0.01, Usage(10, 5))
    with pytest.raises(QuorumError):  # one real answer is not a quorum of two
        await engine([FakeProvider("ok1"), FakeProvider("blank", answer=" ")], FakeProvider("agg"), quorum=2).run(REQ)


async def test_below_quorum_raises_early() -> None:
    proposers = [FakeProvider("bad1", fail=True), FakeProvider("bad2", fail=True), FakeProvider("slow", delay=5)]
    started = time.perf_counter()
    with pytest.raises(QuorumError) as info:
        await engine(proposers, FakeProvider("agg"), quorum=2, proposer_deadline_s=3).run(REQ)
    assert time.perf_counter() - started < 1  # quorum became impossible: no waiting for the slow one
    assert len(info.value.calls) == 3


async def test_aggregator_failure_falls_back_to_consensus_answer() -> None:
    proposers = [
        FakeProvider("a", "the sky is blue because of rayleigh scattering"),
        FakeProvider("b", "rayleigh scattering makes the sky blue"),
        FakeProvider("c", "bananas"),
    ]
    result = await engine(proposers, FakeProvider("agg", fail=True), quorum=2).run(REQ)
    assert result.fallback == "proposer"
    assert "rayleigh" in result.text
    assert result.calls[-1].status == "error"


class TruncatedProvider(FakeProvider):
    """Answers cut at max_tokens (finish_reason "length")."""

    async def complete(self, request: CompletionRequest, meter: CallMeter | None = None) -> CallResult:
        result = await super().complete(request, meter)
        return CallResult(result.model, result.text, result.usage, result.cost_usd, result.latency_s, "length")


@pytest.mark.parametrize("streaming", [False, True], ids=["run", "stream"])
async def test_a_proposer_answer_standing_in_for_the_aggregator_keeps_its_finish_reason(streaming: bool) -> None:
    mixture = engine([TruncatedProvider("a"), TruncatedProvider("b")], FakeProvider("agg", fail=True), quorum=2)
    if streaming:
        items = [item async for item in mixture.stream(REQ)]
        result = items[-1]
        assert isinstance(result, MixtureResult)
    else:
        result = await mixture.run(REQ)
    assert result.fallback == "proposer" and result.text == "answer from a"
    assert result.finish_reason == "length"  # cut at max_tokens: the client must not be told it is complete


async def test_layers_show_previous_answers_to_each_agent() -> None:
    proposers = [FakeProvider("a"), FakeProvider("b")]
    await engine(proposers, FakeProvider("agg"), quorum=2, layers=2).run(REQ)
    first, second = proposers[0].seen
    assert first.messages == REQ.messages
    assert "[2] answer from b" in second.messages[0]["content"]


async def test_stream_yields_aggregator_deltas_then_result() -> None:
    agg = FakeProvider("agg", "one two three")
    items = [item async for item in engine([FakeProvider("a"), FakeProvider("b")], agg, quorum=2).stream(REQ)]
    deltas = [i for i in items if isinstance(i, str)]
    assert "".join(deltas).split() == ["one", "two", "three"]
    final = items[-1]
    assert not isinstance(final, str)
    assert final.text == "one two three" and len(final.calls) == 3


def test_consensus_pick_prefers_agreement() -> None:
    assert consensus_pick(["x y z", "a b c d", "a b c"]) in (1, 2)
    assert consensus_pick(["only"]) == 0


async def test_configured_sampling_applies_when_the_client_sets_none() -> None:
    proposers = [FakeProvider(f"p{i}") for i in range(3)]
    agg = FakeProvider("agg", "final")
    mixture = engine(proposers, agg, max_tokens=300, temperature=0.9, aggregator_temperature=0.2)
    await mixture.run(CompletionRequest([{"role": "user", "content": "hi"}]))
    assert [(p.seen[0].max_tokens, p.seen[0].temperature) for p in proposers] == [(300, 0.9)] * 3
    assert (agg.seen[0].max_tokens, agg.seen[0].temperature) == (300, 0.2)
    # The client's own values win.
    await mixture.run(CompletionRequest([{"role": "user", "content": "hi"}], max_tokens=50, temperature=0.0))
    assert {(p.seen[1].max_tokens, p.seen[1].temperature) for p in proposers} == {(50, 0.0)}
    assert (agg.seen[1].max_tokens, agg.seen[1].temperature) == (50, 0.0)


async def test_the_aggregator_gets_what_is_left_of_the_request_deadline_less_the_fallback_margin() -> None:
    _, agg, _ = await timed_run(0.3, timeout_s=5.0)
    assert agg.seen[0].timeout_s == pytest.approx(5.0 - 0.3 - FALLBACK_MARGIN_S)


@pytest.mark.parametrize("streaming", [False, True])
@pytest.mark.parametrize("delay", [0.95, 0.895], ids=["none-left", "5ms-left"])
async def test_no_time_left_for_the_aggregator_means_a_proposer_answer_without_calling_it(
    streaming: bool, delay: float
) -> None:
    # Proposers that answer at their layer's deadline (the request's less the margin of 0.1 s) leave
    # no time, or less than AGGREGATOR_MIN_TIME_S.
    clock = FakeClock()
    proposers = [
        TimedProvider("a", clock, delay, "rayleigh scattering"),
        TimedProvider("b", clock, delay, "rayleigh"),
    ]
    agg = FakeProvider("agg", "final")
    request = CompletionRequest([{"role": "user", "content": "hi"}], timeout_s=1.0)
    mixture = timed_engine(proposers, agg, clock, quorum=2)
    if streaming:
        items = [item async for item in mixture.stream(request)]
        result = items[-1]
        assert not isinstance(result, str) and "".join(i for i in items if isinstance(i, str)) == result.text
    else:
        result = await mixture.run(request)
    assert agg.seen == []
    assert result.fallback == "proposer" and result.text in ("rayleigh scattering", "rayleigh")
    assert [call.role for call in result.calls] == ["proposer", "proposer"]


def test_the_fallback_margin_is_a_share_of_a_short_deadline() -> None:
    assert fallback_margin(120.0) == FALLBACK_MARGIN_S
    assert fallback_margin(0.2) == pytest.approx(0.02)  # a 0.2 s deadline still reaches the aggregator


async def test_a_short_request_deadline_still_reaches_the_aggregator() -> None:
    proposers, agg, result = await timed_run(0.05, timeout_s=0.2)
    assert result.text == "final" and result.fallback is None
    assert [p.seen[0].timeout_s for p in proposers] == [pytest.approx(0.2 - 0.02)] * 2
    assert agg.seen[0].timeout_s == pytest.approx(0.2 - 0.05 - 0.02)


async def test_the_layers_share_the_request_deadline_and_leave_the_aggregator_a_proposer_deadline() -> None:
    proposers, agg, result = await timed_run(1.0, timeout_s=10.0, layers=3, proposer_deadline_s=4.0)
    # Layer 1 gets the proposer deadline; layers 2 and 3 what is left less the margin and one deadline
    # kept for the aggregator: 10 - 1 - 0.25 - 4 = 4.75 (capped at 4), then 10 - 2 - 0.25 - 4 = 3.75.
    assert [[r.timeout_s for r in p.seen] for p in proposers] == [[4.0, 4.0, pytest.approx(3.75)]] * 2
    assert agg.seen[0].timeout_s == pytest.approx(10.0 - 3.0 - 0.25)
    assert result.text == "final" and [c.layer for c in result.calls if c.role == "proposer"] == [1, 1, 2, 2, 3, 3]


async def test_a_later_layer_without_time_for_it_is_skipped() -> None:
    proposers, agg, result = await timed_run(0.35, timeout_s=1.0, layers=2, proposer_deadline_s=0.6)
    # 1.0 - 0.35 - 0.1 (margin) leaves 0.55: less than the proposer deadline kept for the aggregator.
    assert [len(p.seen) for p in proposers] == [1, 1]
    assert agg.seen[0].timeout_s == pytest.approx(0.55)
    assert result.text == "final" and result.fallback is None


async def test_a_later_layer_with_little_time_is_skipped_rather_than_cut_off() -> None:
    # 8.3 - 4 - 0.25 - 4 leaves layer 2 only 0.05 s: under half a proposer deadline, so it is not started.
    proposers, agg, result = await timed_run(4.0, timeout_s=8.3, layers=2, proposer_deadline_s=4.0)
    assert [len(p.seen) for p in proposers] == [1, 1]
    assert result.text == "final" and agg.seen[0].timeout_s == pytest.approx(8.3 - 4.0 - 0.25)


@pytest.mark.parametrize("streaming", [False, True])
async def test_a_later_layer_that_misses_its_quorum_leaves_the_first_layers_answers(streaming: bool) -> None:
    class FailsSecondTime(FakeProvider):
        async def complete(self, request: CompletionRequest, meter: CallMeter | None = None) -> CallResult:
            self.fail = bool(self.seen)
            return await super().complete(request, meter)

    proposers = [FailsSecondTime("a"), FailsSecondTime("b"), FakeProvider("c")]
    agg = FakeProvider("agg", "final")
    mixture, meter = engine(proposers, agg, quorum=2, layers=2), CallMeter()
    if streaming:
        items = [item async for item in mixture.stream(REQ, meter=meter)]
        result = items[-1]
        assert not isinstance(result, str)
    else:
        result = await mixture.run(REQ, meter=meter)
    assert meter.request is agg.seen[0]  # what a cut-off aggregator is logged from
    assert result.text == "final" and result.model == "openai/agg"
    layer_two = [(c.model, c.status) for c in result.calls if c.layer == 2]
    assert sorted(layer_two) == [("openai/a", "error"), ("openai/b", "error"), ("openai/c", "ok")]
    shown = str(agg.seen[0].messages[0]["content"])  # the aggregator saw the first layer's three answers
    assert all(f"answer from {name}" in shown for name in "abc") and "[3]" in shown
