"""Running one route: the cheap model, the single strong model, or the mixture. Streaming or not."""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field

from router.calls import CallRecord, replaced_calls
from router.config import ModelEntry
from router.mixture import MixtureEngine, MixtureResult
from router.providers.base import CallMeter, CallResult, CompletionRequest, Provider
from router.providers.registry import ProviderSet


@dataclass(slots=True)
class RouteResult:
    text: str = ""
    finish_reason: str = "stop"
    model: str = ""
    calls: list[CallRecord] = field(default_factory=list)
    fallback: str | None = None
    meter: CallMeter = field(default_factory=CallMeter)  # which entry answers (the single model, or the aggregator)
    started: float = field(default_factory=time.perf_counter)  # when the route began

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


async def run_route(
    route: str,
    request: CompletionRequest,
    providers: ProviderSet,
    engine: MixtureEngine,
    out: RouteResult | None = None,
) -> RouteResult:
    """Fills `out` (or a new result) and returns it; its calls are added as they finish, so a caller
    that cancels this still knows what was paid for. Raises ProviderError (single model failed) or
    QuorumError (the mixture could not answer)."""
    out = RouteResult() if out is None else out
    if route == "mixture":
        out.model = providers.aggregator.name
        mixture = await engine.run(request, MixtureResult(calls=out.calls), out.meter)
        out.text, out.finish_reason, out.fallback = mixture.text, mixture.finish_reason, mixture.fallback
        out.model = mixture.model or out.model
        return out
    provider = _single(route, providers)
    out.model = provider.name
    try:
        result = await provider.complete(request, out.meter)
    finally:  # a call that timed out before its fallback entry took over was billed too (once, however this ends)
        out.calls.extend(replaced_calls(out.meter, route))
    out.text, out.finish_reason, out.model = result.text, result.finish_reason, result.model
    out.calls.append(CallRecord.from_result(result, route))
    return out


async def stream_route(
    route: str, request: CompletionRequest, providers: ProviderSet, engine: MixtureEngine, out: RouteResult
) -> AsyncGenerator[str, None]:
    """Yields text deltas; fills `out` with the finished result (text, cost) at the end and with each
    upstream call as it finishes (a client that leaves mid-answer has still paid for the proposers)."""
    if route == "mixture":
        out.model = providers.aggregator.name
        mixture = MixtureResult(calls=out.calls)
        async for item in engine.stream(request, mixture, out.meter):
            if isinstance(item, str):
                out.fallback = mixture.fallback  # known before the first delta when the aggregator failed
                if out.fallback is None:
                    out.model = _answering(out, providers.aggregator)
                yield item
            else:
                out.text, out.finish_reason, out.fallback = item.text, item.finish_reason, item.fallback
        return
    provider = _single(route, providers)
    out.model = provider.name
    try:
        async for part in provider.stream(request, out.meter):
            # A call that timed out before its fallback entry took over was billed too: logged before the first
            # words, after which the client may leave.
            out.calls.extend(replaced_calls(out.meter, route))
            if isinstance(part, CallResult):
                out.text, out.finish_reason = part.text, part.finish_reason
                out.calls.append(CallRecord.from_result(part, route))
            else:
                out.model = _answering(out, provider)
                yield part
    finally:
        out.calls.extend(replaced_calls(out.meter, route))


def stand_in(route: str, providers: ProviderSet, out: RouteResult) -> str | None:
    """What answered in place of the route's own answer: "proposer" (the aggregator failed and the most
    agreed-upon proposer answer stands), "entry" (a configured fallback entry answered for the single
    model), or None. A rating or a judge's verdict on such an answer says nothing of what the route
    would have answered. (The aggregator's fallback entry still aggregates the proposers' answers: the
    answer is a mixture's.)"""
    if route == "mixture" or out.fallback is not None:
        return out.fallback
    return "entry" if out.model and out.model != _single(route, providers).name else None


def answered_as_configured(route: str, providers: ProviderSet, out: RouteResult) -> bool:
    """Whether the route's own models gave the answer, every call succeeding: not a fallback entry
    standing in for one, nor a mixture short of a proposer or of its aggregator. Only such an answer is
    cached, under a key that names those models, for later requests that would get the full answer."""
    if out.fallback is not None or any(call.status != "ok" for call in out.calls):
        return False
    return {call.model for call in out.calls} == set(models_for(route, providers))


def _still_answering(route: str, out: RouteResult) -> tuple[str, ModelEntry | None] | None:
    """The role of the call a cut-off route left unfinished (the single model's, or the aggregator's)
    and the entry the meter says was answering; None when that call finished or a proposer's answer
    stood in for the aggregator's. (A call its fallback entry took over is logged, but did not finish it.)"""
    role = "aggregator" if route == "mixture" else route
    if out.fallback is not None or any(call.role == role and not call.replaced_by_fallback for call in out.calls):
        return None
    return role, out.meter.entry


def call_latency(out: RouteResult, now: float) -> float:
    """How long the call that ended the route at `now` ran (cut off, or failed): since the meter saw its
    entry first called (the aggregator's, after its proposers; a fallback's, after its primary failed;
    retries included), else since the route began."""
    began = out.meter.started if out.meter.started is not None else out.started
    return max(0.0, now - began)


def timed_out_call(route: str, providers: ProviderSet, out: RouteResult, now: float) -> CallRecord | None:
    """The call still answering when the request's timeout cancelled the route at `now` (a perf_counter
    reading), which never reported back; None also when the mixture had not reached its aggregator
    (closing it logs its proposers). Once on the wire it was billed for the prompt it was sent (the meter's
    request: the aggregator's shows the proposers' answers), estimated and priced as the entry the meter
    names; a stream cut off here had sent no text. A call whose provider had not begun it, or that still
    waited for a free upstream connection, was sent nothing."""
    found = _still_answering(route, out)
    if found is None:
        return None
    role, entry = found
    latency = call_latency(out, now)
    sent = out.meter.sent_call()
    if sent is not None:
        return CallRecord.cut_off(sent[0], role, "error", latency, sent[1], error="timeout")
    if entry is None and route == "mixture":
        return None
    model = _single(route, providers).name if entry is None else entry.model
    return CallRecord(model, role, "error", latency, error="timeout")


def _answering(out: RouteResult, provider: Provider) -> str:
    """The model streaming the answer: the provider's own, or the fallback entry that took over."""
    return out.meter.entry.model if out.meter.entry is not None else provider.name


def abandoned_call(
    route: str, request: CompletionRequest, providers: ProviderSet, out: RouteResult, streamed: str, now: float
) -> CallRecord | None:
    """The upstream call a client cut off by leaving mid-stream at `now`, which was still billed for what it
    generated. Its usage comes only at the end of a stream, so the tokens are estimated from what the
    answering model was sent (the aggregator: with the proposers' answers it was shown) and the text
    sent so far, priced as that model (a fallback's, when it took over), as the meter says. A call that sent
    no text and was not yet on the wire (it waited for a free upstream connection) was billed nothing."""
    found = _still_answering(route, out)
    if found is None:
        return None
    role, entry = found
    answering = entry or (providers.aggregator if route == "mixture" else _single(route, providers)).entry
    latency = call_latency(out, now)
    if not streamed and not out.meter.sent:
        return CallRecord(answering.model, role, "late", latency, error="client_disconnected")
    sent = out.meter.request or request
    return CallRecord.cut_off(answering, role, "late", latency, sent, streamed, error="client_disconnected")
