"""Mutable state of a running simulator: current model behaviour, seeded fault draws, call counters."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from router.simulator.fleet import FleetConfig, SimModel


class Fault(StrEnum):
    """A failure the simulator can inject into one call."""

    ERROR = "error"
    RATE_LIMIT = "rate_limit"
    HANG = "hang"
    MALFORMED = "malformed"
    DROP_STREAM = "drop_stream"


# The order in which one uniform draw is matched against a model's cumulative fault rates.
_RATE_OF: tuple[tuple[Fault, str], ...] = (
    (Fault.ERROR, "error_rate"),
    (Fault.RATE_LIMIT, "rate_limit_rate"),
    (Fault.HANG, "hang_rate"),
    (Fault.MALFORMED, "malformed_rate"),
    (Fault.DROP_STREAM, "drop_stream_rate"),
)


@dataclass
class _Counters:
    calls: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    faults: Counter[str] = field(default_factory=Counter)


class SimulatorState:
    """Everything a simulator app changes while it runs. Used from its event loop only."""

    def __init__(self, fleet: FleetConfig) -> None:
        self.fleet = fleet
        self.models: dict[str, SimModel] = {model.name: model for model in fleet.models}
        # Set when the server stops, so hanging calls end instead of holding up the shutdown.
        self.hangs_released = asyncio.Event()
        self.total_calls = 0
        self._counters: dict[str, _Counters] = {}
        self._rngs: dict[str, random.Random] = {}
        self.reset()

    def reset(self) -> None:
        """Zero the counters and restart every model's fault draws from the seed."""
        self.total_calls = 0
        self._counters = {name: _Counters() for name in self.models}
        self._rngs = {name: random.Random(f"{self.fleet.seed}:{name}") for name in self.models}

    def count_call(self, name: str) -> int:
        """Record a call to model `name`; returns the call's number across the fleet (from 1)."""
        self.total_calls += 1
        self._counters[name].calls += 1
        return self.total_calls

    @contextmanager
    def in_flight(self, name: str) -> Iterator[None]:
        """Count model `name` as busy for the duration of the block."""
        counters = self._counters[name]
        counters.in_flight += 1
        counters.max_in_flight = max(counters.max_in_flight, counters.in_flight)
        try:
            yield
        finally:
            counters.in_flight -= 1

    def draw_fault(self, name: str, streaming: bool) -> Fault | None:
        """The fault to inject into this call of model `name`, if any (`fail_next` comes first)."""
        model = self.models[name]
        fault: Fault | None = None
        if model.fail_next > 0:
            self.models[name] = model.model_copy(update={"fail_next": model.fail_next - 1})
            fault = Fault.ERROR
        else:
            draw = self._rngs[name].random()
            threshold = 0.0
            for candidate, rate in _RATE_OF:
                threshold += getattr(model, rate)
                if draw < threshold:
                    fault = candidate
                    break
        if fault is Fault.DROP_STREAM and not streaming:
            return None  # only a stream can be cut mid-way
        if fault is not None:
            self._counters[name].faults[fault.value] += 1
        return fault

    def patch(self, name: str, changes: dict[str, Any]) -> SimModel:
        """Change model `name`'s behaviour; raises KeyError for an unknown model, ValueError for bad fields."""
        current = self.models[name]
        if "name" in changes and changes["name"] != name:
            raise ValueError("a model cannot be renamed")
        updated = SimModel.model_validate({**current.model_dump(), **changes})
        self.models[name] = updated
        return updated

    def stats(self) -> dict[str, Any]:
        """Call counts, current and peak concurrency, and injected faults, per model and in total."""
        return {
            "total_calls": self.total_calls,
            "in_flight": sum(c.in_flight for c in self._counters.values()),
            "models": {
                name: {
                    "calls": c.calls,
                    "in_flight": c.in_flight,
                    "max_in_flight": c.max_in_flight,
                    "faults": dict(c.faults),
                }
                for name, c in self._counters.items()
            },
        }
