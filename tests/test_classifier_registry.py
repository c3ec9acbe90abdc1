"""The registry: versions on disk, the active pointer, promotion and rollback."""

from __future__ import annotations

import itertools
import multiprocessing
from pathlib import Path
from typing import Any

import pytest

from classifier.artifacts import ArtifactError
from classifier.dataset import load_rows, row_text
from classifier.registry import (
    SEED_VERSION,
    ActiveVersionChangedError,
    ModelRegistry,
    VersionNotFoundError,
    default_models_dir,
    load_model,
)
from classifier.scorer import QueryScorer

FIXTURE = Path(__file__).parent / "fixtures" / "classifier_rows.jsonl"


@pytest.fixture(scope="module")
def scorer() -> QueryScorer:
    rows = load_rows(FIXTURE)
    return QueryScorer(buckets_log2=10, calibration_folds=2).fit(
        [row_text(row) for row in rows], [row["difficulty"] for row in rows], [row["stakes"] for row in rows]
    )


def meta(**overrides: Any) -> dict[str, Any]:
    return {
        "training_data_sha256": "1" * 64,
        "n_train": 60,
        "metrics": {"held_back": {}},
        "thresholds": {"difficulty": 0.6, "stakes": 0.5, "stakes_min_difficulty": 0.2},
        **overrides,
    }


def test_fresh_registry_serves_the_shipped_seed(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path / "models")
    assert registry.active_version() == SEED_VERSION
    loaded = registry.load()
    assert loaded.version == SEED_VERSION
    assert [info.version for info in registry.list_versions()] == [SEED_VERSION]
    assert registry.list_versions()[0].active


def test_save_lists_and_loads_a_version(tmp_path: Path, scorer: QueryScorer) -> None:
    registry = ModelRegistry(tmp_path / "models")
    version = registry.save(scorer, meta())
    assert version.startswith("v") and (tmp_path / "models" / version / "weights.npz").is_file()
    loaded = registry.load(version)
    assert loaded.meta["version"] == version
    assert loaded.meta["created_at"]
    assert {info.version for info in registry.list_versions()} == {SEED_VERSION, version}
    assert registry.active_version() == SEED_VERSION  # saving does not promote


def test_promote_and_rollback(tmp_path: Path, scorer: QueryScorer) -> None:
    registry = ModelRegistry(tmp_path / "models")
    first = registry.save(scorer, meta())
    (tmp_path / "models" / "second").mkdir()
    second = "second"
    for path in (tmp_path / "models" / first).iterdir():
        (tmp_path / "models" / second / path.name).write_bytes(path.read_bytes())
    registry.promote(first)
    assert registry.active_version() == first
    registry.promote(second)
    assert registry.load().version == second
    assert registry.rollback() == first
    assert registry.active_version() == first
    assert registry.rollback() == SEED_VERSION
    with pytest.raises(VersionNotFoundError, match="nothing to roll back"):
        registry.rollback()


def test_promoting_an_unknown_or_unsafe_name_fails(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path / "models")
    with pytest.raises(VersionNotFoundError):
        registry.promote("v-does-not-exist")
    with pytest.raises(VersionNotFoundError, match="invalid"):
        registry.promote("")  # not "the active version"
    with pytest.raises(VersionNotFoundError, match="invalid"):
        registry.load("../../etc")
    assert registry.active_version() == SEED_VERSION


def test_derive_stores_new_metadata_as_a_new_version(tmp_path: Path, scorer: QueryScorer) -> None:
    registry = ModelRegistry(tmp_path / "models")
    thresholds = {"difficulty": 0.7, "stakes": 0.4, "stakes_min_difficulty": 0.1}
    for source in (registry.save(scorer, meta()), SEED_VERSION):
        before = registry.load(source).meta
        derived = registry.derive(source, {**before, "thresholds": thresholds})
        assert derived not in (source, SEED_VERSION)
        assert registry.load(derived).meta["derived_from"] == source
        assert registry.load(derived).meta["thresholds"] == thresholds
        assert registry.load(source).meta == before  # versions are never changed in place


def test_rollback_never_activates_a_version_that_cannot_be_loaded(tmp_path: Path, scorer: QueryScorer) -> None:
    registry = ModelRegistry(tmp_path / "models")
    first, second = registry.save(scorer, meta()), registry.save(scorer, meta())
    registry.promote(first)
    registry.promote(second)
    for path in (tmp_path / "models" / first).iterdir():
        path.unlink()
    (tmp_path / "models" / first).rmdir()
    with pytest.raises(VersionNotFoundError, match=f"cannot roll back to {first}.*models promote VERSION"):
        registry.rollback()
    assert registry.active_version() == second


