"""`moa-router calibrate`: thresholds chosen on held-back rows and written into the version's meta."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from classifier.calibration import escalate
from classifier.dataset import load_rows, split_rows
from classifier.registry import SEED_VERSION, ModelRegistry
from classifier.training import LabelledData
from router.cli import main
from router.redis_server import free_port

FIXTURE = Path(__file__).parent / "fixtures" / "classifier_rows.jsonl"


@pytest.fixture
def registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModelRegistry:
    monkeypatch.setenv("MOA_ROUTER_DATA_DIR", str(tmp_path / "data"))
    return ModelRegistry(tmp_path / "data" / "models")


def held_back_escalation(registry: ModelRegistry, fraction: float) -> float:
    model = registry.load()
    _, held = split_rows(load_rows(FIXTURE), fraction)
    data = LabelledData.from_rows(held)
    p = model.scorer.predict_proba(data.texts)
    t = model.meta["thresholds"]
    return float(escalate(p[:, 0], p[:, 1], t["difficulty"], t["stakes"], t["stakes_min_difficulty"]).mean())


def test_calibrating_the_seed_stores_a_promoted_copy(
    registry: ModelRegistry, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["calibrate", "--target-escalation-rate", "0.3", "--data", str(FIXTURE), "--held-back-fraction", "0.5"]
    assert main(args) == 0
    assert f"weights of {SEED_VERSION}" in capsys.readouterr().out
    active = registry.active_version()
    assert active != SEED_VERSION
    meta = registry.load(active).meta
    assert meta["derived_from"] == SEED_VERSION
    assert meta["threshold_choice"]["target_escalation_rate"] == 0.3
    assert held_back_escalation(registry, 0.5) == pytest.approx(meta["threshold_choice"]["escalation_rate"])
    assert meta["threshold_choice"]["escalation_rate"] <= 0.3


def test_calibrating_saves_a_new_version_and_promotes_it_when_the_source_was_active(registry: ModelRegistry) -> None:
    base = ["--data", str(FIXTURE), "--held-back-fraction", "0.5"]
    assert main(["calibrate", "--target-escalation-rate", "0.3", *base]) == 0
    first = registry.active_version()
    first_meta = registry.load(first).meta
    assert main(["calibrate", "--target-quality", "0.9", *base]) == 0
    # A new name, so that running replicas, which follow the active version by name, pick it up.
    second = registry.active_version()
    assert second != first
    assert registry.load(first).meta == first_meta
    meta = registry.load(second).meta
    assert meta["derived_from"] == first
    assert meta["threshold_choice"]["target_quality"] == 0.9 and meta["threshold_choice"]["difficult_recall"] >= 0.9

    assert main(["calibrate", "--target-escalation-rate", "0.1", "--model", first, *base]) == 0
    assert registry.active_version() == second  # the calibrated version was not the active one


def test_calibrate_refuses_held_back_rows_of_one_difficulty_label(
    registry: ModelRegistry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    easy = tmp_path / "easy.jsonl"
    easy.write_text(
        "".join(json.dumps({**row, "difficulty": 0}) + "\n" for row in load_rows(FIXTURE)), encoding="utf-8"
    )
    assert main(["calibrate", "--target-escalation-rate", "0.2", "--data", str(easy)]) == 2
    assert "one difficulty label" in capsys.readouterr().err
    assert registry.active_version() == SEED_VERSION


def test_calibrate_validates_its_targets(registry: ModelRegistry, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["calibrate", "--target-escalation-rate", "1.5", "--data", str(FIXTURE)]) == 2
    assert "within 0..1" in capsys.readouterr().err
    for fraction in ("0", "1"):
        args = ["--data", str(FIXTURE), "--held-back-fraction", fraction]
        assert main(["calibrate", "--target-escalation-rate", "0.2", *args]) == 2
        assert "--held-back-fraction" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["calibrate", "--data", str(FIXTURE)])  # one target is required


def test_a_promotion_redis_was_not_told_of_fails_the_command(
    registry: ModelRegistry, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Replicas started later load the version Redis names: a promotion it did not hear of must not pass.
    monkeypatch.delenv("MOA_ROUTER_CONFIG", raising=False)
    monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")
    args = ["calibrate", "--target-escalation-rate", "0.3", "--data", str(FIXTURE), "--held-back-fraction", "0.5"]
    assert main(args) == 1
    assert "promote" in capsys.readouterr().err
    assert registry.active_version() != SEED_VERSION  # promoted on disk: replicas sharing it follow the file
