"""The Mixture-of-Agents engine: proposers in parallel under a deadline and quorum, optional extra
layers, one aggregator (streaming when the client streams), usage and cost summed over every call."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field

# Re-exported: the request path and its events import these from here (they live in router.calls).
from router.calls import CallRecord as CallRecord
from router.calls import replaced_calls
from router.calls import total_usage as total_usage
from router.config import MixtureSettings
from router.prompts import with_candidates
from router.providers.base import (
    CallMeter,
    CallResult,
    CompletionRequest,
    Message,
    Provider,
    ProviderError,
    StreamItem,
    Usage,
)

# Time kept back from the aggregator at the end of the request's deadline, so that when it is too slow
# its own timeout fires first and a proposer's answer is returned, rather than the request timing out.
# A share of a short deadline at most, or a deadline under the margin would never reach the aggregator.
FALLBACK_MARGIN_S = 0.25
FALLBACK_MARGIN_SHARE = 0.1
# Less time than this for the aggregator is none: the call could not answer, only log a timeout. (A layer
# cut at its deadline leaves the aggregator a few microseconds either side of zero.)
AGGREGATOR_MIN_TIME_S = 0.01
# A later layer given less than this share of the proposer deadline is skipped: most of its calls would
# be cut off (paid for nothing, and counted against the proposers' circuit breakers).
LATER_LAYER_MIN_SHARE = 0.5


def fallback_margin(timeout_s: float) -> float:
    """The time kept back at the end of a request's deadline for falling back to a proposer's answer."""
    return min(FALLBACK_MARGIN_S, FALLBACK_MARGIN_SHARE * timeout_s)


@dataclass(slots=True)
class MixtureResult:
    text: str = ""
    finish_reason: str = "stop"
    calls: list[CallRecord] = field(default_factory=list)
    fallback: str | None = None  # "proposer" when the aggregator failed and a proposer's answer stands
    model: str = ""  # the model that aggregated: the aggregator's, or its fallback entry's when that answered

    @property
    def usage(self) -> Usage:
        return total_usage(self.calls)

    @property
    def cost_usd(self) -> float:
        return sum(call.cost_usd for call in self.calls)


class QuorumError(Exception):
    """Fewer proposers answered than the quorum: the mixture cannot give a trustworthy answer."""

    def __init__(self, answered: int, quorum: int, calls: list[CallRecord]) -> None:
        super().__init__(f"only {answered} of the proposers answered; the mixture needs {quorum}")
        self.calls = calls


def _overlap(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if a and b else 0.0


def consensus_pick(answers: Sequence[str]) -> int:
    """The index of the answer that agrees most with the others: the fallback when the aggregator fails."""
    words = [set(answer.lower().split()) for answer in answers]
    scores = [sum(_overlap(w, other) for j, other in enumerate(words) if j != i) for i, w in enumerate(words)]
    return max(range(len(answers)), key=lambda i: (scores[i], len(answers[i])))


class MixtureEngine:
    """Runs the mixture over whatever providers it is given, so tests can hand in their own."""

    def __init__(
        self,
        proposers: Sequence[Provider],
        aggregator: Provider,
        settings: MixtureSettings,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._proposers = tuple(proposers)
        self._aggregator = aggregator
        self._settings = settings
        self._clock = clock  # deadlines are measured on it; tests hand in one that they move

    def _max_tokens(self, base: CompletionRequest) -> int:
        # The configured cap applies when the client sets none: the mixture pays for several answers.
        return self._settings.max_tokens if base.max_tokens is None else base.max_tokens

    def _proposer_request(
        self, base: CompletionRequest, messages: Sequence[Message], timeout_s: float
    ) -> CompletionRequest:
        temperature = self._settings.temperature if base.temperature is None else base.temperature
        return CompletionRequest(messages, self._max_tokens(base), temperature, base.params, timeout_s)

    def _layer_time(self, request: CompletionRequest, began: float, layer: int) -> float:
        """How long a layer of proposers may take: the proposer deadline, within what is left of the
        request's deadline less the fallback margin. A later layer only refines the answers it is shown,
        so it must also leave the aggregator one proposer deadline (under LATER_LAYER_MIN_SHARE of a
        deadline it is skipped)."""
        if request.timeout_s is None:
            return self._settings.proposer_deadline_s
        left = began + request.timeout_s - self._clock() - fallback_margin(request.timeout_s)
        if layer > 1:
            left -= self._settings.proposer_deadline_s
        return min(self._settings.proposer_deadline_s, left)

    async def _layer(self, request: CompletionRequest, layer: int, calls: list[CallRecord]) -> list[CallResult]:
        started = self._clock()
        # A proposer's fallback entry may be the one answering: a call cut off at the deadline is its.
        meters = {provider: CallMeter() for provider in self._proposers}
        tasks = {
            asyncio.create_task(provider.complete(request, meters[provider]), name=provider.name): provider
            for provider in self._proposers
        }
        quorum = self._settings.quorum
        answers: dict[Provider, CallResult] = {}
        failures = 0
        pending = set(tasks)
        deadline = started + (self._settings.proposer_deadline_s if request.timeout_s is None else request.timeout_s)
        try:
            while pending and failures <= len(tasks) - quorum:
                done, pending = await asyncio.wait(
                    pending,
                    timeout=max(0.0, deadline - self._clock()),
                    return_when=asyncio.FIRST_COMPLETED,
                )
                if not done:
                    break  # the deadline passed
                for task in done:
                    meter = meters[tasks[task]]
                    record, answer = _proposer_outcome(task, meter, self._clock() - started, layer)
                    # A primary that timed out before its fallback entry took over was billed too.
                    calls.extend([*replaced_calls(meter, "proposer", layer), record])
                    if answer is None:
                        failures += 1
                    else:
                        answers[tasks[task]] = answer
        finally:
            # Cut off at the deadline, or by the request's timeout cancelling this layer: that one may find a
            # proposer that had answered but was not yet looked at, which is logged as it reported.
            for task in pending:
                meter = meters[tasks[task]]
                if task.done() and not task.cancelled() and _reported(task):
                    record = _proposer_outcome(task, meter, self._clock() - started, layer)[0]
                else:
                    task.cancel()
                    record = _late(tasks[task], meter, self._clock() - started, layer)
                calls.extend([*replaced_calls(meter, "proposer", layer), record])
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)
        if len(answers) < quorum:
            raise QuorumError(len(answers), quorum, calls)
        # Keep the configured proposer order so the aggregator's input does not depend on timing.
        return [answers[p] for p in self._proposers if p in answers]

    async def _propose(self, request: CompletionRequest, calls: list[CallRecord], began: float) -> list[CallResult]:
        """Every layer of proposers; each layer after the first sees the previous layer's answers. A later
        layer that has no time left, or misses its quorum, leaves the previous layer's answers standing:
        it refines them, so the mixture degrades to fewer layers rather than failing."""
        timeout_s = max(0.0, self._layer_time(request, began, 1))
        answers = await self._layer(self._proposer_request(request, request.messages, timeout_s), 1, calls)
        for layer in range(2, self._settings.layers + 1):
            timeout_s = self._layer_time(request, began, layer)
            if timeout_s < LATER_LAYER_MIN_SHARE * self._settings.proposer_deadline_s:
                break
            messages = with_candidates(request.messages, [answer.text for answer in answers])
            try:
                answers = await self._layer(self._proposer_request(request, messages, timeout_s), layer, calls)
            except QuorumError:
                break
        return answers

    def _aggregator_request(
        self, request: CompletionRequest, answers: Sequence[CallResult], timeout_s: float | None
    ) -> CompletionRequest:
        return CompletionRequest(
            with_candidates(request.messages, [answer.text for answer in answers]),
            self._max_tokens(request),
            self._settings.aggregator_temperature if request.temperature is None else request.temperature,
            request.params,
            timeout_s,
        )

    def _aggregator_time(self, request: CompletionRequest, began: float) -> float | None:
        """What is left of the request's deadline for the aggregator, less the fallback margin (None:
        no deadline). Under AGGREGATOR_MIN_TIME_S there is no time to aggregate at all."""
        if request.timeout_s is None:
            return None
        return began + request.timeout_s - self._clock() - fallback_margin(request.timeout_s)

    def _fall_back(
        self,
        result: MixtureResult,
        answers: Sequence[CallResult],
        started: float,
        error: ProviderError | None,
        meter: CallMeter | None = None,
    ) -> None:
        """The aggregator failed or had no time left: the proposer answer the others agree with most stands."""
        result.calls.extend(replaced_calls(meter, "aggregator"))
        if error is not None:  # named as the model that failed: the aggregator's fallback entry, if it took over
            result.calls.append(CallRecord.from_error(error, "aggregator", self._clock() - started, meter=meter))
        chosen = answers[consensus_pick([answer.text for answer in answers])]
        result.text, result.finish_reason = chosen.text, chosen.finish_reason  # "length": it was cut at max_tokens
        result.fallback = "proposer"

    async def run(
        self, request: CompletionRequest, result: MixtureResult | None = None, meter: CallMeter | None = None
    ) -> MixtureResult:
        """The mixture's answer. Calls are added to `result` (when given) as they finish, so a caller
        that cancels this (a request timeout) still knows what was paid for; `meter` is handed to the
        aggregator's call (see Provider.complete), so that such a caller can log that one too."""
        began = self._clock()
        result = MixtureResult() if result is None else result
        answers = await self._propose(request, result.calls, began)
        started = self._clock()
        timeout_s = self._aggregator_time(request, began)
        if timeout_s is not None and timeout_s < AGGREGATOR_MIN_TIME_S:
            self._fall_back(result, answers, started, None)
            return result
        try:
            final = await self._aggregator.complete(self._aggregator_request(request, answers, timeout_s), meter)
        except ProviderError as exc:
            self._fall_back(result, answers, started, exc, meter)
            return result
        finally:  # an aggregator that timed out before its fallback entry took over was billed too
            result.calls.extend(replaced_calls(meter, "aggregator"))
        result.calls.append(CallRecord.from_result(final, "aggregator"))
        result.text, result.finish_reason, result.model = final.text, final.finish_reason, final.model
        return result

    async def stream(
        self, request: CompletionRequest, result: MixtureResult | None = None, meter: CallMeter | None = None
    ) -> AsyncIterator[str | MixtureResult]:
        """Yields the aggregator's text deltas as they arrive, then the finished MixtureResult (`result`
        when given, whose calls are added as they finish). Raises QuorumError before the first delta
        when the proposers fail. `meter` is handed to the aggregator's stream (see Provider.stream)."""
        began = self._clock()
        result = MixtureResult() if result is None else result
        answers = await self._propose(request, result.calls, began)
        started = self._clock()
        timeout_s = self._aggregator_time(request, began)
        if timeout_s is not None and timeout_s < AGGREGATOR_MIN_TIME_S:
            self._fall_back(result, answers, started, None)
            yield result.text
            yield result
            return
        sent_any = False
        # Only the first delta races the deadline: once text is sent no fallback is possible (and the
        # caller's timeout covers only the first delta), so the stream keeps the request's own timeout.
        items = self._aggregator.stream(self._aggregator_request(request, answers, request.timeout_s), meter)
        try:
            async for item in _first_within(items, timeout_s, self._aggregator.name, meter):
                result.calls.extend(replaced_calls(meter, "aggregator"))  # logged before a client may leave
                if isinstance(item, str):
                    sent_any = True
                    yield item
                else:
                    result.calls.append(CallRecord.from_result(item, "aggregator"))
                    result.text, result.finish_reason, result.model = item.text, item.finish_reason, item.model
        except ProviderError as exc:
            if sent_any:
                result.finish_reason = "error"  # cut off mid-answer: never cached, the client is told
                result.calls.append(CallRecord.from_error(exc, "aggregator", self._clock() - started, meter=meter))
            else:  # its first delta did not come in time (it was cut off), or it failed
                self._fall_back(result, answers, started, exc, meter)
                yield result.text
        finally:  # however the stream ends: the client left, or the request's timeout cut it off
            result.calls.extend(replaced_calls(meter, "aggregator"))
        yield result


