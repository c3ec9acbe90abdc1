"""Running one route: the cheap model, the single strong model, or the mixture. Streaming or not."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass, field

from router.mixture import CallRecord, MixtureEngine, MixtureResult
from router.providers.base import CallResult, CompletionRequest, Provider
from router.providers.registry import ProviderSet


@dataclass(slots=True)
class RouteResult:
    text: str = ""
    finish_reason: str = "stop"
    model: str = ""
    calls: list[CallRecord] = field(default_factory=list)
    fallback: str | None = None

    @property
    def cost_usd(self) -> float:
        return sum(call.cost_usd for call in self.calls)


def _single(route: str, providers: ProviderSet) -> Provider:
    return providers.strong if route == "strong" else providers.cheap


def models_for(route: str, providers: ProviderSet) -> list[str]:
    """The upstream models that answer a route: part of the cache key."""
    if route == "mixture":
        return [p.name for p in providers.proposers] + [providers.aggregator.name]
    return [_single(route, providers).name]


def _from_mixture(result: MixtureResult, aggregator: str) -> RouteResult:
    return RouteResult(result.text, result.finish_reason, aggregator, result.calls, result.fallback)


async def run_route(
    route: str, request: CompletionRequest, providers: ProviderSet, engine: MixtureEngine
) -> RouteResult:
    """Raises ProviderError (single model failed) or QuorumError (the mixture could not answer)."""
    if route == "mixture":
        return _from_mixture(await engine.run(request), providers.aggregator.name)
    provider = _single(route, providers)
    result = await provider.complete(request)
    return RouteResult(result.text, result.finish_reason, result.model, [CallRecord.from_result(result, route)])


async def stream_route(
    route: str, request: CompletionRequest, providers: ProviderSet, engine: MixtureEngine, out: RouteResult
) -> AsyncGenerator[str, None]:
    """Yields text deltas; fills `out` with the finished result (text, calls, cost) at the end."""
    if route == "mixture":
        out.model = providers.aggregator.name
        async for item in engine.stream(request):
            if isinstance(item, str):
                yield item
            else:
                finished = _from_mixture(item, out.model)
                out.text, out.finish_reason, out.calls, out.fallback = (
                    finished.text,
                    finished.finish_reason,
                    finished.calls,
                    finished.fallback,
                )
        return
    provider = _single(route, providers)
    out.model = provider.name
    async for part in provider.stream(request):
        if isinstance(part, CallResult):
            out.text, out.finish_reason = part.text, part.finish_reason
            out.calls.append(CallRecord.from_result(part, route))
        else:
            yield part
