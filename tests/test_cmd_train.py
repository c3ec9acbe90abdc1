"""`moa-router train` and `moa-router models`: versions are saved, gated, promoted and rolled back."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from classifier.dataset import is_held_back
from classifier.registry import SEED_VERSION, ModelRegistry
from router.cli import main
from router.commands import train as train_command

FIXTURE = Path(__file__).parent / "fixtures" / "classifier_rows.jsonl"
HELD_BACK = 0.3


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MOA_ROUTER_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)
    return tmp_path / "data"


def write_rows(path: Path, flip_labels: bool = False, flip_held_back: bool = True) -> Path:
    """The fixture rows, optionally with labels reversed (on the held-back rows too, or not)."""
    lines = []
    for line in FIXTURE.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        if flip_labels and (flip_held_back or not is_held_back(row, HELD_BACK)):
            row["difficulty"], row["stakes"] = 1 - row["difficulty"], 1 - row["stakes"]
        lines.append(json.dumps(row))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def train(*extra: str) -> int:
    return main(["train", "--held-back-fraction", str(HELD_BACK), *extra])


def test_train_saves_a_version_and_no_promote_keeps_the_active_one(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert train("--data", str(FIXTURE), "--no-promote") == 0
    out = capsys.readouterr().out
    registry = ModelRegistry(data_dir / "models")
    versions = [info.version for info in registry.list_versions() if info.version != SEED_VERSION]
    assert len(versions) == 1
    assert registry.active_version() == SEED_VERSION
    assert "difficulty auroc" in out and f"moa-router models promote {versions[0]}" in out


def test_promotes_only_when_not_worse_than_the_active_version(
    tmp_path: Path, data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    registry = ModelRegistry(data_dir / "models")
    # An active version that learnt the labels backwards: a correct one must beat it.
    assert train("--data", str(write_rows(tmp_path / "flipped.jsonl", flip_labels=True)), "--no-promote") == 0
    (backwards,) = [info.version for info in registry.list_versions() if info.version != SEED_VERSION]
    assert main(["models", "promote", backwards]) == 0
    capsys.readouterr()

    assert train("--data", str(write_rows(tmp_path / "right.jsonl"))) == 0
    assert "promoted" in capsys.readouterr().out
    good = registry.active_version()
    assert good not in (backwards, SEED_VERSION)

    # Training labels reversed, held-back labels right: worse than the active version on the
    # held-back split, so saved but not promoted.
    misled = write_rows(tmp_path / "misled.jsonl", flip_labels=True, flip_held_back=False)
    assert train("--data", str(misled)) == 0
    assert "not promoted: not shown to be at least as good as" in capsys.readouterr().out
    assert registry.active_version() == good


def test_no_promotion_without_evidence_on_the_held_back_split(
    tmp_path: Path, data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Held-back rows of one label on each head: no AUROC, so nothing shows the new version is as good
    # as the active one (the gate used to skip the head and promote).
    rows = [json.loads(line) for line in FIXTURE.read_text(encoding="utf-8").splitlines()]
    kept = [row for row in rows if not is_held_back(row, HELD_BACK) or row["difficulty"] == row["stakes"] == 0]
    assert any(is_held_back(row, HELD_BACK) for row in kept)
    one_label = tmp_path / "one_label.jsonl"
    one_label.write_text("".join(json.dumps(row) + "\n" for row in kept), encoding="utf-8")
    assert train("--data", str(one_label)) == 0
    assert "not promoted" in capsys.readouterr().out
    assert ModelRegistry(data_dir / "models").active_version() == SEED_VERSION


def test_train_validates_its_options_before_training(
    tmp_path: Path, data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for option, value, message in (
        ("--held-back-fraction", "0", "--held-back-fraction"),
        ("--held-back-fraction", "1", "--held-back-fraction"),
        ("--target-escalation-rate", "-1", "--target-escalation-rate"),
        ("--target-escalation-rate", "5", "--target-escalation-rate"),
        ("--output", str(tmp_path), "already exists"),
    ):
        assert main(["train", "--data", str(FIXTURE), option, value]) == 2
        assert message in capsys.readouterr().err
    assert [info.version for info in ModelRegistry(data_dir / "models").list_versions()] == [SEED_VERSION]


def test_models_list_promote_rollback(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert train("--data", str(FIXTURE), "--no-promote") == 0
    registry = ModelRegistry(data_dir / "models")
    (version,) = [info.version for info in registry.list_versions() if info.version != SEED_VERSION]
    capsys.readouterr()
    assert main(["models", "list"]) == 0
    listing = capsys.readouterr().out
    assert f"* {SEED_VERSION}" in listing and f"  {version}" in listing
    assert main(["models", "promote", version]) == 0
    assert registry.active_version() == version
    assert main(["models", "rollback"]) == 0
    assert registry.active_version() == SEED_VERSION
    assert main(["models", "rollback"]) == 1
    assert main(["models", "promote", "v-missing"]) == 1
    assert "v-missing" in capsys.readouterr().err


def test_train_reports_bad_data_with_its_line(
    tmp_path: Path, data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "x", "prompt": "hi", "difficulty": 0, "stakes": 0}\n{"id": "y", "prompt": 5}\n')
    assert train("--data", str(bad)) == 2
    assert "bad.jsonl:2:" in capsys.readouterr().err


def test_train_does_not_promote_over_a_version_promoted_while_it_ran(
    tmp_path: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Two `train` runs at once: each compared its candidate with the version active when it started, and
    # the later one replaced whatever the other had promoted meanwhile, however much better it was.
    registry = ModelRegistry(data_dir / "models")
    assert train("--data", str(write_rows(tmp_path / "flipped.jsonl", flip_labels=True)), "--no-promote") == 0
    (backwards,) = [info.version for info in registry.list_versions() if info.version != SEED_VERSION]
    registry.promote(backwards)  # an active version that any right one beats
    other = registry.derive(SEED_VERSION, registry.load(SEED_VERSION).meta)
    compare = train_command.labelled_metrics

    def compare_while_another_run_promotes(*args: Any) -> dict[str, Any]:
        registry.promote(other)
        return compare(*args)

    monkeypatch.setattr(train_command, "labelled_metrics", compare_while_another_run_promotes)
    capsys.readouterr()
    assert train("--data", str(write_rows(tmp_path / "right.jsonl"))) == 1
    assert f"not promoted: the active version changed from {backwards} to {other}" in capsys.readouterr().out
    assert registry.active_version() == other
