"""A shadow run's calls that timed out after they were sent (the other route's single model, the judge) were
billed by the upstream for their prompt: the run's cost (the shadow budget, stats and the outcome) counts them,
as the request path does."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis as AsyncRedis

from router.providers.base import CallMeter, CallResult, CompletionRequest, ProviderError
from router.providers.pricing import estimate_prompt_tokens
from router.providers.registry import ProviderSet
from tests.support.shadow import Harness, Scripted, cheap_event, judge_preferring, make_settings

PRICE_IN = 1e-6


class TimesOutAfterSending(Scripted):
    """Priced; told the meter it was sent (as the real providers do), then timed out: billed, no usage."""

    def __init__(self, name: str) -> None:
        super().__init__(name, lambda request: "")
        self.entry = self.entry.model_copy(update={"input_cost_per_token": PRICE_IN, "output_cost_per_token": 2e-6})
        self.seen: list[CompletionRequest] = []

    async def complete(self, request: CompletionRequest, meter: CallMeter | None = None) -> CallResult:
        self.calls += 1
        self.seen.append(request)
        if meter is not None:
            meter.start(self.entry, request)
            meter.sent = True
        raise ProviderError(self.name, "timeout", "no answer in time")


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[AsyncRedis]:
    client: Any = AsyncRedis.from_url(redis_url)
    yield client
    await client.aclose()


def replace_providers(harness: Harness, **roles: Any) -> None:
    current = harness.shadow._providers
    harness.shadow._providers = ProviderSet(  # the evaluator's providers: the run's and the judge's
        roles.get("cheap", current.cheap),
        current.proposers,
        current.aggregator,
        roles.get("judge", current.judge),
        current.strong,
    )


async def test_a_cheap_shadow_call_that_timed_out_after_it_was_sent_counts_in_the_runs_cost(
    tmp_path: Path, redis: AsyncRedis
) -> None:
    settings = make_settings(tmp_path, f"t{uuid.uuid4().hex[:10]}", cheap_sample_rate=0.0, mixture_sample_rate=1.0)
    cheap = TimesOutAfterSending("cheap")
    async with Harness(settings, redis, judge_preferring("cheap")) as harness:
        replace_providers(harness, cheap=cheap)
        harness.shadow.record(cheap_event(1, route="mixture"))
        [outcome] = await harness.settle()
    assert outcome["error"] == "openai/cheap: timeout" and cheap.calls == 1
    billed = estimate_prompt_tokens(cheap.seen[0]) * PRICE_IN
    assert billed > 0 and outcome["shadow_cost_usd"] == pytest.approx(billed)  # was 0
    assert harness.shadow.counters.spent_usd == pytest.approx(billed)


async def test_a_judge_call_that_timed_out_after_it_was_sent_counts_in_the_runs_cost(
    tmp_path: Path, redis: AsyncRedis
) -> None:
    judge = TimesOutAfterSending("judge")
    async with Harness(make_settings(tmp_path, f"t{uuid.uuid4().hex[:10]}"), redis, judge_preferring(None)) as harness:
        replace_providers(harness, judge=judge)
        harness.shadow.record(cheap_event(0))
        [outcome] = await harness.settle()
    assert outcome["error"] == "openai/judge: timeout" and judge.calls == 1
    billed = estimate_prompt_tokens(judge.seen[0]) * PRICE_IN
    # The mixture's four calls (0.001 each) and the judge's prompt.
    assert billed > 0 and outcome["shadow_cost_usd"] == pytest.approx(4 * 0.001 + billed)  # was 4 * 0.001
