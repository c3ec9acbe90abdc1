"""Shadow evaluation: sampling, the judge's verdict as a label, the daily budget, bounded work, and the
client never waiting for it. In-process tests use scripted providers and a real Redis; the service
tests run against the simulated fleet."""

from __future__ import annotations

import asyncio
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

from router.ledger import LedgerKeys
from router.providers.base import CompletionRequest, ProviderError
from router.shadow import judge_messages, mixture_verdict, parse_verdict
from tests.support.shadow import (
    RUN_COST,
    Harness,
    cheap_event,
    constant,
    judge_preferring,
    make_settings,
    wait_until,
)

Service = Callable[..., str]
TextFor = Callable[[CompletionRequest], str]


@pytest.fixture
def prefix() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


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
