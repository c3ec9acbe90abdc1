"""An upstream's failure answer, classified the same on both provider paths: its retry-after is honoured."""

from __future__ import annotations

import email.utils
from typing import Any

import httpx
import pytest

from router.config import ModelEntry, ResilienceSettings
from router.providers.base import CompletionRequest, Provider, ProviderError
from router.providers.litellm_provider import LiteLLMProvider
from router.providers.openai_compat import OpenAICompatibleProvider, make_upstream_session
from router.providers.pricing import Prices
from router.providers.upstream_errors import error_for_status, retry_after_s
from router.resilience import Breakers, ResilientProvider, counts_against_model, fallback_helps, resilient
from router.simulator.runner import SimulatorServer
from tests.conftest import entry, sim_stats

REQUEST = CompletionRequest([{"role": "user", "content": "hi"}], timeout_s=5.0)


def headers(**values: str) -> Any:
    return {name.replace("_", "-"): value for name, value in values.items()}.get


def test_retry_after_ms_is_read_before_the_rounded_retry_after() -> None:
    assert retry_after_s(headers(retry_after="1", retry_after_ms="250")) == 0.25
    assert retry_after_s(headers(retry_after="1.5")) == 1.5
    assert retry_after_s(headers()) is None


def test_retry_after_may_be_an_http_date() -> None:
    now = 1_800_000_000.0
    assert retry_after_s(headers(retry_after=email.utils.formatdate(now + 7, usegmt=True)), lambda: now) == 7.0
    assert retry_after_s(headers(retry_after=email.utils.formatdate(now - 7, usegmt=True)), lambda: now) == 0.0


@pytest.mark.parametrize("value", ["-3", "nan", "inf", "soon"])
def test_a_retry_after_that_means_nothing_is_none(value: str) -> None:
    assert retry_after_s(headers(retry_after=value)) is None
    assert retry_after_s(headers(retry_after_ms=value)) is None


@pytest.mark.parametrize(
    ("status", "kind"),
    [(429, "rate_limit"), (401, "auth"), (403, "auth"), (400, "bad_request"), (422, "bad_request"), (503, "upstream")],
)
def test_statuses_are_classified(status: int, kind: str) -> None:
    error = error_for_status("m", status, headers(retry_after="2"), "detail")
    assert (error.kind, error.status) == (kind, status)
    assert error.retry_after_s == (2.0 if kind in ("rate_limit", "upstream") else None)


@pytest.mark.parametrize("status", [402, 404, 410])
def test_a_model_unknown_gone_or_unpaid_is_the_entrys_fault_not_the_requests(status: int) -> None:
    error = error_for_status("m", status, headers(), "The model `m` does not exist")
    assert (error.kind, error.status) == ("upstream", status)
    assert counts_against_model(error) and fallback_helps(error)
    config = ResilienceSettings()
    wrapped = ResilientProvider(provider("litellm", "http://127.0.0.1:9"), Breakers(config).get("m"), config)
    assert wrapped.retry_delay(error, attempt=1) is None  # a retry would get the same answer


async def test_a_model_the_upstream_does_not_know_is_answered_by_its_fallback(sim_url: str) -> None:
    config = ResilienceSettings(failure_threshold=2, backoff_base_s=0.0)
    breakers = Breakers(config)
    retired = {**entry(sim_url, "cheap-1"), "model": "openai/retired-model", "fallback": entry(sim_url, "cheap-1")}
    session = make_upstream_session()
    try:
        chain = resilient(
            ModelEntry.model_validate(retired),
            lambda model_entry: OpenAICompatibleProvider(model_entry, Prices(0.0, 0.0), session),
            config,
            breakers,
        )
        answers = [(await chain.complete(REQUEST)).model for _ in range(2)]
    finally:
        await session.close()
    assert answers == ["openai/cheap-1"] * 2  # the simulator answers 404 for a model it does not serve
    assert breakers.get("openai/retired-model").state == "open"


def provider(path: str, sim_url: str, client: httpx.AsyncClient | None = None) -> Provider:
    model_entry = ModelEntry.model_validate(entry(sim_url, "cheap-1"))
    if path == "litellm":
        return LiteLLMProvider(model_entry, Prices(0.0, 0.0))
    assert client is not None
    return OpenAICompatibleProvider(model_entry, Prices(0.0, 0.0), client)


async def rate_limit(sim: SimulatorServer, retry_after: float) -> None:
    async with httpx.AsyncClient() as http:
        changes = {"rate_limit_rate": 1.0, "retry_after_s": retry_after}
        (await http.patch(f"{sim.root_url}/_sim/models/cheap-1", json=changes)).raise_for_status()


@pytest.mark.parametrize("path", ["lean", "litellm"])
async def test_a_429_carries_the_exact_wait_the_upstream_asked_for(
    path: str, sim: SimulatorServer, sim_url: str
) -> None:
    await rate_limit(sim, 0.25)  # the simulator sends retry-after: 1 and retry-after-ms: 250
    async with httpx.AsyncClient() as client:
        with pytest.raises(ProviderError) as raised:
            await provider(path, sim_url, client).complete(REQUEST)
    assert raised.value.kind == "rate_limit" and raised.value.retry_after_s == 0.25


async def test_a_429_is_retried_after_its_exact_wait_within_a_short_deadline(
    sim: SimulatorServer, sim_url: str
) -> None:
    await rate_limit(sim, 0.3)
    config = ResilienceSettings(max_attempts=3, backoff_base_s=0.0)
    session = make_upstream_session()
    try:
        inner = provider("lean", sim_url, session)  # type: ignore[arg-type]
        resilient = ResilientProvider(inner, Breakers(config).get(inner.name), config)
        with pytest.raises(ProviderError):
            await resilient.complete(CompletionRequest(REQUEST.messages, timeout_s=0.8))
    finally:
        await session.close()
    # Waits of 0.3 s fit twice in the 0.8 s deadline; the whole second the header rounds to did not fit once.
    assert sim_stats(sim)["models"]["cheap-1"]["calls"] == 3


async def test_a_failure_through_litellm_prints_nothing(
    sim: SimulatorServer, sim_url: str, capfd: pytest.CaptureFixture[str]
) -> None:
    await rate_limit(sim, 0.0)
    with pytest.raises(ProviderError):
        await provider("litellm", sim_url).complete(REQUEST)
    assert capfd.readouterr().out == ""  # litellm printed a help banner to stdout on every upstream failure