def test_load_model_accepts_a_directory_or_a_version(
    tmp_path: Path, scorer: QueryScorer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MOA_ROUTER_DATA_DIR", str(tmp_path))
    assert default_models_dir() == tmp_path / "models"
    version = ModelRegistry(tmp_path / "models").save(scorer, meta())
    assert load_model(str(tmp_path / "models" / version)).version == version
    assert load_model(version).version == version
    assert load_model(None).version == SEED_VERSION


def _promote_back_and_forth(models_dir: Path, version: str, start: Any) -> None:
    start.wait()
    for _ in range(PROMOTIONS_EACH):
        ModelRegistry(models_dir).promote(version)
        ModelRegistry(models_dir).promote(SEED_VERSION)


PROMOTIONS_EACH = 10


def test_promotions_at_the_same_time_each_stay_on_the_rollback_history(tmp_path: Path, scorer: QueryScorer) -> None:
    # Each promotion reads HISTORY and ACTIVE and writes them back: unlocked, two commands at once lost
    # one's record, so a rollback skipped versions that had been active.
    models_dir = tmp_path / "models"
    registry = ModelRegistry(models_dir)
    versions = [registry.save(scorer, meta()) for _ in range(4)]
    context = multiprocessing.get_context("fork")
    start = context.Barrier(len(versions))
    processes = [
        context.Process(target=_promote_back_and_forth, args=(models_dir, version, start)) for version in versions
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(60)
    assert [process.exitcode for process in processes] == [0] * len(versions)
    chain = [*(models_dir / "HISTORY").read_text().split(), registry.active_version()]
    # Each version was promoted PROMOTIONS_EACH times (never while active): each time it is recorded when
    # the next promotion replaces it, or it is still active.
    assert {version: chain.count(version) for version in versions} == dict.fromkeys(versions, PROMOTIONS_EACH)
    assert all(previous != following for previous, following in itertools.pairwise(chain))


def test_a_promotion_that_expects_another_active_version_is_refused(tmp_path: Path, scorer: QueryScorer) -> None:
    registry = ModelRegistry(tmp_path / "models")
    first, second = registry.save(scorer, meta()), registry.save(scorer, meta())
    registry.promote(first)  # promoted by someone else after the caller compared with the seed
    with pytest.raises(ActiveVersionChangedError, match=first):
        registry.promote(second, expected_active=SEED_VERSION)
    assert registry.active_version() == first
    registry.promote(second, expected_active=first)
    assert registry.active_version() == second


def test_rollback_after_a_promotion_cut_short_goes_to_the_version_before(tmp_path: Path, scorer: QueryScorer) -> None:
    registry = ModelRegistry(tmp_path / "models")
    first, second = registry.save(scorer, meta()), registry.save(scorer, meta())
    registry.promote(first)
    # A promotion of `second` that wrote HISTORY and then died before writing ACTIVE.
    (tmp_path / "models" / "HISTORY").write_text(f"{SEED_VERSION}\n{first}\n")
    assert registry.active_version() == first
    assert registry.rollback() == SEED_VERSION  # not a "rollback" from first to first
    registry.promote(first)
    (tmp_path / "models" / "HISTORY").write_text(f"{SEED_VERSION}\n{first}\n")
    registry.promote(second)  # the dangling entry is not recorded twice
    assert (tmp_path / "models" / "HISTORY").read_text().split() == [SEED_VERSION, first]


def test_damaged_files_are_left_out_not_fatal(tmp_path: Path, scorer: QueryScorer) -> None:
    registry = ModelRegistry(tmp_path / "models")
    good, broken = registry.save(scorer, meta()), registry.save(scorer, meta())
    registry.promote(good)
    (tmp_path / "models" / broken / "meta.json").write_bytes(b"\xff\xfe{not utf-8")
    # `models list` shows what can be loaded; the damaged version is left out rather than crashing it.
    assert {info.version for info in registry.list_versions()} == {SEED_VERSION, good}
    with pytest.raises(ArtifactError):
        registry.load(broken)
    (tmp_path / "models" / "ACTIVE").write_bytes(b"\xff\xfe")
    assert registry.active_version() == SEED_VERSION  # a damaged ACTIVE file names nothing
