"""The lean OpenAI-compatible provider over both HTTP clients it accepts (aiohttp, which the service uses,
and httpx), against the simulator over real HTTP; and the same upstream answer through litellm's path."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from router.config import ModelEntry
from router.providers.base import CallMeter, CallResult, CompletionRequest, ProviderError, Usage
from router.providers.litellm_provider import LiteLLMProvider
from router.providers.openai_compat import (
    OpenAICompatibleProvider,
    UpstreamClient,
    env_proxy,
    make_upstream_session,
)
from router.providers.pricing import estimate_prompt_tokens, estimate_tokens, prices_for
from router.redis_server import free_port
from router.simulator.runner import SimulatorServer
from tests.conftest import TEST_MODELS, entry, settings_dict

REQUEST = CompletionRequest([{"role": "user", "content": "Why is the sky blue? Explain briefly."}])


@pytest.fixture(params=["aiohttp", "httpx"])
async def client(request: pytest.FixtureRequest) -> AsyncIterator[UpstreamClient]:
    if request.param == "aiohttp":
        session = make_upstream_session()
        yield session
        await session.close()
    else:
        async with httpx.AsyncClient() as http:
            yield http


def lean(client: UpstreamClient, sim_url: str, name: str = "cheap-1", **extra: Any) -> OpenAICompatibleProvider:
    model_entry = ModelEntry.model_validate(entry(sim_url, name, **extra))
    return OpenAICompatibleProvider(model_entry, prices_for(model_entry), client)


async def streamed(
    provider: Any, request: CompletionRequest = REQUEST, meter: CallMeter | None = None
) -> tuple[list[str], CallResult]:
    deltas: list[str] = []
    async for item in provider.stream(request, meter):
        if isinstance(item, CallResult):
            return deltas, item
        deltas.append(item)
    raise AssertionError("the stream ended without its CallResult")


async def patch_model(sim: SimulatorServer, name: str, **changes: Any) -> None:
    async with httpx.AsyncClient() as http:
        (await http.patch(f"{sim.root_url}/_sim/models/{name}", json=changes)).raise_for_status()


async def test_a_completion_has_text_usage_and_cost(client: UpstreamClient, sim_url: str) -> None:
    result = await lean(client, sim_url).complete(REQUEST)
    _, input_price, output_price = TEST_MODELS["cheap-1"]
    assert result.model == "openai/cheap-1" and result.text and result.finish_reason == "stop"
    assert result.usage.completion_tokens > 0 and result.usage.prompt_tokens > 0
    assert not result.usage_estimated  # the upstream's own counts, not the router's estimate
    expected = result.usage.prompt_tokens * input_price + result.usage.completion_tokens * output_price
    assert result.cost_usd == pytest.approx(expected)


async def test_a_stream_adds_up_to_the_same_answer(client: UpstreamClient, sim_url: str) -> None:
    provider = lean(client, sim_url)
    deltas, result = await streamed(provider)
    completed = await provider.complete(REQUEST)
    assert deltas and "".join(deltas) == result.text == completed.text
    assert (result.usage, result.cost_usd, result.finish_reason) == (completed.usage, completed.cost_usd, "stop")


async def test_the_meter_is_told_of_each_call_as_it_begins(client: UpstreamClient, sim_url: str) -> None:
    provider = lean(client, sim_url)
    for call in (provider.complete, lambda request, meter: streamed(provider, request, meter)):
        meter = CallMeter()
        await call(REQUEST, meter)
        assert meter.entry is provider.entry and meter.request is REQUEST and meter.started is not None
        assert meter.sent  # it left the router: a call cut off from now on was billed for its prompt


async def test_max_tokens_cuts_the_answer_with_finish_reason_length(client: UpstreamClient, sim_url: str) -> None:
    request = CompletionRequest(REQUEST.messages, max_tokens=5)
    provider = lean(client, sim_url)
    completed = await provider.complete(request)
    _, result = await streamed(provider, request)
    for answer in (completed, result):
        assert (answer.finish_reason, answer.usage.completion_tokens) == ("length", 5)


@pytest.mark.parametrize(
    ("changes", "kind", "status"),
    [
        ({"rate_limit_rate": 1.0, "retry_after_s": 3.0}, "rate_limit", 429),
        ({"error_rate": 1.0}, "upstream", 500),
        ({"malformed_rate": 1.0}, "malformed", None),
    ],
)
async def test_failed_calls_are_classified(
    client: UpstreamClient, sim: SimulatorServer, sim_url: str, changes: dict[str, Any], kind: str, status: int | None
) -> None:
    await patch_model(sim, "cheap-1", **changes)
    provider = lean(client, sim_url)
    for call in (provider.complete(REQUEST), streamed(provider)):
        with pytest.raises(ProviderError) as raised:
            await call
        assert (raised.value.kind, raised.value.status) == (kind, status)
    if kind == "rate_limit":
        assert raised.value.retry_after_s == 3.0


async def test_a_stream_cut_off_midway_is_a_connection_error(
    client: UpstreamClient, sim: SimulatorServer, sim_url: str
) -> None:
    await patch_model(sim, "cheap-1", drop_stream_rate=1.0)
    with pytest.raises(ProviderError) as raised:
        await streamed(lean(client, sim_url))
    assert raised.value.kind == "connection"


async def cut_off(provider: Any, request: CompletionRequest = REQUEST) -> tuple[str, ProviderError]:
    """The text a stream sent before it failed, and its error."""
    deltas: list[str] = []
    try:
        async for item in provider.stream(request):
            if isinstance(item, str):
                deltas.append(item)
    except ProviderError as exc:
        return "".join(deltas), exc
    raise AssertionError("the stream did not fail")


def assert_billed_for(error: ProviderError, sent: str, request: CompletionRequest = REQUEST) -> None:
    """The error carries the call as the upstream billed it: the prompt and the text it sent, estimated."""
    partial = error.partial
    assert sent and partial is not None
    assert (partial.model, partial.text, partial.finish_reason) == ("openai/cheap-1", sent, "error")
    assert partial.usage_estimated
    assert partial.usage == Usage(estimate_prompt_tokens(request), estimate_tokens(sent))
    _, input_price, output_price = TEST_MODELS["cheap-1"]
    expected = partial.usage.prompt_tokens * input_price + partial.usage.completion_tokens * output_price
    assert partial.cost_usd == pytest.approx(expected) and partial.cost_usd > 0


async def test_a_stream_cut_off_midway_carries_the_call_it_was_billed_for(
    client: UpstreamClient, sim: SimulatorServer, sim_url: str
) -> None:
    await patch_model(sim, "cheap-1", drop_stream_rate=1.0)
    sent, error = await cut_off(lean(client, sim_url))
    assert error.kind == "connection"
    assert_billed_for(error, sent)


async def test_a_stream_that_times_out_midway_carries_the_call_it_was_billed_for(
    client: UpstreamClient, sim: SimulatorServer, sim_url: str
) -> None:
    await patch_model(sim, "cheap-1", per_token_s=5.0)  # the first word at once, the next one much later
    request = CompletionRequest(REQUEST.messages, timeout_s=1.0)
    sent, error = await cut_off(lean(client, sim_url), request)
    assert error.kind == "timeout"  # raised by the transport as the body is read
    assert_billed_for(error, sent, request)


async def test_a_stream_that_fails_before_any_text_carries_no_partial(
    client: UpstreamClient, sim: SimulatorServer, sim_url: str
) -> None:
    await patch_model(sim, "cheap-1", error_rate=1.0)
    sent, error = await cut_off(lean(client, sim_url))
    assert (sent, error.kind, error.partial) == ("", "upstream", None)


async def test_a_litellm_stream_cut_off_midway_carries_the_call_it_was_billed_for(
    sim: SimulatorServer, sim_url: str
) -> None:
    await patch_model(sim, "cheap-1", drop_stream_rate=1.0)
    model_entry = ModelEntry.model_validate(entry(sim_url, "cheap-1"))
    sent, error = await cut_off(LiteLLMProvider(model_entry, prices_for(model_entry)))
    assert_billed_for(error, sent)


async def test_a_slow_upstream_times_out(client: UpstreamClient, sim: SimulatorServer, sim_url: str) -> None:
    await patch_model(sim, "cheap-1", ttft_s=5.0)
    request = CompletionRequest(REQUEST.messages, timeout_s=0.2)
    provider = lean(client, sim_url)
    for call in (provider.complete(request), streamed(provider, request)):
        with pytest.raises(ProviderError) as raised:
            await call
        assert raised.value.kind == "timeout"


async def test_an_unreachable_upstream_is_a_connection_error(client: UpstreamClient) -> None:
    with pytest.raises(ProviderError) as raised:
        await lean(client, f"http://127.0.0.1:{free_port()}/v1").complete(REQUEST)
    assert raised.value.kind == "connection"


async def test_the_lean_path_and_litellm_agree_on_the_same_answer(sim_url: str) -> None:
    model_entry = ModelEntry.model_validate(entry(sim_url, "cheap-1"))
    general = LiteLLMProvider(model_entry, prices_for(model_entry))
    session = make_upstream_session()
    try:
        fast = OpenAICompatibleProvider(model_entry, prices_for(model_entry), session)
        meters = CallMeter(), CallMeter(), CallMeter(), CallMeter()
        pairs = [(await fast.complete(REQUEST, meters[0]), await general.complete(REQUEST, meters[1]))]
        pairs.append(((await streamed(fast, meter=meters[2]))[1], (await streamed(general, meter=meters[3]))[1]))
    finally:
        await session.close()
    assert all(meter.entry is model_entry and meter.request is REQUEST and meter.sent for meter in meters)
    for mine, theirs in pairs:
        assert (mine.model, mine.text, mine.finish_reason) == (theirs.model, theirs.text, theirs.finish_reason)
        assert (mine.usage, mine.usage_estimated) == (theirs.usage, theirs.usage_estimated)
        assert mine.cost_usd == pytest.approx(theirs.cost_usd)


def test_proxies_come_from_the_environment_unless_no_proxy_exempts_the_host(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    assert env_proxy("https://api.openai.com/v1/chat/completions") is None
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    monkeypatch.setenv("NO_PROXY", "localhost,127.0.0.1")
    assert env_proxy("https://api.openai.com/v1/chat/completions") == "http://proxy.internal:3128"
    assert env_proxy("http://api.openai.com/v1/chat/completions") is None  # no HTTP_PROXY
    assert env_proxy("https://127.0.0.1:8000/v1/chat/completions") is None


# Builds the service's state as startup does, then says which heavy libraries got imported.
_STARTUP_SCRIPT = """
import asyncio, sys
from contextlib import AsyncExitStack
from router.app import build_state
from router.config import load_settings

