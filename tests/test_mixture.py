"""The mixture engine driven by fake providers (the engine takes whatever providers it is given)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from router.config import MixtureSettings, ModelEntry
from router.mixture import FALLBACK_MARGIN_S, MixtureEngine, QuorumError, consensus_pick
from router.prompts import AGGREGATE_INSTRUCTIONS
from router.providers.base import CallResult, CompletionRequest, ProviderError, StreamItem, Usage


class FakeProvider:
    def __init__(self, name: str, answer: str = "", delay: float = 0.0, fail: bool = False,
                 cost: float = 0.01) -> None:
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

    async def complete(self, request: CompletionRequest) -> CallResult:
        self.seen.append(request)
        await asyncio.sleep(self.delay)
        if self.fail:
            raise ProviderError(self.name, "upstream", "boom", 500)
        return CallResult(self.name, self.answer, Usage(10, 5), self.cost, self.delay)

    async def stream(self, request: CompletionRequest) -> AsyncIterator[StreamItem]:
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


async def test_failed_proposer_is_recorded_not_fatal() -> None:
    proposers = [FakeProvider("ok1"), FakeProvider("bad", fail=True), FakeProvider("ok2")]
    result = await engine(proposers, FakeProvider("agg"), quorum=2).run(REQ)
    assert [c.status for c in result.calls if c.role == "proposer"].count("error") == 1
    assert result.fallback is None


async def test_below_quorum_raises_early() -> None:
    proposers = [FakeProvider("bad1", fail=True), FakeProvider("bad2", fail=True), FakeProvider("slow", delay=5)]
    started = time.perf_counter()
    with pytest.raises(QuorumError) as info:
        await engine(proposers, FakeProvider("agg"), quorum=2, proposer_deadline_s=3).run(REQ)
    assert time.perf_counter() - started < 1  # quorum became impossible: no waiting for the slow one
    assert len(info.value.calls) == 3


async def test_aggregator_failure_falls_back_to_consensus_answer() -> None:
    proposers = [FakeProvider("a", "the sky is blue because of rayleigh scattering"),
                 FakeProvider("b", "rayleigh scattering makes the sky blue"),
                 FakeProvider("c", "bananas")]
    result = await engine(proposers, FakeProvider("agg", fail=True), quorum=2).run(REQ)
    assert result.fallback == "proposer"
    assert "rayleigh" in result.text
    assert result.calls[-1].status == "error"


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
    proposers = [FakeProvider(f"p{i}", delay=0.3) for i in range(2)]
    agg = FakeProvider("agg", "final")
    request = CompletionRequest([{"role": "user", "content": "hi"}], timeout_s=2.0)
    await engine(proposers, agg, quorum=2).run(request)
    timeout = agg.seen[0].timeout_s
    assert timeout is not None
    assert 2.0 - 0.3 - FALLBACK_MARGIN_S - 0.2 < timeout <= 2.0 - 0.3 - FALLBACK_MARGIN_S


@pytest.mark.parametrize("streaming", [False, True])
async def test_no_time_left_for_the_aggregator_means_a_proposer_answer_without_calling_it(streaming: bool) -> None:
    proposers = [FakeProvider("a", "rayleigh scattering", delay=0.2), FakeProvider("b", "rayleigh", delay=0.2)]
    agg = FakeProvider("agg", "final")
    request = CompletionRequest([{"role": "user", "content": "hi"}], timeout_s=0.2 + FALLBACK_MARGIN_S / 2)
    mixture = engine(proposers, agg, quorum=2)
    if streaming:
        items = [item async for item in mixture.stream(request)]
        result = items[-1]
        assert not isinstance(result, str) and "".join(i for i in items if isinstance(i, str)) == result.text
    else:
        result = await mixture.run(request)
    assert agg.seen == []
    assert result.fallback == "proposer" and result.text in ("rayleigh scattering", "rayleigh")
    assert [call.role for call in result.calls] == ["proposer", "proposer"]
