"""`moa-router evaluate`: labelled metrics and routing metrics with baselines and a plot."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from classifier.registry import SEED_VERSION, ModelRegistry
from router.cli import main
from tests.conftest import settings_dict

FIXTURE = Path(__file__).parent / "fixtures" / "classifier_rows.jsonl"


def routing_file(path: Path) -> Path:
    cheap, strong = "org/cheap-model", "strong-model"
    rows = [
        ("What is 2 + 2?", 1, 1),
        ("Prove that there are infinitely many primes.", 0, 1),
        ("Write a thread-safe LRU cache in Rust with tests.", 0, 1),
        ("hello there", 1, 1),
        ("Translate 'cat' to French", 1, 0),
        ("Explain the tax treatment of stock options exercised early", 0, 1),
        ("Which is bigger, 3 or 5?", None, 1),
    ]
    with path.open("w", encoding="utf-8") as handle:
        for index, (text, cheap_ok, strong_ok) in enumerate(rows):
            row = {
                "id": f"r{index}",
                "text": text,
                "perf": {cheap: cheap_ok, strong: strong_ok},
                "cost": {cheap: 0.001, strong: 0.01},
            }
            handle.write(json.dumps(row) + "\n")
    return path


def test_evaluate_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("MOA_ROUTER_DATA_DIR", str(tmp_path / "data"))
    plot = tmp_path / "curve.png"
    args = [
        "evaluate",
        "--data",
        str(FIXTURE),
        "--split",
        "all",
        "--routing-data",
        str(routing_file(tmp_path / "r.jsonl")),
        "--cheap",
        "cheap-model",
        "--strong",
        "strong-model",
        "--plot",
        str(plot),
        "--json",
    ]
    assert main(args) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["version"] == "seed"
    labelled = result["labelled"]["metrics"]
    assert labelled["n"] == 60
    assert 0.0 <= labelled["difficulty"]["auroc"] <= 1.0 and 0.0 <= labelled["stakes"]["ece"] <= 1.0

    routing = result["routing"]
    assert routing["n"] == 6 and routing["skipped"] == 1
    assert routing["cheap"] == "org/cheap-model"
    assert routing["cheap_quality"] == pytest.approx(3 / 6) and routing["strong_quality"] == pytest.approx(5 / 6)
    routers = routing["routers"]
    assert set(routers) == {"seed", "random", "prompt-length", "oracle"}
    assert routers["random"]["apgr"] == pytest.approx(0.5)
    # Oracle: gains 1, 1, 1 first, then the zeros, then the loss; the gap is two prompts.
    # PGR at 0..6 calls: 0, 0.5, 1, 1.5, 1.5, 1.5, 1 (linear inside the tie), trapezoids of width 1/6.
    assert routers["oracle"]["apgr"] == pytest.approx((0.5 + 1 + 1.5 + 1.5 + 1.5 + 0.5) / 6, abs=1e-9)
    curve = routing["curve"]
    assert curve["strong_share"][0] == 0.0 and curve["strong_share"][-1] == 1.0
    assert curve["cost_usd"][0] == pytest.approx(0.006) and curve["cost_usd"][-1] == pytest.approx(0.06)
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_evaluate_tables_and_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MOA_ROUTER_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)
    routing = str(routing_file(tmp_path / "r.jsonl"))
    assert (
        main(["evaluate", "--routing-data", routing, "--cheap", "cheap-model", "--strong", "strong-model", "--no-plot"])
        == 0
    )
    out = capsys.readouterr().out
    assert "APGR" in out and "random" in out
    assert main(["evaluate", "--routing-data", routing, "--cheap", "nope", "--no-plot"]) == 2
    assert "unknown" in capsys.readouterr().err
    # A plot path without a suffix: the file matplotlib writes, with ".png", is the one reported.
    args = ["--routing-data", routing, "--cheap", "cheap-model", "--strong", "strong-model", "--json"]
    assert main(["evaluate", *args, "--plot", str(tmp_path / "curve")]) == 0
    assert json.loads(capsys.readouterr().out)["routing"]["plot"] == str(tmp_path / "curve.png")
    assert (tmp_path / "curve.png").is_file()
    # No row with an outcome for both models: said so, not a failure deep in the metrics.
    no_outcomes = tmp_path / "none.jsonl"
    no_outcomes.write_text(json.dumps({"text": "x", "perf": {"a": None, "b": 1}}) + "\n", encoding="utf-8")
    assert main(["evaluate", "--routing-data", str(no_outcomes), "--cheap", "a", "--strong", "b", "--no-plot"]) == 2
    assert "none of the 1 routing rows has an outcome for every one of a, b" in capsys.readouterr().err
    assert main(["evaluate", "--model", "v-missing", "--routing-data", routing]) == 2


@pytest.mark.parametrize(
    ("perf", "cost", "message"),
    [
        ("NaN", "0.01", "perf of 'strong-model' must be a number within 0..1"),
        ("5", "0.01", "perf of 'strong-model' must be a number within 0..1"),
        ('"yes"', "0.01", "perf of 'strong-model' must be a number within 0..1"),
        ("1", "null", "cost of 'strong-model' must be a non-negative number"),
        ("1", "-1", "cost of 'strong-model' must be a non-negative number"),
    ],
)
def test_evaluate_names_the_line_of_a_bad_outcome(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    perf: str,
    cost: str,
    message: str,
) -> None:
    monkeypatch.setenv("MOA_ROUTER_DATA_DIR", str(tmp_path / "data"))
    routing = routing_file(tmp_path / "r.jsonl")
    # json.dumps cannot write these values, so the third row is written by hand.
    bad = f'{{"id": "bad", "text": "x", "perf": {{"org/cheap-model": 1, "strong-model": {perf}}}, '
    bad += f'"cost": {{"org/cheap-model": 0.001, "strong-model": {cost}}}}}'
    lines = routing.read_text(encoding="utf-8").splitlines()
    routing.write_text("\n".join([*lines[:2], bad, *lines[2:]]) + "\n", encoding="utf-8")
    assert main(["evaluate", "--routing-data", str(routing), "--cheap", "cheap-model", "--no-plot"]) == 2
    err = capsys.readouterr().err
    assert f"{routing}:3: {message}" in err and "Traceback" not in err


def test_a_line_that_is_not_utf8_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MOA_ROUTER_DATA_DIR", str(tmp_path / "data"))
    data = tmp_path / "latin1.jsonl"
    data.write_bytes(FIXTURE.read_bytes() + '{"text": "caf\xe9", "difficulty": 0, "stakes": 0}\n'.encode("latin-1"))
    line = FIXTURE.read_text(encoding="utf-8").count("\n") + 1
    assert main(["train", "--data", str(data), "--no-promote"]) == 2
    assert f"{data}:{line}: not UTF-8" in capsys.readouterr().err


@pytest.mark.parametrize("named_by", ["flag", "env"])
def test_evaluate_uses_the_active_version_and_data_directory_of_the_services_config(
    named_by: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # The service with this config serves the version promoted under its data_dir; evaluate used ./.moa-router's.
    for name in ("MOA_ROUTER_DATA_DIR", "MOA_ROUTER_CONFIG", "REDIS_URL"):
        monkeypatch.delenv(name, raising=False)
    data_dir = tmp_path / "data"
    registry = ModelRegistry(data_dir / "models")
    seed = registry.load(SEED_VERSION)
    promoted = registry.save(seed.scorer, {k: v for k, v in seed.meta.items() if k not in ("version", "created_at")})
    registry.promote(promoted)
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(settings_dict("http://127.0.0.1:9/v1", data_dir)), encoding="utf-8")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    if named_by == "env":
        monkeypatch.setenv("MOA_ROUTER_CONFIG", str(config))
    args = ["evaluate", "--data", str(FIXTURE), "--routing-data", str(routing_file(tmp_path / "r.jsonl"))]
    args += ["--cheap", "cheap-model", "--strong", "strong-model", "--json"]
    assert main([*args, "--config", str(config)] if named_by == "flag" else args) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["version"] == promoted
    plot = data_dir / "reports" / "routing-curve.png"
    assert result["routing"]["plot"] == str(plot) and plot.is_file()
    assert not (elsewhere / ".moa-router").exists()
