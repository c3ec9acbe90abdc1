"""The shared upstream pool under more concurrent calls than it has connections: a call that never got a
connection before its deadline is the router's limit, not its model's failure."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable

import httpx
import pytest

from router.config import ModelEntry, ResilienceSettings
from router.providers.base import CallMeter, CallResult, CompletionRequest, ProviderError, Usage
from router.providers.openai_compat import OpenAICompatibleProvider, UpstreamClient, make_upstream_session
from router.providers.pricing import Prices
from router.resilience import Breakers, ResilientProvider
from router.routes import RouteResult, timed_out_call
from router.simulator.runner import SimulatorServer
from tests.conftest import entry, sim_stats
from tests.test_chat_api import ASK, calls_by_model, chat, logged_event, patch_model
from tests.test_routes import providers

POOL_SIZE = 2
CONFIG = ResilienceSettings(failure_threshold=2, backoff_base_s=0.0)


def request(timeout_s: float) -> CompletionRequest:
    return CompletionRequest([{"role": "user", "content": "hi"}], timeout_s=timeout_s)


@pytest.fixture(params=["aiohttp", "httpx"])
async def small_pool(request: pytest.FixtureRequest) -> AsyncIterator[UpstreamClient]:
    if request.param == "aiohttp":
        session = make_upstream_session(max_connections=POOL_SIZE)
        yield session
        await session.close()
    else:
        async with httpx.AsyncClient(limits=httpx.Limits(max_connections=POOL_SIZE)) as client:
            yield client


def resilient(pool: UpstreamClient, sim_url: str, name: str, breakers: Breakers) -> ResilientProvider:
    model_entry = ModelEntry.model_validate(entry(sim_url, name))
    return ResilientProvider(OpenAICompatibleProvider(model_entry, Prices(0.0, 0.0), pool), breakers.get(name), CONFIG)


async def test_a_hanging_model_holding_every_connection_does_not_cool_down_the_models_queued_behind_it(
    small_pool: UpstreamClient, sim: SimulatorServer, sim_url: str
) -> None:
    async with httpx.AsyncClient() as http:
        (await http.patch(f"{sim.root_url}/_sim/models/prop-a", json={"hang_rate": 1.0})).raise_for_status()
    breakers = Breakers(CONFIG)
    hanging, cheap = (resilient(small_pool, sim_url, name, breakers) for name in ("prop-a", "cheap-1"))
    held = [asyncio.create_task(hanging.complete(request(10.0))) for _ in range(POOL_SIZE)]
    try:
        await asyncio.sleep(0.2)  # both connections taken, waiting on the hanging model
        for _ in range(3):
            with pytest.raises(ProviderError) as raised:
                await cheap.complete(request(0.2))
            assert raised.value.kind == "timeout" and not raised.value.reached_upstream
    finally:
        for task in held:
            task.cancel()
        await asyncio.gather(*held, return_exceptions=True)
    assert sim_stats(sim)["models"]["cheap-1"]["calls"] == 0  # the model never saw them
    assert breakers.get("cheap-1").state == "closed"
    # Once connections are free again the model answers at once.
    assert isinstance(await cheap.complete(request(5.0)), CallResult)


async def test_a_call_that_waited_for_a_connection_has_only_the_rest_of_its_deadline(
    sim: SimulatorServer, sim_url: str
) -> None:
    async with httpx.AsyncClient() as http:
        (await http.patch(f"{sim.root_url}/_sim/models/cheap-1", json={"ttft_s": 0.3})).raise_for_status()
    session = make_upstream_session(max_connections=1)
    try:
        provider = OpenAICompatibleProvider(ModelEntry.model_validate(entry(sim_url, "cheap-1")), Prices(0, 0), session)
        first = asyncio.create_task(provider.complete(request(5.0)))
        await asyncio.sleep(0.05)
        with pytest.raises(ProviderError) as raised:  # waits ~0.25 s for the slot, so 0.15 s are left for 0.3 s
            await provider.complete(request(0.4))
        assert raised.value.kind == "timeout" and raised.value.reached_upstream
        assert isinstance(await first, CallResult)
    finally:
        await session.close()


@pytest.mark.parametrize("streaming", [False, True])
async def test_a_call_cut_off_while_it_waited_for_a_connection_was_sent_nothing(
    sim: SimulatorServer, sim_url: str, streaming: bool
) -> None:
    async with httpx.AsyncClient() as http:
        (await http.patch(f"{sim.root_url}/_sim/models/cheap-1", json={"hang_rate": 1.0})).raise_for_status()
    session = make_upstream_session(max_connections=1)
    provider = OpenAICompatibleProvider(ModelEntry.model_validate(entry(sim_url, "cheap-1")), Prices(0, 0), session)

    async def call(meter: CallMeter) -> None:
        if streaming:
            async for _ in provider.stream(request(10.0), meter):
                pass
        else:
            await provider.complete(request(10.0), meter)

    holding, waiting = RouteResult(), RouteResult()
    first = asyncio.create_task(call(holding.meter))
    await asyncio.sleep(0)  # its first step takes the one connection (free: no wait), for a call that hangs upstream
    second = asyncio.create_task(call(waiting.meter))
    try:
        await asyncio.sleep(0.05)
        assert session.slots.locked() and waiting.meter.entry is provider.entry and not second.done()
    finally:  # the request's timeout cuts both off
        for task in (first, second):
            task.cancel()
        await asyncio.gather(first, second, return_exceptions=True)
        await session.close()
    now = time.perf_counter()
    sent = timed_out_call("cheap", providers(), holding, now)
    assert sent is not None and sent.usage_estimated and sent.usage.prompt_tokens > 0 and sent.cost_usd > 0
    unsent = timed_out_call("cheap", providers(), waiting, now)  # was billed for the prompt too
    assert unsent is not None and (unsent.model, unsent.error) == ("openai/cheap-1", "timeout")
    assert (unsent.usage, unsent.cost_usd, unsent.usage_estimated) == (Usage(), 0.0, False)


async def test_many_concurrent_streams_share_a_small_pool_and_give_every_connection_back(
    sim: SimulatorServer, sim_url: str
) -> None:
    async with httpx.AsyncClient() as http:
        changes = {"ttft_s": 0.02, "per_token_s": 0.001, "drop_stream_rate": 0.3}
        (await http.patch(f"{sim.root_url}/_sim/models/cheap-1", json=changes)).raise_for_status()
    session = make_upstream_session(max_connections=4)
    provider = OpenAICompatibleProvider(ModelEntry.model_validate(entry(sim_url, "cheap-1")), Prices(0, 0), session)

    async def consume(leave: bool) -> str:
        items = provider.stream(request(10.0))
        try:
            async for item in items:
                if leave:
                    return "left"  # the client went away after the first delta
                if isinstance(item, CallResult):
                    return "finished"
        except ProviderError as exc:
            return exc.kind
        finally:
            await items.aclose()  # type: ignore[attr-defined]
        return "no result"

    try:
        # Streams that end at the upstream (finished, or cut by it): its count of calls in flight is exact.
        ended = await asyncio.gather(*(consume(leave=False) for _ in range(40)))
        assert set(ended) <= {"finished", "connection"} and "finished" in ended
        assert sim_stats(sim)["models"]["cheap-1"]["max_in_flight"] <= 4
        # Streams left mid-way too (the upstream notices a client that left only a moment later, so its
        # count is not a measure here): every slot is given back, however its stream ended.
        mixed = await asyncio.gather(*(consume(leave=index % 3 == 0) for index in range(40)))
        assert "left" in mixed and set(mixed) <= {"left", "finished", "connection"}
        for _ in range(4):
            await asyncio.wait_for(session.slots.acquire(), 0.5)
    finally:
        await session.close()


def test_the_services_pool_holds_the_configured_number_of_calls_in_flight(
    make_service: Callable[..., str], sim: SimulatorServer, sim_url: str, redis_url: str
) -> None:
    prefix = f"t{uuid.uuid4().hex[:10]}"
    base = make_service(
        redis_url=redis_url,
        redis_prefix=prefix,
        limits={"max_upstream_in_flight": 1},
        cheap=entry(sim_url, "cheap-1", timeout_s=0.5),  # its wait for a connection ends long before the request's
    )
    patch_model(sim, "agg-1", per_token_s=0.2)  # 40 tokens: the aggregator's stream holds the one connection
    payload = {"model": "moa-router", "messages": ASK, "stream": True}
    with httpx.stream(
        "POST", f"{base}/v1/chat/completions", json=payload, headers={"x-moa-route": "mixture"}, timeout=30
    ) as held:
        lines = held.iter_lines()
        while "content" not in next(lines):
            pass
        response = chat(base, "cheap")
        assert response.status_code == 504 and response.json()["error"]["code"] == "upstream_timeout"
        assert "cheap-1" not in calls_by_model(sim)  # it never reached the upstream (with 512 in flight it did)
    event = logged_event(redis_url, prefix, response.headers["x-request-id"])
    assert event is not None
    [call] = event["calls"]  # nothing was sent, so nothing was billed: no estimate of its prompt
    assert (call["model"], call["error"], call["prompt_tokens"], call["cost_usd"]) == (
        "openai/cheap-1",
        "timeout",
        0,
        0,
    )


async def test_an_upstream_session_refuses_a_pool_of_no_connections() -> None:
    with pytest.raises(ValueError, match="at least one"):
        make_upstream_session(max_connections=0)
