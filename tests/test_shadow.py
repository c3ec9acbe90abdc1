"""Shadow evaluation: sampling, the judge's verdict as a label, the daily budget, bounded work, and the
client never waiting for it. In-process tests use scripted providers and a real Redis; the service
tests run against the simulated fleet."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from redis import Redis
from redis.asyncio import Redis as AsyncRedis

from router.config import ModelEntry, Settings, settings_from_mapping
from router.events import RequestEvent
from router.ledger import LedgerKeys, OutcomeLog
from router.mixture import MixtureEngine
from router.providers.base import CallMeter, CallResult, CompletionRequest, ProviderError, StreamItem, Usage
from router.providers.registry import ProviderSet
from router.shadow import ShadowEvaluator, judge_messages, mixture_verdict, parse_verdict
from tests.conftest import settings_dict

Service = Callable[..., str]
TextFor = Callable[[CompletionRequest], str]


class Scripted:
    """A provider whose answers a test writes; `gate` holds calls until the test releases them."""

    def __init__(self, name: str, text: TextFor, cost: float = 0.001, gate: asyncio.Event | None = None) -> None:
        self.entry = ModelEntry(model=f"openai/{name}")
        self._text = text
        self._cost = cost
        self._gate = gate
        self.calls = 0
        self.error: ProviderError | None = None  # raised by every call when set

    @property
    def name(self) -> str:
        return self.entry.model

    async def complete(self, request: CompletionRequest, meter: CallMeter | None = None) -> CallResult:
        self.calls += 1
        if self._gate is not None:
            await self._gate.wait()
        if self.error is not None:
            raise self.error
        return CallResult(self.name, self._text(request), Usage(10, 10), self._cost, 0.0)

    async def stream(self, request: CompletionRequest, meter: CallMeter | None = None) -> AsyncIterator[StreamItem]:
        result = await self.complete(request)
        yield result.text
        yield result


def judge_preferring(word: str | None) -> TextFor:
    """A judge that picks the answer containing `word` (TIE for None)."""

    def verdict(request: CompletionRequest) -> str:
        if word is None:
            return "Both are fine.\nVERDICT: TIE"
        text = str(request.messages[-1]["content"])
        answer_b = text.split("Answer B:", 1)[1]
        return "Reasoning.\nVERDICT: " + ("B" if word in answer_b else "A")

    return verdict


def constant(text: str) -> TextFor:
    return lambda request: text


@pytest.fixture
def prefix() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


def make_settings(tmp_path: Path, prefix: str, **shadow: Any) -> Settings:
    return settings_from_mapping(
        settings_dict(
            "http://127.0.0.1:9/v1",
            tmp_path,
            redis_prefix=prefix,
            ledger={"store_prompts": True, "flush_interval_s": 0.05},
            shadow={"cheap_sample_rate": 1.0, **shadow},
        )
    )


# What a shadow run of each route costs with the scripted providers (0.001 a call, the judge's included).
RUN_COST = {"mixture": 0.005, "cheap": 0.002}


class Harness:
    def __init__(
        self,
        settings: Settings,
        redis: Any,
        judge: TextFor,
        gate: asyncio.Event | None = None,
        run_cost: dict[str, float] | None = None,
    ) -> None:
        self.run_cost = run_cost
        self.cheap = Scripted("cheap", constant("cheap answer"))
        self.proposers = [Scripted(f"p{i}", constant(f"proposal {i}"), gate=gate) for i in range(3)]
        self.aggregator = Scripted("agg", constant("MIXTURE answer"))
        self.judge = Scripted("judge", judge)
        providers = ProviderSet(self.cheap, tuple(self.proposers), self.aggregator, self.judge, self.aggregator)
        self.ledger = OutcomeLog(redis, settings)
        engine = MixtureEngine(providers.proposers, providers.aggregator, settings.mixture)
        self.shadow = ShadowEvaluator(settings, providers, engine, redis, self.ledger, random.Random(3))
        self.redis = redis
        self.keys = LedgerKeys(settings.redis_prefix)

    async def __aenter__(self) -> Harness:
        if self.run_cost is not None:  # as if runs had been seen: a burst is not held back by the first one
            await self.redis.hset(self.shadow.budget.costs_key, mapping=self.run_cost)
        self.ledger.start()
        self.shadow.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.shadow.close()
        await self.ledger.close()

    async def settle(self) -> list[dict[str, Any]]:
        await asyncio.wait_for(self.shadow.wait_idle(), 10)
        await self.shadow.close()
        await self.ledger.flush()
        return [orjson.loads(fields[b"o"]) for _, fields in await self.redis.xrange(self.keys.outcomes)]


def cheap_event(i: int = 0, route: str = "cheap", **changes: Any) -> RequestEvent:
    messages = [{"role": "user", "content": f"question {i}"}]
    event = RequestEvent(request_id=f"r{i}", tenant="acme", route=route, difficulty=0.2, stakes=0.7)
    event.upstream = CompletionRequest(messages, 64)
    event.answer_text = "cheap answer" if route == "cheap" else "MIXTURE answer"
    for name, value in changes.items():
        setattr(event, name, value)
    return event


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[AsyncRedis]:
    client: Any = AsyncRedis.from_url(redis_url)
    yield client
    await client.aclose()


def test_verdict_parsing() -> None:
    assert parse_verdict("The first is right.\nVERDICT: A") == "A"
    assert parse_verdict("verdict: **b**") == "B"
    assert parse_verdict("VERDICT: A ... on reflection\nVERDICT: TIE") == "TIE"
    assert parse_verdict("I prefer the second answer.") is None
    assert mixture_verdict("A", mixture_is_a=True) == "mixture"
    assert mixture_verdict("A", mixture_is_a=False) == "cheap"
    assert mixture_verdict("TIE", mixture_is_a=True) == "tie"
    assert mixture_verdict(None, mixture_is_a=True) == "unclear"
    messages = judge_messages([{"role": "user", "content": "why?"}], "first", "x" * 10_000)
    assert "VERDICT: TIE" in messages[0]["content"]
    assert "Answer A:\nfirst" in messages[1]["content"] and len(messages[1]["content"]) < 7_000


async def test_the_judges_verdict_becomes_a_difficulty_label(tmp_path: Path, redis: AsyncRedis) -> None:
    # (parametrize does not mix with the anyio marker that conftest adds, hence the loop)
    for preferred, verdict, label in [("MIXTURE", "mixture", 1), ("cheap", "cheap", 0), (None, "tie", 0)]:
        prefix = f"t{uuid.uuid4().hex[:10]}"
        settings = make_settings(tmp_path, prefix)
        async with Harness(settings, redis, judge_preferring(preferred), run_cost=RUN_COST) as harness:
            for i in range(4):  # both answer orders come up under this seed
                harness.shadow.record(cheap_event(i))
            outcomes = await harness.settle()
        assert [outcome["verdict"] for outcome in outcomes] == [verdict] * 4
        assert all(outcome["label"]["difficulty"] == label for outcome in outcomes)
        [first] = [outcome for outcome in outcomes if outcome["request_id"] == "r0"]  # workers finish in any order
        assert first["kind"] == "shadow" and first["shadow_route"] == "mixture" and first["route"] == "cheap"
        assert first["messages"] == [{"role": "user", "content": "question 0"}]
        assert first["shadow_cost_usd"] == pytest.approx(5 * 0.001)  # three proposers, aggregator, judge
        assert first["mixture_needed"] is (label == 1)


async def test_a_shadow_run_has_the_full_request_timeout_not_what_the_client_had_left(
    tmp_path: Path, prefix: str, redis: AsyncRedis
) -> None:
    # A client whose request spent most of its time waiting (e.g. on another request computing the same
    # answer) left its answer with little time: the shadow run, in the background, has its own.
    settings = make_settings(tmp_path, prefix)
    gate = asyncio.Event()
    async with Harness(settings, redis, judge_preferring("MIXTURE"), gate=gate, run_cost=RUN_COST) as harness:
        event = cheap_event(0)
        event.upstream = CompletionRequest([{"role": "user", "content": "question 0"}], 64, timeout_s=0.05)
        harness.shadow.record(event)
        await asyncio.sleep(0.3)  # the proposers answer after the client's deadline would have passed
        gate.set()
        [outcome] = await harness.settle()
    assert outcome["verdict"] == "mixture" and outcome["label"]["difficulty"] == 1


async def test_mixture_requests_can_be_checked_against_the_cheap_model(
    tmp_path: Path, prefix: str, redis: AsyncRedis
) -> None:
    settings = make_settings(tmp_path, prefix, cheap_sample_rate=0.0, mixture_sample_rate=1.0)
    async with Harness(settings, redis, judge_preferring("cheap")) as harness:
        harness.shadow.record(cheap_event(1, route="mixture"))
        harness.shadow.record(cheap_event(2, route="cheap"))  # not sampled at rate 0
        outcomes = await harness.settle()
    [outcome] = outcomes
    assert outcome["shadow_route"] == "cheap" and outcome["verdict"] == "cheap"
    assert outcome["label"]["difficulty"] == 0 and harness.cheap.calls == 1


def failing_judge(request: CompletionRequest) -> str:
    raise ProviderError("openai/judge", "upstream", "boom", 500)


async def test_unreadable_verdicts_and_failures_give_no_label(tmp_path: Path, redis: AsyncRedis) -> None:
    results = []
    for judge in (constant("Both have merits; I cannot decide."), failing_judge):
        async with Harness(make_settings(tmp_path, f"t{uuid.uuid4().hex[:10]}"), redis, judge) as harness:
            harness.shadow.record(cheap_event(0))
            [outcome] = await harness.settle()
        results.append((outcome, harness.shadow.counters))
    (unreadable, _), (failed, counters) = results
    assert unreadable["verdict"] == "unclear" and unreadable["label"]["difficulty"] is None
    assert unreadable["error"] is None and unreadable["judge_reasoning"] == "Both have merits; I cannot decide."
    assert failed["verdict"] == "unclear" and failed["label"]["difficulty"] is None
    assert failed["error"] == "openai/judge: upstream" and counters.failed == 1
    assert failed["shadow_cost_usd"] == pytest.approx(4 * 0.001)  # the mixture's calls were still paid for


async def test_a_proposer_fallback_is_not_judged_as_the_mixtures_answer(tmp_path: Path, redis: AsyncRedis) -> None:
    prefix = f"t{uuid.uuid4().hex[:10]}"
    async with Harness(make_settings(tmp_path, prefix), redis, judge_preferring("cheap")) as harness:
        harness.aggregator.error = ProviderError(harness.aggregator.name, "timeout", "too slow")
        harness.shadow.record(cheap_event(0))
        outcomes = await harness.settle()
    assert harness.aggregator.calls == 1
    assert outcomes[0]["mixture_needed"] is None and outcomes[0]["label"]["difficulty"] is None
    assert "proposer fallback" in outcomes[0]["error"]


async def test_what_is_not_sampled(tmp_path: Path, prefix: str, redis: AsyncRedis) -> None:
    async with Harness(make_settings(tmp_path, prefix), redis, judge_preferring(None)) as harness:
        harness.shadow.record(cheap_event(1, status=502))
        harness.shadow.record(cheap_event(2, cache="hit"))
        harness.shadow.record(cheap_event(3, route="strong"))
        harness.shadow.record(cheap_event(4, upstream=None, answer_text=None))  # no text in process
        outcomes = await harness.settle()
    assert outcomes == [] and harness.shadow.counters.no_input == 1 and harness.aggregator.calls == 0


async def test_the_daily_budget_stops_shadow_runs(tmp_path: Path, prefix: str, redis: AsyncRedis) -> None:
    # One run costs 0.005; the budget allows the first and not the second.
    async with Harness(make_settings(tmp_path, prefix, daily_budget_usd=0.004), redis, judge_preferring(None)) as h:
        h.shadow.record(cheap_event(1))
        deadline = time.monotonic() + 5
        while h.shadow.counters.completed < 1:
            assert time.monotonic() < deadline, "the first shadow run did not finish"
            await asyncio.sleep(0.01)
        for i in range(2, 5):
            h.shadow.record(cheap_event(i))
        outcomes = await h.settle()
    assert len(outcomes) == 1 and h.shadow.counters.over_budget == 3
    assert await h.shadow.budget.spent() == pytest.approx(0.005)
    assert h.judge.calls == 1


async def test_zero_budget_means_no_shadow_runs(tmp_path: Path, prefix: str, redis: AsyncRedis) -> None:
    async with Harness(make_settings(tmp_path, prefix, daily_budget_usd=0.0), redis, judge_preferring(None)) as h:
        h.shadow.record(cheap_event(1))
        outcomes = await h.settle()
    assert outcomes == [] and h.shadow.counters.over_budget == 1 and h.aggregator.calls == 0


async def test_concurrency_and_queue_are_bounded(tmp_path: Path, prefix: str, redis: AsyncRedis) -> None:
    gate = asyncio.Event()
    settings = make_settings(tmp_path, prefix, concurrency=2, queue_size=3)
    async with Harness(settings, redis, judge_preferring(None), gate=gate, run_cost=RUN_COST) as harness:
        for i in range(10):
            harness.shadow.record(cheap_event(i))
        # The burst fills the queue (3) and the rest is dropped; two workers then run two samples
        # (one call per proposer each) while the third waits.
        assert harness.shadow.counters.dropped == 7
        deadline = time.monotonic() + 5
        while [p.calls for p in harness.proposers] != [2, 2, 2]:
            assert time.monotonic() < deadline, "two shadow runs did not start"
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)
        assert [p.calls for p in harness.proposers] == [2, 2, 2]  # and no third one
        gate.set()
        outcomes = await harness.settle()
    assert len(outcomes) == 3 and harness.shadow.counters.sampled == 10


def test_the_service_shadows_cheap_requests_without_delaying_them(
    make_service: Service, redis_url: str, prefix: str, sim_url: str
) -> None:
    root = sim_url.rsplit("/v1", 1)[0]
    for name in ("prop-a", "prop-b", "prop-c"):  # the mixture takes longer than the client will wait
        httpx.patch(f"{root}/_sim/models/{name}", json={"ttft_s": 3.0}, timeout=5).raise_for_status()
    base = make_service(
        redis_url=redis_url,
        redis_prefix=prefix,
        ledger={"store_prompts": True, "flush_interval_s": 0.05},
        shadow={"cheap_sample_rate": 1.0},
    )
    payload = {"model": "m", "messages": [{"role": "user", "content": "Is the mixture needed here?"}]}
    response = httpx.post(f"{base}/v1/chat/completions", json=payload, headers={"x-moa-route": "cheap"}, timeout=2.0)
    assert response.status_code == 200
    client: Any = Redis.from_url(redis_url)
    try:
        deadline = time.monotonic() + 15
        while not client.xlen(LedgerKeys(prefix).outcomes) and time.monotonic() < deadline:
            time.sleep(0.05)
        [(_, fields)] = client.xrange(LedgerKeys(prefix).outcomes)
    finally:
        client.close()
    outcome = orjson.loads(fields[b"o"])
    assert outcome["request_id"] == response.headers["x-request-id"]
    assert outcome["kind"] == "shadow" and outcome["judge_model"] == "openai/judge-1"
    assert outcome["shadow_cost_usd"] > 0 and outcome["error"] is None
    # The simulated judge ends with a VERDICT line, so every run gives a readable verdict and a label.
    assert outcome["verdict"] in ("mixture", "cheap", "tie")
    calls = {name: m["calls"] for name, m in httpx.get(f"{root}/_sim/stats", timeout=5).json()["models"].items()}
    assert calls["judge-1"] == 1 and calls["agg-1"] == 1 and calls["cheap-1"] == 1


def test_only_a_verdict_line_counts() -> None:
    # Prose that merely mentions a verdict is not one: "verdict: a tie" read as answer A labelled the
    # mixture needed, and a refusal quoting the format gave whichever letter it named last.
    assert parse_verdict("Both are correct. Final verdict: a tie.") is None
    assert parse_verdict("Verdict: a tie, really.") is None
    assert parse_verdict("I cannot choose between VERDICT: A and VERDICT: B.") is None
    assert parse_verdict("Reasoning.\n**VERDICT: B**") == "B"
    assert parse_verdict("Reasoning.\n  Verdict: Tie.  ") == "TIE"
    assert parse_verdict("Reasoning.\nVERDICT: A\n") == "A"


async def wait_until(condition: Callable[[], bool], what: str, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.01)


async def test_concurrent_runs_stay_within_the_budget(tmp_path: Path, prefix: str, redis: AsyncRedis) -> None:
    # A run costs 0.005 and the budget holds two. Four samples at once on a fresh deployment: no run's cost
    # is known yet, so they must not all pass (each reserved nothing, and 0.02 was spent).
    gate = asyncio.Event()
    settings = make_settings(tmp_path, prefix, daily_budget_usd=0.012, concurrency=4)
    async with Harness(settings, redis, judge_preferring(None), gate=gate) as h:
        for i in range(4):
            h.shadow.record(cheap_event(i))
        await asyncio.sleep(0.2)  # every worker has reserved (or been refused) before any run ends
        gate.set()
        await wait_until(lambda: h.shadow.counters.completed + h.shadow.counters.over_budget == 4, "samples left")
        # The cost of a run is known now: of four more, as many run as fit in what is left.
        gate.clear()
        for i in range(4, 8):
            h.shadow.record(cheap_event(i))
        await asyncio.sleep(0.2)
        gate.set()
        await h.settle()
        spent = await h.shadow.budget.spent()
    assert h.judge.calls == 2 and spent == pytest.approx(0.010)


async def test_a_new_replica_reserves_what_runs_cost_on_the_others(
    tmp_path: Path, prefix: str, redis: AsyncRedis
) -> None:
    # Replica A has run one sample (0.005 of 0.012 spent). Replica B starts and gets four samples at once:
    # the cost it reserves per run is shared, not learned again in each process from zero.
    settings = make_settings(tmp_path, prefix, daily_budget_usd=0.012, concurrency=4)
    async with Harness(settings, redis, judge_preferring(None)) as a:
        a.shadow.record(cheap_event(0))
        await a.settle()
    gate = asyncio.Event()
    async with Harness(settings, redis, judge_preferring(None), gate=gate) as b:
        for i in range(1, 5):
            b.shadow.record(cheap_event(i))
        await asyncio.sleep(0.2)
        gate.set()
        await b.settle()
        spent = await b.shadow.budget.spent()
    assert b.judge.calls == 1 and b.shadow.counters.over_budget == 3 and spent == pytest.approx(0.010)


async def test_shutdown_lets_runs_in_progress_finish_and_starts_no_other(
    tmp_path: Path, prefix: str, redis: AsyncRedis
) -> None:
    # Starting a queued sample while stopping paid for a mixture run that the grace period then cut off.
    gate = asyncio.Event()
    settings = make_settings(tmp_path, prefix, concurrency=1)
    async with Harness(settings, redis, judge_preferring(None), gate=gate) as h:
        for i in range(3):
            h.shadow.record(cheap_event(i))
        await wait_until(lambda: [p.calls for p in h.proposers] == [1, 1, 1], "the first run did not start")
        closing = asyncio.create_task(h.shadow.close())
        await asyncio.sleep(0.05)
        gate.set()
        await closing
        h.shadow.record(cheap_event(9))  # after close: dropped, not queued
        outcomes = await h.settle()
    assert [outcome["request_id"] for outcome in outcomes] == ["r0"]
    assert [p.calls for p in h.proposers] == [1, 1, 1] and h.judge.calls == 1
    assert h.shadow.counters.dropped == 3


async def test_an_unexpected_error_in_one_run_does_not_stop_shadow_evaluation(
    tmp_path: Path, prefix: str, redis: AsyncRedis
) -> None:
    calls = 0

    def judge(request: CompletionRequest) -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("a bug")  # e.g. in a provider or a redaction hook
        return "VERDICT: TIE"

    async with Harness(make_settings(tmp_path, prefix, concurrency=1), redis, judge) as h:
        h.shadow.record(cheap_event(0))
        await wait_until(lambda: h.shadow.counters.failed == 1, "the failing run was not counted")
        h.shadow.record(cheap_event(1))
        await wait_until(lambda: h.shadow.counters.completed == 1, "the worker stopped after the bug")
        outcomes = await h.settle()
    assert [outcome["request_id"] for outcome in outcomes] == ["r1"]


async def test_a_run_cut_off_at_shutdown_is_still_charged(tmp_path: Path, prefix: str, redis: AsyncRedis) -> None:
    # Its calls were under way and are billed: it keeps what it reserved (the cost of a run), where it
    # used to settle at nothing.
    gate = asyncio.Event()  # never set: the proposers are still answering at shutdown
    settings = make_settings(tmp_path, prefix, stop_grace_s=0.1)
    async with Harness(settings, redis, judge_preferring(None), gate, RUN_COST) as h:
        h.shadow.record(cheap_event(0))
        await wait_until(lambda: [p.calls for p in h.proposers] == [1, 1, 1], "the run did not start")
        await h.shadow.close()
    assert await h.shadow.budget.spent() == pytest.approx(RUN_COST["mixture"])
    assert h.shadow.counters.completed == 0
