"""Routing evaluation data: prompts with per-model outcomes and costs (RouterBench's JSON lines).

Each row: {"id", "text", "perf": {model: 0|1|null}, "cost": {model: usd}, ...}. A strong "tier" of
several models counts as correct when most of them are (a stand-in for the mixture) and costs the
sum of their calls.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from classifier.dataset import iter_jsonl

DEFAULT_ROUTING_DATA = Path("../shared/data/routerbench-dev.jsonl")
DEFAULT_CHEAP = "mistralai/mixtral-8x7b-chat"
DEFAULT_STRONG = ("gpt-4-1106-preview",)

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class RoutingOutcomes:
    ids: list[str]
    texts: list[str]
    cheap_quality: FloatArray
    strong_quality: FloatArray
    cheap_cost: FloatArray
    strong_cost: FloatArray
    cheap_model: str
    strong_models: tuple[str, ...]
    skipped: int  # rows without an outcome for one of the models


def read_routing_rows(path: Path) -> list[dict[str, Any]]:
    rows = []
    for line_number, row in iter_jsonl(path):
        problem = _routing_row_problem(row)
        if problem:
            raise ValueError(f"{path}:{line_number}: {problem}")
        rows.append(row)
    return rows


def _routing_row_problem(row: Any) -> str | None:
    if not isinstance(row, dict) or not isinstance(row.get("text"), str) or not isinstance(row.get("perf"), dict):
        return "expected an object with 'text' and 'perf'"
    for model, value in row["perf"].items():
        # Python's json reads NaN and Infinity, which would turn every metric into NaN.
        if value is not None and not (_is_number(value) and 0.0 <= value <= 1.0):
            return f"perf of {model!r} must be a number within 0..1 or null, got {value!r}"
    cost = row.get("cost", {})
    if not isinstance(cost, dict):
        return "'cost' must be an object of USD amounts by model"
    for model, value in cost.items():
        if not (_is_number(value) and 0.0 <= value < math.inf):
            return f"cost of {model!r} must be a non-negative number, got {value!r}"
    return None


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and not math.isnan(value)


def resolve_model(name: str, available: Sequence[str]) -> str:
    """The full model name for `name`: exact, or the one model whose name ends with "/name"."""
    if name in available:
        return name
    matches = [model for model in available if model.endswith("/" + name)]
    if len(matches) == 1:
        return matches[0]
    known = ", ".join(sorted(available))
    raise ValueError(f"model {name!r} is {'ambiguous' if matches else 'unknown'}; known: {known}")


def routing_outcomes(rows: Sequence[dict[str, Any]], cheap: str, strong: Sequence[str]) -> RoutingOutcomes:
    """Per-prompt quality and cost of the cheap model and of the strong tier."""
    if not rows:
        raise ValueError("no routing rows")
    available = sorted({model for row in rows for model in row["perf"]})
    cheap_model = resolve_model(cheap, available)
    strong_models = tuple(resolve_model(name, available) for name in strong)
    if not strong_models:
        raise ValueError("the strong tier needs at least one model")
    ids: list[str] = []
    texts: list[str] = []
    cheap_q: list[float] = []
    strong_q: list[float] = []
    cheap_c: list[float] = []
    strong_c: list[float] = []
    skipped = 0
    for row in rows:
        perf, cost = row["perf"], row.get("cost", {})
        outcomes = [perf.get(model) for model in (cheap_model, *strong_models)]
        if any(outcome is None for outcome in outcomes):
            skipped += 1
            continue
        ids.append(str(row.get("id", len(ids))))
        texts.append(row["text"])
        cheap_q.append(float(outcomes[0]))
        strong_outcomes = [float(outcome) for outcome in outcomes[1:]]
        if len(strong_outcomes) == 1:
            strong_q.append(strong_outcomes[0])
        else:
            correct = sum(outcome >= 0.5 for outcome in strong_outcomes)
            strong_q.append(1.0 if correct * 2 > len(strong_outcomes) else 0.0)
        cheap_c.append(float(cost.get(cheap_model, 0.0)))
        strong_c.append(float(sum(cost.get(model, 0.0) for model in strong_models)))
    if not ids:
        models = ", ".join((cheap_model, *strong_models))
        raise ValueError(f"none of the {len(rows)} routing rows has an outcome for every one of {models}")
    return RoutingOutcomes(
        ids=ids,
        texts=texts,
        cheap_quality=np.array(cheap_q),
        strong_quality=np.array(strong_q),
        cheap_cost=np.array(cheap_c),
        strong_cost=np.array(strong_c),
        cheap_model=cheap_model,
        strong_models=strong_models,
        skipped=skipped,
    )
