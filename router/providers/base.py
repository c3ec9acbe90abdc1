"""The one interface for calling a model: a completion (text, usage, cost) or a stream of text deltas."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from router.config import ModelEntry

Message = Mapping[str, Any]
ErrorKind = Literal["timeout", "rate_limit", "upstream", "connection", "malformed", "bad_request", "auth"]


# Far beyond any model's context window and output; a larger count is a broken upstream, not usage.
MAX_REPORTED_TOKENS = 100_000_000


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(self.prompt_tokens + other.prompt_tokens, self.completion_tokens + other.completion_tokens)

    @classmethod
    def reported(cls, prompt_tokens: object, completion_tokens: object) -> Usage | None:
        """The usage an upstream reported, or None (the router then counts the tokens itself) when it is not
        two whole numbers in a believable range: a negative count would be a refund, a huge one a bill (and
        a number past 64 bits cannot even be logged)."""
        counts = []
        for value in (prompt_tokens, completion_tokens):
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_REPORTED_TOKENS:
                return None
            counts.append(value)
        return cls(counts[0], counts[1])

    def as_openai(self) -> dict[str, int]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
        }


@dataclass(frozen=True, slots=True)
class CompletionRequest:
    """What the router asks of one model. `params` holds the sampling parameters passed through as they
    are (top_p, stop, seed, presence_penalty, frequency_penalty, response_format)."""

    messages: Sequence[Message]
    max_tokens: int | None = None
    temperature: float | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    timeout_s: float | None = None  # the caller's remaining deadline; the entry's timeout also applies


@dataclass(frozen=True, slots=True)
class CallResult:
    model: str
    text: str
    usage: Usage
    cost_usd: float
    latency_s: float
    finish_reason: str = "stop"
    usage_estimated: bool = False  # the upstream gave no usage, so tokens were counted by the router


class ProviderError(Exception):
    """A failed upstream call, classified so that callers can decide on retries and fallbacks."""

    def __init__(
        self,
        model: str,
        kind: ErrorKind,
        message: str,
        status: int | None = None,
        retry_after_s: float | None = None,
        partial: CallResult | None = None,
        *,
        reached_upstream: bool = True,
    ) -> None:
        super().__init__(f"{model}: {kind}: {message}")
        self.model = model
        self.kind = kind
        self.status = status
        self.retry_after_s = retry_after_s
        # False when the call never left the router (no free pooled connection before its deadline): the
        # model is not to blame for it.
        self.reached_upstream = reached_upstream
        # A stream that failed after sending text was still billed for the prompt and that text: the
        # call as estimated and priced by the provider that raised (usage_estimated unless reported).
        self.partial = partial


# A stream yields text deltas and, last, the finished call's CallResult (with usage and cost).
StreamItem = str | CallResult


@dataclass(frozen=True, slots=True)
class ReplacedCall:
    """A call that timed out after it was sent and whose fallback entry then took over: no caller hears of
    it, yet the upstream billed the prompt it was sent (`request`), which its caller logs (CallMeter)."""

    entry: ModelEntry
    request: CompletionRequest
    latency_s: float
    error: ErrorKind


@dataclass(slots=True)
class CallMeter:
    """Told by the provider that makes a call which model entry is answering, what it was sent (for the
    mixture's aggregator, the proposers' answers too), when it began and once it is on the wire: what a
    call cut off before it reported back (a client that left, the request's timeout) is named, timed and
    priced from. A call that was billed and then replaced by its fallback entry is kept in `replaced`."""

    entry: ModelEntry | None = None
    request: CompletionRequest | None = None
    started: float | None = None  # time.perf_counter() when this entry was first called (retries count)
    # Set by the provider once the request has left the router; until then (waiting for a free connection
    # of the upstream pool) a call that is cut off was sent nothing and billed nothing. Each attempt resets it.
    sent: bool = False
    replaced: list[ReplacedCall] = field(default_factory=list)

    def start(self, entry: ModelEntry, request: CompletionRequest, at: float | None = None) -> None:
        if self.entry is None or self.entry.model != entry.model:  # a retry of the same entry goes on timing
            self.started = time.perf_counter() if at is None else at
        self.entry, self.request, self.sent = entry, request, False

    def sent_call(self) -> tuple[ModelEntry, CompletionRequest] | None:
        """The entry called and the request it was sent, once that is on the wire; None before."""
        if not self.sent or self.entry is None or self.request is None:
            return None
        return self.entry, self.request

    def billed_prompt(self, exc: ProviderError) -> tuple[ModelEntry, CompletionRequest] | None:
        """The entry and the request of the call followed here that `exc` ended, when the upstream billed
        it for that prompt with no usage to show: it timed out after it was sent. Any other failure was not
        billed (a stream that failed mid-answer carries its bill: `exc.partial`)."""
        sent = self.sent_call()
        if sent is None or exc.kind != "timeout" or not exc.reached_upstream or sent[0].model != exc.model:
            return None
        return sent

    def hand_over(self, exc: ProviderError, at: float | None = None) -> None:
        """`exc` ended the call and a fallback entry takes over (and restarts the meter): a call that was
        billed for its prompt is kept in `replaced`, for the caller to log apart from the fallback's."""
        billed = self.billed_prompt(exc)
        if billed is None:
            return
        now = time.perf_counter() if at is None else at
        latency = 0.0 if self.started is None else max(0.0, now - self.started)
        self.replaced.append(ReplacedCall(billed[0], billed[1], latency, exc.kind))

    def take_replaced(self) -> list[ReplacedCall]:
        """The replaced calls not yet taken, each handed out once."""
        taken, self.replaced = self.replaced, []
        return taken


class Provider(Protocol):
    """A model that can be called. Real ones are in this package; tests may hand in their own."""

    @property
    def entry(self) -> ModelEntry: ...

    @property
    def name(self) -> str: ...

    # A fallback entry may answer in the primary's place, unseen by the caller: a given `meter` is told
    # which one is called, so that a call cut off before it reports back is logged as the model that made it.
    async def complete(self, request: CompletionRequest, meter: CallMeter | None = None) -> CallResult: ...

    def stream(self, request: CompletionRequest, meter: CallMeter | None = None) -> AsyncIterator[StreamItem]: ...