async def main() -> None:
    async with AsyncExitStack() as stack:
        await build_state(load_settings(sys.argv[1]), stack)
        print(sorted(name for name in ("litellm", "openai") if name in sys.modules))

asyncio.run(main())
"""


def test_a_service_with_only_openai_compatible_upstreams_never_imports_litellm(
    sim_url: str, redis_url: str, tmp_path: Path
) -> None:
    # litellm costs seconds and ~190 MiB to import. Its prices are still used: this cheap entry has none
    # of its own, so they come from litellm's cost map, read as JSON.
    settings = settings_dict(sim_url, tmp_path / "data", redis_url=redis_url)
    settings["cheap"] = {"model": "openai/gpt-4o-mini", "api_base": sim_url, "api_key": "sim-key"}
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(settings))
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root), "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    done = subprocess.run(
        [sys.executable, "-c", _STARTUP_SCRIPT, str(config)], capture_output=True, text=True, env=env, cwd=root,
        timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.parametrize(
    ("reported", "usage"),
    [
        ((12, 3), Usage(12, 3)),
        ((12.0, 3), Usage(12, 3)),
        ((10**30, 3), None),  # a count past 64 bits could not be logged
        ((-5, 3), None),  # a refund
        (("12", 3), None),
        ((None, 3), None),
    ],
    ids=["ints", "whole float", "huge", "negative", "string", "missing"],
)
def test_litellms_usage_is_taken_only_when_it_can_be_real(reported: tuple[Any, Any], usage: Usage | None) -> None:
    from types import SimpleNamespace

    from router.providers.litellm_provider import _usage

    response = SimpleNamespace(usage=SimpleNamespace(prompt_tokens=reported[0], completion_tokens=reported[1]))
    assert _usage(response) == usage
