"""Shadow evaluation test helpers: scripted providers, a judge that prefers a word, a harness that runs
the evaluator with a real Redis and outcome log."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import orjson

from router.config import ModelEntry, Settings, settings_from_mapping
from router.events import RequestEvent
from router.ledger import LedgerKeys, OutcomeLog
from router.mixture import MixtureEngine
from router.providers.base import CallMeter, CallResult, CompletionRequest, ProviderError, StreamItem, Usage
from router.providers.registry import ProviderSet
from router.shadow import ShadowEvaluator
from tests.conftest import settings_dict

TextFor = Callable[[CompletionRequest], str]


class Scripted:
    """A provider whose answers a test writes; `gate` holds calls until the test releases them."""

    def __init__(self, name: str, text: TextFor, cost: float = 0.001, gate: asyncio.Event | None = None) -> None:
        self.entry = ModelEntry(model=f"openai/{name}")
        self._text = text
        self._cost = cost
        self._gate = gate
        self.calls = 0
        self.error: ProviderError | None = None  # raised by every call when set

    @property
    def name(self) -> str:
        return self.entry.model

    async def complete(self, request: CompletionRequest, meter: CallMeter | None = None) -> CallResult:
        self.calls += 1
        if self._gate is not None:
            await self._gate.wait()
        if self.error is not None:
            raise self.error
        return CallResult(self.name, self._text(request), Usage(10, 10), self._cost, 0.0)

    async def stream(self, request: CompletionRequest, meter: CallMeter | None = None) -> AsyncIterator[StreamItem]:
        result = await self.complete(request)
        yield result.text
        yield result


def judge_preferring(word: str | None) -> TextFor:
    """A judge that picks the answer containing `word` (TIE for None)."""

    def verdict(request: CompletionRequest) -> str:
        if word is None:
            return "Both are fine.\nVERDICT: TIE"
        text = str(request.messages[-1]["content"])
        answer_b = text.split("Answer B:", 1)[1]
        return "Reasoning.\nVERDICT: " + ("B" if word in answer_b else "A")

    return verdict


def constant(text: str) -> TextFor:
    return lambda request: text


def make_settings(tmp_path: Path, prefix: str, **shadow: Any) -> Settings:
    return settings_from_mapping(
        settings_dict(
            "http://127.0.0.1:9/v1",
            tmp_path,
            redis_prefix=prefix,
            ledger={"store_prompts": True, "flush_interval_s": 0.05},
            shadow={"cheap_sample_rate": 1.0, **shadow},
        )
    )


# What a shadow run of each route costs with the scripted providers (0.001 a call, the judge's included).
RUN_COST = {"mixture": 0.005, "cheap": 0.002}


class Harness:
    def __init__(
        self,
        settings: Settings,
        redis: Any,
        judge: TextFor,
        gate: asyncio.Event | None = None,
        run_cost: dict[str, float] | None = None,
    ) -> None:
        self.run_cost = run_cost
        self.cheap = Scripted("cheap", constant("cheap answer"))
        self.proposers = [Scripted(f"p{i}", constant(f"proposal {i}"), gate=gate) for i in range(3)]
        self.aggregator = Scripted("agg", constant("MIXTURE answer"))
        self.judge = Scripted("judge", judge)
        providers = ProviderSet(self.cheap, tuple(self.proposers), self.aggregator, self.judge, self.aggregator)
        self.ledger = OutcomeLog(redis, settings)
        engine = MixtureEngine(providers.proposers, providers.aggregator, settings.mixture)
        self.shadow = ShadowEvaluator(settings, providers, engine, redis, self.ledger, random.Random(3))
        self.redis = redis
        self.keys = LedgerKeys(settings.redis_prefix)

    async def __aenter__(self) -> Harness:
        if self.run_cost is not None:  # as if runs had been seen: a burst is not held back by the first one
            await self.redis.hset(self.shadow.budget.costs_key, mapping=self.run_cost)
        self.ledger.start()
        self.shadow.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.shadow.close()
        await self.ledger.close()

    async def settle(self) -> list[dict[str, Any]]:
        await asyncio.wait_for(self.shadow.wait_idle(), 10)
        await self.shadow.close()
        await self.ledger.flush()
        return [orjson.loads(fields[b"o"]) for _, fields in await self.redis.xrange(self.keys.outcomes)]


def cheap_event(i: int = 0, route: str = "cheap", **changes: Any) -> RequestEvent:
    messages = [{"role": "user", "content": f"question {i}"}]
    event = RequestEvent(request_id=f"r{i}", tenant="acme", route=route, difficulty=0.2, stakes=0.7)
    event.upstream = CompletionRequest(messages, 64)
    event.answer_text = "cheap answer" if route == "cheap" else "MIXTURE answer"
    for name, value in changes.items():
        setattr(event, name, value)
    return event


async def wait_until(condition: Callable[[], bool], what: str, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.01)
