"""Training a version: stable split, data hash, held-back metrics, thresholds, promotion gate."""

from __future__ import annotations

from pathlib import Path

import pytest

from classifier.dataset import DatasetError, data_sha256, is_held_back, load_rows, row_text, split_rows
from classifier.training import not_worse, train_version

FIXTURE = Path(__file__).parent / "fixtures" / "classifier_rows.jsonl"


def test_split_is_stable_and_independent_of_other_rows() -> None:
    rows = load_rows(FIXTURE)
    train, held = split_rows(rows, 0.3)
    assert len(train) + len(held) == len(rows) and held and train
    # Adding rows does not move existing rows across the split.
    more = [*rows, *({**row, "id": row["id"] + "-copy"} for row in rows)]
    _, held_more = split_rows(more, 0.3)
    assert {row["id"] for row in held} <= {row["id"] for row in held_more}
    assert all(is_held_back(row, 0.3) for row in held)
    assert not any(is_held_back(row, 0.0) for row in rows)


def test_data_hash_tracks_content_not_key_order() -> None:
    rows = load_rows(FIXTURE)
    reordered_keys = [dict(reversed(list(row.items()))) for row in rows]
    assert data_sha256(rows) == data_sha256(reordered_keys)
    changed = [dict(row) for row in rows]
    changed[0]["difficulty"] = 1 - changed[0]["difficulty"]
    assert data_sha256(rows) != data_sha256(changed)


def test_load_rows_names_file_and_line_of_a_bad_row(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    path.write_text(
        '{"id": "a", "prompt": "hi", "difficulty": 0, "stakes": 0}\n\n{"id": "b", "prompt": "x", "difficulty": 2}\n'
    )
    with pytest.raises(DatasetError, match=r"rows\.jsonl:3: 'difficulty' must be 0 or 1"):
        load_rows(path)
    path.write_text('{"id": "a", "prompt": "hi", "difficulty": 0, "stakes": 0, "weight": -1}\n')
    with pytest.raises(DatasetError, match="weight"):
        load_rows(path)
    path.write_text("not json\n")
    with pytest.raises(DatasetError, match=r":1: invalid JSON"):
        load_rows(path)
    with pytest.raises(DatasetError, match="no such file"):
        load_rows(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match=r"no \*\.jsonl"):
        load_rows(tmp_path / "empty")


def test_train_version_describes_the_version() -> None:
    rows = load_rows(FIXTURE)
    scorer, meta = train_version(rows, held_back_fraction=0.3, params={"buckets_log2": 12, "calibration_folds": 2})
    _, held = split_rows(rows, 0.3)
    assert meta["n_train"] + meta["n_held_back"] == len(rows)
    assert meta["n_held_back"] == len(held)
    assert meta["training_data_sha256"] == data_sha256(rows)
    held_metrics = meta["metrics"]["held_back"]
    assert held_metrics["n"] == len(held)
    for head in ("difficulty", "stakes"):
        assert 0.0 <= held_metrics[head]["ece"] <= 1.0
        assert held_metrics[head]["auroc"] is None or 0.0 <= held_metrics[head]["auroc"] <= 1.0
    assert set(meta["thresholds"]) == {"difficulty", "stakes", "stakes_min_difficulty"}
    assert meta["threshold_choice"]["escalation_rate"] <= 0.2 + 1e-9
    assert scorer.predict_proba(["hello"]).shape == (1, 2)


def test_rows_may_carry_weights() -> None:
    rows = load_rows(FIXTURE)
    weighted_rows = [{**row, "weight": 3.0 if row["difficulty"] else 0.5} for row in rows]
    params = {"buckets_log2": 10, "calibration_folds": 2}
    plain, _ = train_version(rows, held_back_fraction=0.3, params=params)
    weighted, _ = train_version(weighted_rows, held_back_fraction=0.3, params=params)
    # Up-weighting the difficult rows moves the difficulty head's raw logits up on average.
    texts = [row_text(row) for row in rows]
    assert weighted.decision_function(texts)[:, 0].mean() > plain.decision_function(texts)[:, 0].mean()


def test_not_worse_gate() -> None:
    def metrics(d: float | None, s: float | None) -> dict[str, dict[str, float | None]]:
        return {"difficulty": {"auroc": d}, "stakes": {"auroc": s}}

    assert not_worse(metrics(0.80, 0.80), metrics(0.80, 0.80))
    assert not_worse(metrics(0.798, 0.85), metrics(0.80, 0.80))  # within tolerance
    assert not not_worse(metrics(0.70, 0.90), metrics(0.80, 0.80))
    assert not not_worse(metrics(0.90, 0.70), metrics(0.80, 0.80))
    assert not_worse(metrics(0.50, None), metrics(0.40, 0.90))  # an undefined stakes AUROC is not compared
    assert not not_worse(metrics(None, 0.95), metrics(None, 0.80))  # difficulty not comparable: no evidence
    assert not not_worse(metrics(0.90, 0.90), metrics(None, 0.80))


def test_logged_outcomes_correct_the_version_fitted_on_the_seed_rows() -> None:
    rows = load_rows(FIXTURE)
    params = {"buckets_log2": 12, "calibration_folds": 2}
    logged = [
        {
            "id": f"outcome:{index}",
            "prompt": f"please check the lighthouse schedule number {index}",
            "difficulty": 1,
            "stakes": 0,
            "weight": 1.0,
        }
        for index in range(40)
    ] + [
        {"id": f"outcome:x{index}", "prompt": f"say hi to the team, take {index}", "difficulty": 0, "stakes": 0}
        for index in range(40)
    ]
    base, _ = train_version(rows, held_back_fraction=0.3, params=params)
    adapted, meta = train_version(rows, logged=logged, held_back_fraction=0.3, params=params)
    _, logged_held = split_rows(logged, 0.3)
    assert meta["logged_outcomes"] == {"n_train": len(logged) - len(logged_held), "n_held_back": len(logged_held)}
    assert meta["metrics"]["held_back"]["n"] == len(split_rows(rows, 0.3)[1]) + len(logged_held)
    assert meta["adaptation"]["choice"] not in ("none", "shift")
    assert meta["training_data_sha256"] == data_sha256([*rows, *logged])
    probe = ["please check the lighthouse schedule for friday", "say hi to the team tomorrow"]
    before, after = base.predict_proba(probe)[:, 0], adapted.predict_proba(probe)[:, 0]
    assert after[0] > before[0] and after[1] < before[1]
