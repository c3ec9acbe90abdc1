"""How an upstream's failure answer becomes a ProviderError, the same on the lean path and through litellm."""

from __future__ import annotations

import email.utils
import math
import time
from collections.abc import Callable
from typing import Any

from router.providers.base import ProviderError

HeaderLookup = Callable[[str], str | None]


def retry_after_s(header: HeaderLookup, now: Callable[[], float] = time.time) -> float | None:
    """Seconds the upstream asks to be left alone, or None when it does not say. `retry-after-ms` is read
    first: it is exact where `retry-after` is rounded up to whole seconds (the OpenAI SDK reads them so);
    `retry-after` may also be an HTTP date."""
    millis = _number(header("retry-after-ms"))
    if millis is not None:
        return millis / 1000.0
    value = header("retry-after")
    seconds = _number(value)
    if seconds is not None or value is None:
        return seconds
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now())


def _number(value: str | None) -> float | None:
    """A non-negative finite number, or None: a negative, NaN or infinite wait means nothing."""
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) and number >= 0 else None


# 4xx statuses that no request could avoid: the model is unknown or gone at that upstream, or its account
# is unpaid. The entry is at fault, not the request: it counts against the model, and a fallback may answer.
_ENTRY_AT_FAULT = frozenset({402, 404, 410})


def error_for_status(model: str, status: int, header: HeaderLookup, detail: str) -> ProviderError:
    """The error of an upstream answer with a failure status: classified so that callers can decide on
    retries, fallbacks and the circuit breaker."""
    if status == 429:
        return ProviderError(model, "rate_limit", detail, status, retry_after_s(header))
    if status in (401, 403):
        return ProviderError(model, "auth", detail, status)
    if status in _ENTRY_AT_FAULT:
        return ProviderError(model, "upstream", detail, status)  # not retried: a 4xx would come again
    if 400 <= status < 500:
        return ProviderError(model, "bad_request", detail, status)
    return ProviderError(model, "upstream", detail, status, retry_after_s(header))


def no_headers(name: str) -> str | None:
    """The header lookup of an error that came without the upstream's headers."""
    return None


def reported_error(model: str, error: Any) -> ProviderError:
    """An error the upstream reported inside an answer whose status said success: the `data: {"error": ...}`
    event that OpenAI and vLLM send when a stream fails after it began. A 4xx or 5xx `code` is classified
    as that status would be; anything else is an upstream failure."""
    details = error if isinstance(error, dict) else {}
    message = str(details.get("message") or error)[:300]
    code = details.get("code")
    if isinstance(code, int) and not isinstance(code, bool) and 400 <= code < 600:
        return error_for_status(model, code, no_headers, message)
    return ProviderError(model, "upstream", message)
