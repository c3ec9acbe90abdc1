"""Builds the configured providers at startup, with one shared HTTP client."""

from __future__ import annotations

from dataclasses import dataclass

from router.config import ModelEntry, Settings
from router.providers.base import Provider
from router.providers.litellm_provider import LiteLLMProvider
from router.providers.openai_compat import OpenAICompatibleProvider, UpstreamClient
from router.providers.pricing import prices_for
from router.resilience import Breakers, resilient


def build_provider(entry: ModelEntry, client: UpstreamClient, lean: bool = True) -> Provider:
    """OpenAI-compatible entries take the lean path when `lean`; everything else goes through
    litellm. Both report the same CallResult, priced by the same function."""
    prices = prices_for(entry)  # fails at startup, not at the first request, when a price is unknown
    if lean and entry.provider == "openai":
        return OpenAICompatibleProvider(entry, prices, client)
    return LiteLLMProvider(entry, prices)


@dataclass(frozen=True, slots=True)
class ProviderSet:
    cheap: Provider
    proposers: tuple[Provider, ...]
    aggregator: Provider
    judge: Provider
    strong: Provider
    breakers: Breakers | None = None  # per-model circuit breakers (router.resilience), for health and metrics

    def all(self) -> tuple[Provider, ...]:
        return (self.cheap, *self.proposers, self.aggregator, self.judge, self.strong)


def build_providers(settings: Settings, client: UpstreamClient) -> ProviderSet:
    breakers = Breakers(settings.resilience)

    def make(entry: ModelEntry) -> Provider:
        # Every provider retries where safe and has a breaker per model, falling back per its entry.
        return resilient(
            entry, lambda e: build_provider(e, client, settings.lean_openai_path), settings.resilience, breakers
        )

    return ProviderSet(
        cheap=make(settings.cheap),
        proposers=tuple(make(entry) for entry in settings.proposers),
        aggregator=make(settings.aggregator),
        judge=make(settings.judge_entry),
        strong=make(settings.strong_entry),
        breakers=breakers,
    )
