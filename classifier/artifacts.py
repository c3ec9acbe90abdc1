"""Safe, inspectable storage of one classifier version: weights.npz + meta.json in a directory.

Loading never unpickles: arrays are read with `allow_pickle=False` and must be plain numeric arrays,
and the metadata is JSON. A version directory can be read with `numpy` and a text editor.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from classifier.booster import ARRAY_NAMES as BOOSTER_ARRAY_NAMES
from classifier.calibration import Platt
from classifier.features import FeatureConfig
from classifier.scorer import ARRAY_NAMES, HEADS, QueryScorer

FORMAT_VERSION = 1
WEIGHTS_FILE = "weights.npz"
META_FILE = "meta.json"
REQUIRED_META_KEYS = (
    "format_version",
    "version",
    "created_at",
    "training_data_sha256",
    "n_train",
    "metrics",
    "thresholds",
    "feature_config",
    "calibration",
)
THRESHOLD_KEYS = ("difficulty", "stakes", "stakes_min_difficulty")


class ArtifactError(ValueError):
    """A version directory is missing, incomplete or not in the expected format."""


@dataclass(frozen=True, slots=True)
class Artifact:
    scorer: QueryScorer
    meta: dict[str, Any]


def scorer_meta(scorer: QueryScorer) -> dict[str, Any]:
    """The parts of meta.json that describe the scorer itself (features, calibration, parameters)."""
    difficulty, stakes = scorer.platt_
    params = scorer.get_params()
    return {
        "feature_config": scorer.feature_config().to_json(),
        "calibration": {"difficulty": difficulty.to_json(), "stakes": stakes.to_json()},
        "params": {
            "C": params["C"],
            "calibration_folds": params["calibration_folds"],
            "random_state": params["random_state"],
        },
    }


def save(directory: Path, scorer: QueryScorer, meta: dict[str, Any]) -> None:
    """Write a version directory atomically: it appears complete or not at all."""
    full_meta = {"format_version": FORMAT_VERSION, **meta, **scorer_meta(scorer)}
    validate_meta(full_meta)
    directory = Path(directory)
    if directory.exists():
        raise ArtifactError(f"{directory} already exists; versions are immutable")
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}-", dir=directory.parent))
    staging.chmod(0o755)  # mkdtemp makes it private; a version must be readable by every replica
    try:
        np.savez_compressed(staging / WEIGHTS_FILE, allow_pickle=False, **scorer.arrays())
        _write_json(staging / META_FILE, full_meta)
        os.replace(staging, directory)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def load(directory: Path) -> Artifact:
    """Read a version directory; raises ArtifactError when it is not a valid artifact."""
    directory = Path(directory)
    meta = read_meta(directory)
    arrays = _read_arrays(directory / WEIGHTS_FILE)
    try:
        feature_config = FeatureConfig.from_json(meta["feature_config"])
        calibration = {head: Platt.from_json(meta["calibration"][head]) for head in HEADS}
        for head, platt in calibration.items():
            if not (math.isfinite(platt.a) and math.isfinite(platt.b)):
                raise ValueError(f"calibration of {head} must be finite numbers, got {platt}")
        params = {
            key: meta.get("params", {})[key]
            for key in ("C", "calibration_folds", "random_state")
            if key in meta.get("params", {})
        }
        scorer = QueryScorer.from_state(arrays, feature_config, calibration, params)
    except (KeyError, TypeError, ValueError) as exc:
        raise ArtifactError(f"{directory}: {exc}") from exc
    return Artifact(scorer=scorer, meta=meta)


def read_meta(directory: Path) -> dict[str, Any]:
    path = Path(directory) / META_FILE
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ArtifactError(f"{directory} is not a classifier version: no {META_FILE}") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{path}: not valid JSON ({exc})") from exc
    except OSError as exc:
        raise ArtifactError(f"{path}: cannot be read ({exc})") from exc
    if not isinstance(meta, dict):
        raise ArtifactError(f"{path}: expected a JSON object")
    validate_meta(meta, where=str(path))
    return meta


def validate_meta(meta: dict[str, Any], where: str = "meta") -> None:
    missing = [key for key in REQUIRED_META_KEYS if key not in meta]
    if missing:
        raise ArtifactError(f"{where}: missing keys {missing}")
    if meta["format_version"] != FORMAT_VERSION:
        raise ArtifactError(f"{where}: format_version {meta['format_version']!r}, expected {FORMAT_VERSION}")
    thresholds = meta["thresholds"]
    # json reads NaN and Infinity: a NaN threshold compares false with every score and would silently
    # stop all escalation.
    if not isinstance(thresholds, dict) or any(
        not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value)
        for value in (thresholds.get(key) for key in THRESHOLD_KEYS)
    ):
        raise ArtifactError(f"{where}: thresholds must give finite numbers for {list(THRESHOLD_KEYS)}")


def _read_arrays(path: Path) -> dict[str, np.ndarray[Any, Any]]:
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except FileNotFoundError as exc:
        raise ArtifactError(f"{path} is missing") from exc
    except (ValueError, OSError, zipfile.BadZipFile) as exc:
        # ValueError is numpy refusing pickled (object) data, since pickles are not allowed.
        raise ArtifactError(f"{path}: refused ({exc})") from exc
    unexpected = set(arrays) - set(ARRAY_NAMES) - set(BOOSTER_ARRAY_NAMES)
    if unexpected:
        raise ArtifactError(f"{path}: unexpected arrays {sorted(unexpected)}")
    for name, array in arrays.items():
        if array.dtype.kind not in "fiu":
            raise ArtifactError(f"{path}: array {name!r} has dtype {array.dtype}, expected numbers")
        if not np.all(np.isfinite(array)):
            raise ArtifactError(f"{path}: array {name!r} holds NaN or infinite values")
    return arrays


def _write_json(path: Path, data: dict[str, Any]) -> None:
    staging = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    staging.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(staging, path)
