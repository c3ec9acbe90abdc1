"""A call that failed without being billed (a 503, a 429, a dropped connection) and now waits to be retried has
nothing on the wire: when it is cut off during that wait (the mixture gave up on its quorum, the aggregator's
first words did not come in time), it is not billed for a prompt: the attempt that failed was not billed, and
the retry was never sent."""

from __future__ import annotations

import asyncio

import pytest

from router.config import ResilienceSettings
from router.mixture import MixtureResult, QuorumError
from router.providers.base import CallMeter, CompletionRequest, ProviderError, Usage
from router.resilience import Breakers, ResilientProvider
from tests.test_mixture import engine
from tests.test_resilience import ScriptedProvider, err
from tests.test_routes import PricedProvider

REQUEST = CompletionRequest([{"role": "user", "content": "what is the capital of France?"}], timeout_s=120.0)


def waits_to_retry(name: str, failure: ProviderError, backoff_s: float = 20.0) -> ResilientProvider:
    """A priced provider whose first attempt fails with `failure` (sent, not billed), then retries after a wait."""
    scripted = ScriptedProvider(name, [failure])
    scripted._entry = scripted.entry.model_copy(update={"input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6})
    settings = ResilienceSettings(backoff_base_s=backoff_s, backoff_max_s=backoff_s)
    return ResilientProvider(scripted, Breakers(settings).get(scripted.name), settings)


async def test_a_proposer_cut_off_while_waiting_to_retry_is_not_billed() -> None:
    # Two proposers fail at once: the quorum of 2 cannot be met, and the third, waiting to retry its 503, is cut off.
    failing = [PricedProvider("a"), PricedProvider("b")]
    for provider in failing:
        provider.fail = True
    retrying = waits_to_retry("c", err("upstream", 503, model="openai/c"))
    mixture = engine([*failing, retrying], PricedProvider("agg"), quorum=2, proposer_deadline_s=60.0)  # type: ignore[list-item]
    with pytest.raises(QuorumError) as raised:
        await mixture.run(REQUEST)
    [cut] = [call for call in raised.value.calls if call.model == "openai/c"]
    assert cut.status == "late"
    assert (cut.usage, cut.cost_usd, cut.usage_estimated) == (Usage(), 0.0, False)  # was its prompt, estimated


async def test_an_aggregator_stream_cut_off_while_waiting_to_retry_is_not_billed() -> None:
    # Its 429 asks for a wait that ends within the request's deadline but past the first words' (2 s less 0.2 s).
    aggregator = waits_to_retry("agg", err("rate_limit", 429, retry_after=1.95, model="openai/agg"))
    mixture = engine([PricedProvider("a"), PricedProvider("b")], aggregator, quorum=2)  # type: ignore[arg-type]
    timed = CompletionRequest(REQUEST.messages, timeout_s=2.0)
    items = [item async for item in mixture.stream(timed, meter=CallMeter())]
    result = items[-1]
    assert isinstance(result, MixtureResult) and result.fallback == "proposer"
    [cut] = [call for call in result.calls if call.model == "openai/agg"]
    assert (cut.status, cut.error) == ("error", "timeout")
    assert (cut.usage, cut.cost_usd, cut.usage_estimated) == (Usage(), 0.0, False)  # was its prompt, estimated


async def test_the_meter_says_nothing_is_on_the_wire_while_a_retry_waits() -> None:
    provider = waits_to_retry("a", err("upstream", 503, model="openai/a"))
    meter = CallMeter()
    call = asyncio.create_task(provider.complete(REQUEST, meter))
    await asyncio.sleep(0.1)  # the 503 came back at once; the retry now waits
    try:
        assert meter.entry is not None and meter.entry.model == "openai/a"
        assert not meter.sent and meter.sent_call() is None
        late = ProviderError("openai/a", "timeout", "no answer before the deadline")
        assert meter.billed_prompt(late) is None
    finally:
        call.cancel()
        await asyncio.gather(call, return_exceptions=True)
