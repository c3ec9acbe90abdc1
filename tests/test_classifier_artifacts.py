"""Artifacts: a round trip reproduces the scores; anything unsafe or malformed is refused."""

from __future__ import annotations

import json
import math
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from classifier import artifacts
from classifier.artifacts import ArtifactError
from classifier.dataset import load_rows, row_text
from classifier.registry import SEED_DIR
from classifier.scorer import QueryScorer

FIXTURE = Path(__file__).parent / "fixtures" / "classifier_rows.jsonl"
TEXTS = ["hello", "Prove that sqrt(2) is irrational", "Is it safe to take ibuprofen with warfarin?", ""]


@pytest.fixture(scope="module")
def scorer() -> QueryScorer:
    rows = load_rows(FIXTURE)
    return QueryScorer(buckets_log2=10, calibration_folds=2).fit(
        [row_text(row) for row in rows], [row["difficulty"] for row in rows], [row["stakes"] for row in rows]
    )


def meta(**overrides: Any) -> dict[str, Any]:
    base = {
        "version": "v1",
        "created_at": "2026-11-25T15:00:00+00:00",
        "training_data_sha256": "0" * 64,
        "n_train": 60,
        "metrics": {},
        "thresholds": {"difficulty": 0.6, "stakes": 0.5, "stakes_min_difficulty": 0.2},
    }
    return {**base, **overrides}


def test_round_trip_gives_identical_scores(tmp_path: Path, scorer: QueryScorer) -> None:
    artifacts.save(tmp_path / "v1", scorer, meta())
    loaded = artifacts.load(tmp_path / "v1")
    assert np.array_equal(loaded.scorer.predict_proba(TEXTS), scorer.predict_proba(TEXTS))
    assert loaded.meta["thresholds"]["difficulty"] == 0.6
    assert loaded.meta["feature_config"]["buckets_log2"] == 10
    assert set(loaded.meta["calibration"]) == {"difficulty", "stakes"}
    assert sorted(p.name for p in (tmp_path / "v1").iterdir()) == ["meta.json", "weights.npz"]


def test_versions_are_immutable(tmp_path: Path, scorer: QueryScorer) -> None:
    artifacts.save(tmp_path / "v1", scorer, meta())
    with pytest.raises(ArtifactError, match="already exists"):
        artifacts.save(tmp_path / "v1", scorer, meta())


def test_meta_must_be_complete(tmp_path: Path, scorer: QueryScorer) -> None:
    incomplete = meta()
    del incomplete["training_data_sha256"]
    with pytest.raises(ArtifactError, match="training_data_sha256"):
        artifacts.save(tmp_path / "v1", scorer, incomplete)
    with pytest.raises(ArtifactError, match="thresholds"):
        artifacts.save(tmp_path / "v2", scorer, meta(thresholds={"difficulty": "high"}))
    assert not (tmp_path / "v1").exists() and not (tmp_path / "v2").exists()


def test_refuses_pickled_arrays(tmp_path: Path, scorer: QueryScorer) -> None:
    artifacts.save(tmp_path / "v1", scorer, meta())
    arrays = dict(scorer.arrays())
    arrays["intercept"] = np.array([{"evil": "object"}, None], dtype=object)
    np.savez(tmp_path / "v1" / "weights.npz", allow_pickle=True, **arrays)
    with pytest.raises(ArtifactError, match="refused"):
        artifacts.load(tmp_path / "v1")


def test_refuses_a_pickle_file_in_place_of_the_weights(tmp_path: Path, scorer: QueryScorer) -> None:
    artifacts.save(tmp_path / "v1", scorer, meta())
    (tmp_path / "v1" / "weights.npz").write_bytes(pickle.dumps({"hashed_weights": [1, 2, 3]}))
    with pytest.raises(ArtifactError, match="refused"):
        artifacts.load(tmp_path / "v1")


def test_refuses_wrong_shapes_unknown_arrays_and_non_finite(tmp_path: Path, scorer: QueryScorer) -> None:
    cases = {
        "shape": {**scorer.arrays(), "intercept": np.zeros(3)},
        "unexpected": {**scorer.arrays(), "extra": np.zeros(1)},
        "NaN": {**scorer.arrays(), "intercept": np.array([np.nan, 0.0])},
    }
    for name, arrays in cases.items():
        directory = tmp_path / name
        artifacts.save(directory, scorer, meta())
        np.savez(directory / "weights.npz", allow_pickle=False, **arrays)
        with pytest.raises(ArtifactError, match=name):
            artifacts.load(directory)


def test_refuses_missing_or_broken_meta(tmp_path: Path, scorer: QueryScorer) -> None:
    with pytest.raises(ArtifactError, match=r"no meta\.json"):
        artifacts.load(tmp_path)
    artifacts.save(tmp_path / "v1", scorer, meta())
    (tmp_path / "v1" / "meta.json").write_text("{not json")
    with pytest.raises(ArtifactError, match="not valid JSON"):
        artifacts.load(tmp_path / "v1")


def test_refuses_a_feature_set_this_code_does_not_compute(tmp_path: Path, scorer: QueryScorer) -> None:
    artifacts.save(tmp_path / "v1", scorer, meta())
    path = tmp_path / "v1" / "meta.json"
    data = json.loads(path.read_text())
    data["feature_config"]["dense_features"] = ["something_else"]
    path.write_text(json.dumps(data))
    with pytest.raises(ArtifactError, match="dense features"):
        artifacts.load(tmp_path / "v1")


def test_the_shipped_seed_loads_and_scores() -> None:
    seed = artifacts.load(SEED_DIR)
    assert seed.meta["version"] == "seed"
    assert len(seed.meta["training_data_sha256"]) == 64
    probabilities = seed.scorer.predict_proba(TEXTS)
    assert probabilities.shape == (len(TEXTS), 2)


def test_refuses_non_finite_thresholds_and_calibration(tmp_path: Path, scorer: QueryScorer) -> None:
    # json reads NaN and Infinity; a NaN difficulty threshold loaded silently and compared false with
    # every score, so that version never escalated on difficulty.
    for name, path_in_meta, value in (
        ("threshold", ("thresholds", "difficulty"), float("nan")),
        ("threshold-inf", ("thresholds", "stakes"), float("inf")),
        ("calibration", ("calibration", "difficulty", "a"), float("inf")),
        ("calibration-nan", ("calibration", "stakes", "b"), float("nan")),
    ):
        directory = tmp_path / name
        artifacts.save(directory, scorer, meta())
        data = json.loads((directory / "meta.json").read_text())
        *parents, key = path_in_meta
        target = data
        for parent in parents:
            target = target[parent]
        target[key] = value
        (directory / "meta.json").write_text(json.dumps(data))
        with pytest.raises(ArtifactError, match=parents[0]):
            artifacts.load(directory)
    with pytest.raises(ArtifactError, match="finite"):
        artifacts.save(
            tmp_path / "new",
            scorer,
            meta(thresholds={"difficulty": math.nan, "stakes": 0.5, "stakes_min_difficulty": 0.2}),
        )