def _proposer_outcome(
    task: asyncio.Task[CallResult], meter: CallMeter, latency_s: float, layer: int
) -> tuple[CallRecord, CallResult | None]:
    """A finished proposer call's record, and its answer when it has one to show the aggregator."""
    try:
        result = task.result()
    except ProviderError as exc:  # named as the model that failed: a fallback's, if it took over
        return CallRecord.from_error(exc, "proposer", latency_s, layer, meter), None
    if not result.text.strip():  # nothing to show the aggregator: billed, but no answer
        return CallRecord.from_result(result, "proposer", layer, error="empty"), None
    return CallRecord.from_result(result, "proposer", layer), result


def _reported(task: asyncio.Task[CallResult]) -> bool:
    """Whether a finished proposer call reported back (its answer, or how it failed)."""
    exc = task.exception()
    return exc is None or isinstance(exc, ProviderError)


def _late(provider: Provider, meter: CallMeter, latency_s: float, layer: int) -> CallRecord:
    """A proposer cut off at its layer's deadline, named as the model the meter says was answering (a
    fallback entry may have taken over) and billed for the prompt it was sent, once it was on the wire;
    what a call that is not streamed had generated is unknown."""
    sent = meter.sent_call()
    if sent is None:  # it never began a call, or it waited for a free upstream connection: nothing was sent
        model = provider.name if meter.entry is None else meter.entry.model
        return CallRecord(model, "proposer", "late", latency_s, layer=layer, error="deadline")
    entry, request = sent
    return CallRecord.cut_off(entry, "proposer", "late", latency_s, request, layer=layer, error="deadline")


async def _first_within(
    items: AsyncIterator[StreamItem], timeout_s: float | None, model: str, meter: CallMeter | None
) -> AsyncIterator[StreamItem]:
    """`items`, whose first must come within `timeout_s` (None: no limit), else ProviderError(timeout),
    named as the model the meter says was answering (a fallback entry may have taken over), or `model`."""
    try:
        try:
            first = await asyncio.wait_for(anext(items), timeout_s)
        except StopAsyncIteration:
            return
        except TimeoutError as exc:
            answering = meter.entry.model if meter is not None and meter.entry is not None else model
            raise ProviderError(answering, "timeout", "no answer before the request's deadline") from exc
        yield first
        async for item in items:
            yield item
    finally:
        close = getattr(items, "aclose", None)  # release the upstream connection at once
        if close is not None:
            await close()
