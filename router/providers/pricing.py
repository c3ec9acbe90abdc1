"""The one cost function: USD for a call, from the entry's own prices or litellm's cost map.

litellm's cost map is read as the JSON file that ships inside the litellm package, without importing
litellm (about 2.7 s and 190 MiB): startup and the request path stay light.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from classifier.text import content_text
from router.config import ModelEntry, Settings
from router.providers.base import CallResult, CompletionRequest, Usage

_COST_MAP_FILE = "model_prices_and_context_window_backup.json"


@dataclass(frozen=True, slots=True)
class Prices:
    input_per_token: float
    output_per_token: float

    def cost(self, usage: Usage) -> float:
        return usage.prompt_tokens * self.input_per_token + usage.completion_tokens * self.output_per_token


class UnknownPriceError(LookupError):
    pass


@functools.cache
def litellm_cost_map() -> dict[str, Any]:
    spec = importlib.util.find_spec("litellm")
    if spec is None or not spec.submodule_search_locations:
        raise UnknownPriceError("litellm is not installed, so its cost map is missing")
    path = Path(next(iter(spec.submodule_search_locations))) / _COST_MAP_FILE
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def prices_for(entry: ModelEntry) -> Prices:
    """The entry's own prices win; otherwise litellm's, looked up as `provider/model` then `model`."""
    if entry.input_cost_per_token is not None and entry.output_cost_per_token is not None:
        return Prices(entry.input_cost_per_token, entry.output_cost_per_token)
    cost_map = litellm_cost_map()
    bare = entry.model.split("/", 1)[1]
    for key in (entry.model, bare):
        info = cost_map.get(key)
        if isinstance(info, dict) and "input_cost_per_token" in info:
            return Prices(float(info["input_cost_per_token"]), float(info.get("output_cost_per_token", 0.0)))
    raise UnknownPriceError(
        f"no price for {entry.model}: litellm's cost map does not know it; "
        "set input_cost_per_token and output_cost_per_token on the entry"
    )


def check_prices(settings: Settings) -> None:
    """Price every configured model, fallbacks included, before serving: an unknown price is a config
    error said in one line, not a traceback from the app's startup (or a worker's, restarted)."""
    roles = {"cheap": [settings.cheap], "proposers": settings.proposers, "aggregator": [settings.aggregator]}
    roles |= {"judge": [settings.judge_entry], "strong": [settings.strong_entry]}
    for role, entries in roles.items():
        for entry in entries:
            chain: ModelEntry | None = entry
            while chain is not None:
                try:
                    prices_for(chain)
                except UnknownPriceError as exc:
                    raise UnknownPriceError(f"{role}: {exc}") from None
                chain = chain.fallback


def cost_usd(prices: Prices, usage: Usage) -> float:
    return prices.cost(usage)


def estimate_tokens(text: str) -> int:
    """A rough token count (about four characters a token) for upstreams that report no usage."""
    return max(1, (len(text) + 3) // 4) if text else 0


def estimate_prompt_tokens(request: CompletionRequest) -> int:
    """A rough token count of a request's messages (see estimate_tokens)."""
    return sum(estimate_tokens(content_text(message.get("content"))) for message in request.messages)


def priced_call(
    model: str,
    prices: Prices,
    request: CompletionRequest,
    text: str,
    usage: Usage | None,
    finish_reason: str,
    started: float,
) -> CallResult:
    """The finished call of any provider path: priced by the one cost function, with tokens counted by
    the router when the upstream reported no usage (flagged, so it shows in the outcome log)."""
    estimated = usage is None
    if usage is None:
        usage = Usage(estimate_prompt_tokens(request), estimate_tokens(text))
    return CallResult(model, text, usage, prices.cost(usage), time.perf_counter() - started, finish_reason, estimated)
