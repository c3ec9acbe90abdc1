"""The general path: any provider litellm knows, called through `litellm.acompletion`.

litellm is imported on first use, not at import time: its import costs seconds and ~190 MiB, and a
deployment whose upstreams are all OpenAI-compatible never needs it.
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from types import ModuleType
from typing import Any

from router.config import ModelEntry
from router.providers.base import CallMeter, CallResult, CompletionRequest, ProviderError, StreamItem, Usage
from router.providers.openai_compat import request_body
from router.providers.pricing import Prices, priced_call
from router.providers.upstream_errors import error_for_status, no_headers


def _litellm() -> ModuleType:
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # never fetch prices at import
    import litellm

    litellm.telemetry = False
    litellm.suppress_debug_info = True  # else every upstream failure prints a banner to stdout
    return litellm


def _provider_error(model: str, exc: Exception) -> ProviderError:
    import openai

    if isinstance(exc, openai.APITimeoutError):
        return ProviderError(model, "timeout", "upstream timed out")
    if isinstance(exc, openai.APIConnectionError):
        return ProviderError(model, "connection", "cannot reach upstream")
    status = getattr(exc, "status_code", None)
    message = str(getattr(exc, "message", "") or type(exc).__name__)[:300]
    if not isinstance(status, int):
        return ProviderError(model, "upstream", message)
    # The upstream's answer comes with the error: its retry-after must be honoured as on the lean path.
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    return error_for_status(model, status, headers.get if headers is not None else no_headers, message)


def _usage(obj: Any) -> Usage | None:
    usage = getattr(obj, "usage", None)
    if usage is None:
        return None
    return Usage.reported(getattr(usage, "prompt_tokens", None), getattr(usage, "completion_tokens", None))


class LiteLLMProvider:
    def __init__(self, entry: ModelEntry, prices: Prices) -> None:
        self._entry = entry
        self._prices = prices

    @property
    def entry(self) -> ModelEntry:
        return self._entry

    @property
    def name(self) -> str:
        return self._entry.model

    def _kwargs(self, request: CompletionRequest, stream: bool) -> dict[str, Any]:
        kwargs = request_body(self._entry.model, request, stream)
        timeout = self._entry.timeout_s if request.timeout_s is None else min(self._entry.timeout_s, request.timeout_s)
        kwargs.update(timeout=max(0.001, timeout), num_retries=0)  # retries are the router's, not litellm's
        if self._entry.api_base:
            kwargs["api_base"] = self._entry.api_base
        key = self._entry.resolved_api_key()
        if key:
            kwargs["api_key"] = key
        return kwargs

    async def complete(self, request: CompletionRequest, meter: CallMeter | None = None) -> CallResult:
        import openai

        if meter is not None:
            meter.start(self._entry, request)
        litellm = _litellm()
        started = time.perf_counter()
        if meter is not None:  # no pool of the router's holds it back: once handed to litellm it is sent
            meter.sent = True
        try:
            response = await litellm.acompletion(**self._kwargs(request, stream=False))
        except openai.APIError as exc:
            raise _provider_error(self.name, exc) from exc
        try:
            choice = response.choices[0]
            text = choice.message.content or ""
            finish = choice.finish_reason or "stop"
        except (AttributeError, IndexError) as exc:
            raise ProviderError(self.name, "malformed", "response is not a chat completion") from exc
        return priced_call(self.name, self._prices, request, str(text), _usage(response), str(finish), started)

    async def stream(self, request: CompletionRequest, meter: CallMeter | None = None) -> AsyncIterator[StreamItem]:
        import openai

        if meter is not None:
            meter.start(self._entry, request)
        litellm = _litellm()
        started = time.perf_counter()
        parts: list[str] = []
        usage: Usage | None = None
        finish = "stop"
        if meter is not None:  # as in complete
            meter.sent = True
        try:
            response = await litellm.acompletion(**self._kwargs(request, stream=True))
            async for chunk in response:
                usage = _usage(chunk) or usage
                for choice in getattr(chunk, "choices", None) or ():
                    delta = getattr(choice.delta, "content", None)
                    if delta:
                        parts.append(delta)
                        yield delta
                    if choice.finish_reason:
                        finish = choice.finish_reason
        except openai.APIError as exc:
            error = _provider_error(self.name, exc)
            if parts:  # the upstream billed the prompt and the text it sent
                error.partial = priced_call(self.name, self._prices, request, "".join(parts), usage, "error", started)
            raise error from exc
        yield priced_call(self.name, self._prices, request, "".join(parts), usage, finish, started)
