"""One upstream call of a request as it is logged and counted: what it cost (reported by the upstream, or
estimated by the router for a call that never reported back) and how it ended."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from router.config import ModelEntry
from router.providers.base import CallMeter, CallResult, CompletionRequest, ProviderError, ReplacedCall, Usage
from router.providers.pricing import UnknownPriceError, estimate_prompt_tokens, estimate_tokens, prices_for

CallStatus = Literal["ok", "error", "late"]


@dataclass(frozen=True, slots=True)
class CallRecord:
    """One upstream call of a request, for cost accounting and the outcome log."""

    model: str
    role: str  # cheap | proposer | aggregator | strong | judge
    status: CallStatus
    latency_s: float
    usage: Usage = field(default_factory=Usage)
    cost_usd: float = 0.0
    layer: int = 0
    error: str | None = None
    usage_estimated: bool = False  # tokens counted by the router: the upstream reported none (or never could)
    # A failed call its fallback entry took over: the answer (or the failure) of its role is another call's.
    replaced_by_fallback: bool = False

    @classmethod
    def from_result(cls, result: CallResult, role: str, layer: int = 0, error: str | None = None) -> CallRecord:
        """A call that answered; with `error`, one whose answer could not be used (still billed)."""
        status: CallStatus = "ok" if error is None else "error"
        usage, cost, estimated = result.usage, result.cost_usd, result.usage_estimated
        return cls(result.model, role, status, result.latency_s, usage, cost, layer, error, estimated)

    @classmethod
    def from_error(
        cls, exc: ProviderError, role: str, latency_s: float, layer: int = 0, meter: CallMeter | None = None
    ) -> CallRecord:
        """A failed call. One whose stream failed mid-answer is logged with what it was billed (its partial);
        one timed out after it was sent, as the call's `meter` tells (CallMeter.billed_prompt), with the
        prompt it was sent (estimated: see cut_off), as is a call cut off by a deadline; any other failure,
        or a call that never left the router, was not billed."""
        part = exc.partial
        if part is None:
            billed = None if meter is None else meter.billed_prompt(exc)
            if billed is not None:
                entry, request = billed
                return cls.cut_off(entry, role, "error", latency_s, request, layer=layer, error=exc.kind)
            return cls(exc.model, role, "error", latency_s, layer=layer, error=exc.kind)
        usage, cost, estimated = part.usage, part.cost_usd, part.usage_estimated
        return cls(part.model, role, "error", part.latency_s, usage, cost, layer, exc.kind, estimated)

    @classmethod
    def cut_off(
        cls,
        entry: ModelEntry,
        role: str,
        status: CallStatus,
        latency_s: float,
        sent: CompletionRequest,
        text: str = "",
        *,
        layer: int = 0,
        error: str,
    ) -> CallRecord:
        """A call the router stopped waiting for (a deadline, the request's timeout, a client that left)
        before it reported its usage, after it was sent (the caller checks: CallMeter.sent). The upstream
        still billed the prompt it was sent (`sent`) and the text it generated so far (`text`, when known):
        those tokens are estimated, priced as `entry`."""
        usage = Usage(estimate_prompt_tokens(sent), estimate_tokens(text))
        try:
            cost = prices_for(entry).cost(usage)
        except UnknownPriceError:  # every configured model is priced at startup: only a hand-made entry is not
            cost = 0.0
        return cls(entry.model, role, status, latency_s, usage, cost, layer, error, usage_estimated=True)


def replaced_calls(meter: CallMeter | None, role: str, layer: int = 0) -> list[CallRecord]:
    """The calls of `role` that `meter` saw billed and then taken over by their fallback entry, not yet
    logged (each is handed out once): logged as from_error logs a call whose timeout ended it."""
    if meter is None or not meter.replaced:
        return []
    return [_replaced(call, role, layer) for call in meter.take_replaced()]


def _replaced(call: ReplacedCall, role: str, layer: int) -> CallRecord:
    record = CallRecord.cut_off(call.entry, role, "error", call.latency_s, call.request, layer=layer, error=call.error)
    return dataclasses.replace(record, replaced_by_fallback=True)


def total_usage(calls: Sequence[CallRecord]) -> Usage:
    """The tokens of several upstream calls, summed."""
    total = Usage()
    for call in calls:
        total = total + call.usage
    return total
