"""The simulated fleet's configuration: loaded from YAML and checked, and the default fleet the demo runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from router.simulator import FleetConfig, default_fleet, demo_model_entries, load_fleet


def test_fleet_loads_from_yaml_and_validates(tmp_path: Path) -> None:
    path = tmp_path / "fleet.yaml"
    path.write_text("seed: 3\nmodels:\n  - {name: m1, family: f1, output_tokens: [5, 9], error_rate: 0.2}\n")
    fleet = load_fleet(path)
    assert fleet.seed == 3
    assert fleet.models[0].output_tokens == (5, 9)
    bad_models: list[dict[str, Any]] = [
        {"name": "m", "family": "f", "error_rate": 0.6, "hang_rate": 0.6},
        {"name": "m", "family": "f", "output_tokens": [9, 5]},
        {"name": "m", "family": "f", "unknown_field": 1},
    ]
    for bad in bad_models:
        with pytest.raises(ValueError):
            FleetConfig.model_validate({"models": [bad]})
    with pytest.raises(ValueError, match="duplicate"):
        FleetConfig.model_validate({"models": [{"name": "m", "family": "a"}, {"name": "m", "family": "b"}]})


def test_default_fleet_and_demo_entries() -> None:
    fleet = default_fleet()
    entries = demo_model_entries("http://127.0.0.1:9/v1", fleet)
    assert entries["cheap"]["model"] == "openai/sim-mini"
    assert entries["cheap"]["input_cost_per_token"] == pytest.approx(0.15e-6)
    proposer_names = [e["model"].removeprefix("openai/") for e in entries["proposers"]]
    families = {m.family for m in fleet.models if m.name in proposer_names}
    assert len(families) == len(proposer_names) == 3
    for entry in [entries["cheap"], entries["aggregator"], entries["judge"], *entries["proposers"]]:
        assert entry["api_base"] == "http://127.0.0.1:9/v1"
        assert entry["output_cost_per_token"] > entry["input_cost_per_token"] * 0.99
    assert fleet.scaled(0).models[0].ttft_s == 0
