"""Configuration of the simulated provider fleet: which models it serves and how each behaves."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

_PER_MILLION = 1e-6
_FAULT_RATES = ("error_rate", "rate_limit_rate", "hang_rate", "malformed_rate", "drop_stream_rate")


class SimModel(BaseModel):
    """One simulated model: its latency, answer length, prices and injected faults.

    Fault rates are probabilities per call, drawn from the fleet's seeded RNG; they are exclusive
    (one draw decides at most one fault), so their sum must not exceed 1.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    family: str = Field(min_length=1)
    ttft_s: float = Field(default=0.0, ge=0.0)
    per_token_s: float = Field(default=0.0, ge=0.0)
    # A fixed length or an inclusive (min, max) range drawn per prompt.
    output_tokens: int | tuple[int, int] = 80
    input_cost_per_token: float = Field(default=0.0, ge=0.0)
    output_cost_per_token: float = Field(default=0.0, ge=0.0)
    error_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    rate_limit_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    retry_after_s: float = Field(default=1.0, ge=0.0)
    hang_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    malformed_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    drop_stream_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    # The next N calls fail with a 500, whatever the rates say; then the model behaves normally.
    fail_next: int = Field(default=0, ge=0)

    @field_validator("output_tokens")
    @classmethod
    def _check_output_tokens(cls, value: int | tuple[int, int]) -> int | tuple[int, int]:
        low, high = (value, value) if isinstance(value, int) else value
        if low < 1 or high < low:
            raise ValueError("output_tokens must be a positive int or a (min, max) pair with min <= max")
        return value

    @model_validator(mode="after")
    def _check_rates(self) -> SimModel:
        if sum(getattr(self, rate) for rate in _FAULT_RATES) > 1.0 + 1e-9:
            raise ValueError(f"the fault rates ({', '.join(_FAULT_RATES)}) must sum to at most 1")
        return self

    def scaled(self, latency_scale: float) -> SimModel:
        """This model with its latencies multiplied by `latency_scale`."""
        return self.model_copy(
            update={"ttft_s": self.ttft_s * latency_scale, "per_token_s": self.per_token_s * latency_scale}
        )


class FleetConfig(BaseModel):
    """The simulated fleet: its models, the seed behind every answer and fault draw, and options."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    models: tuple[SimModel, ...] = Field(min_length=1)
    seed: int = 0
    # When set, /v1/* requests must carry `Authorization: Bearer <api_key>`.
    api_key: str | None = None
    # A hanging call gives up after this long even if the client never does.
    max_hang_s: float = Field(default=300.0, gt=0.0)

    @field_validator("models")
    @classmethod
    def _unique_names(cls, models: tuple[SimModel, ...]) -> tuple[SimModel, ...]:
        names = [model.name for model in models]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"duplicate model names: {', '.join(duplicates)}")
        return models

    def model_named(self, name: str) -> SimModel | None:
        """The model called `name`, or None."""
        return next((model for model in self.models if model.name == name), None)

    def scaled(self, latency_scale: float) -> FleetConfig:
        """This fleet with every model's latencies multiplied by `latency_scale`."""
        if latency_scale < 0:
            raise ValueError("latency_scale must be >= 0")
        return self.model_copy(update={"models": tuple(m.scaled(latency_scale) for m in self.models)})


def load_fleet(path: str | Path) -> FleetConfig:
    """Read a fleet from a YAML (or JSON) file: `{seed, models: [{name, family, ...}, ...]}`."""
    import yaml

    data: Any = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    return FleetConfig.model_validate(data)


def _priced(name: str, family: str, input_per_m: float, output_per_m: float, **extra: Any) -> SimModel:
    return SimModel(
        name=name,
        family=family,
        input_cost_per_token=input_per_m * _PER_MILLION,
        output_cost_per_token=output_per_m * _PER_MILLION,
        **extra,
    )


def default_fleet(seed: int = 0) -> FleetConfig:
    """The demo fleet: one cheap model, three proposers of different families, an aggregator, a judge.

    Latencies are small but real so the demo shows streaming and the mixture's parallelism;
    tests and benchmarks pass their own (zero-latency) fleet.
    """
    return FleetConfig(
        seed=seed,
        models=(
            _priced("sim-mini", "mini", 0.15, 0.60, ttft_s=0.02, per_token_s=0.001, output_tokens=(60, 110)),
            _priced("sim-atlas", "atlas", 2.5, 10.0, ttft_s=0.045, per_token_s=0.0015, output_tokens=(90, 150)),
            _priced("sim-borealis", "borealis", 3.0, 15.0, ttft_s=0.06, per_token_s=0.002, output_tokens=(80, 140)),
            _priced("sim-cypress", "cypress", 0.88, 0.88, ttft_s=0.03, per_token_s=0.001, output_tokens=(70, 130)),
            _priced("sim-maestro", "maestro", 2.5, 10.0, ttft_s=0.04, per_token_s=0.0015, output_tokens=(100, 150)),
            _priced("sim-judge", "judge", 0.4, 1.6, ttft_s=0.025, per_token_s=0.001, output_tokens=(60, 90)),
        ),
    )


DEMO_CHEAP = "sim-mini"
DEMO_PROPOSERS = ("sim-atlas", "sim-borealis", "sim-cypress")
DEMO_AGGREGATOR = "sim-maestro"
DEMO_JUDGE = "sim-judge"


def model_entry(model: SimModel, base_url: str, api_key: str) -> dict[str, Any]:
    """A router config model entry (litellm terms, see DESIGN.md) that calls `model` on the simulator."""
    return {
        "model": f"openai/{model.name}",
        "family": model.family,
        "api_base": base_url,
        "api_key": api_key,
        "input_cost_per_token": model.input_cost_per_token,
        "output_cost_per_token": model.output_cost_per_token,
    }


def demo_model_entries(
    base_url: str, fleet: FleetConfig | None = None, api_key: str = "sim-demo-key"
) -> dict[str, Any]:
    """Router config entries for the demo roles: keys cheap, proposers (a list), aggregator, judge.

    `base_url` is the simulator's OpenAI base URL (ending in /v1). `api_key` is what the router
    sends; it only matters when the simulator was configured with one.
    """
    chosen = fleet or default_fleet()

    def entry(name: str) -> dict[str, Any]:
        model = chosen.model_named(name)
        if model is None:
            raise ValueError(f"the fleet has no model {name!r}, which the demo needs")
        return model_entry(model, base_url, api_key)

    return {
        "cheap": entry(DEMO_CHEAP),
        "proposers": [entry(name) for name in DEMO_PROPOSERS],
        "aggregator": entry(DEMO_AGGREGATOR),
        "judge": entry(DEMO_JUDGE),
    }
