"""Classifier versions on disk: list, load, save, promote, roll back.

Layout under `models_dir` (`$MOA_ROUTER_DATA_DIR/models`): one directory per version, a file ACTIVE
naming the promoted version, and HISTORY listing the versions promoted before it (for rollback).
Version "seed" is the artifact shipped inside the package, so a fresh install scores untrained.
Promotions and rollbacks read and rewrite ACTIVE and HISTORY under a lock on the directory (LOCK_FILE),
so two at once, from any processes, neither lose a promotion nor leave ACTIVE and HISTORY disagreeing.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import re
import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from classifier import artifacts
from classifier.artifacts import ArtifactError
from classifier.scorer import QueryScorer

logger = logging.getLogger(__name__)

SEED_VERSION = "seed"
SEED_DIR = Path(__file__).parent / "artifacts" / SEED_VERSION
ACTIVE_FILE = "ACTIVE"
HISTORY_FILE = "HISTORY"
LOCK_FILE = ".lock"
_VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def default_models_dir() -> Path:
    return Path(os.environ.get("MOA_ROUTER_DATA_DIR") or ".moa-router") / "models"


@dataclass(frozen=True, slots=True)
class VersionInfo:
    version: str
    created_at: str
    n_train: int
    metrics: dict[str, Any]
    active: bool
    path: Path


@dataclass(frozen=True, slots=True)
class LoadedModel:
    version: str
    scorer: QueryScorer
    meta: dict[str, Any]


class VersionNotFoundError(LookupError):
    """No classifier version by that name."""


class ActiveVersionChangedError(RuntimeError):
    """Another promotion or rollback changed the active version since the caller looked at it."""


class ModelRegistry:
    """The classifier versions under one models directory."""

    def __init__(self, models_dir: Path) -> None:
        self.models_dir = Path(models_dir)
        self._thread_lock = threading.RLock()
        self._lock_depth = 0
        self._lock_handle: int | None = None

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the directory's lock (re-entrant): promotions and rollbacks, and what their caller does
        with the result (announcing it), happen one at a time across processes, in the same order."""
        with self._thread_lock:
            if self._lock_depth == 0:
                self.models_dir.mkdir(parents=True, exist_ok=True)
                handle = os.open(self.models_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX)
                except BaseException:
                    os.close(handle)
                    raise
                self._lock_handle = handle
            self._lock_depth += 1
            try:
                yield
            finally:
                self._lock_depth -= 1
                if self._lock_depth == 0 and self._lock_handle is not None:
                    handle, self._lock_handle = self._lock_handle, None
                    os.close(handle)  # closing the descriptor releases the lock

    def path_of(self, version: str) -> Path:
        if version == SEED_VERSION and not (self.models_dir / SEED_VERSION).is_dir():
            return SEED_DIR
        if not _VERSION_RE.match(version):
            raise VersionNotFoundError(f"invalid version name {version!r}")
        path = self.models_dir / version
        if not (path / artifacts.META_FILE).is_file():
            raise VersionNotFoundError(f"no classifier version {version!r} in {self.models_dir}")
        return path

    def list_versions(self) -> list[VersionInfo]:
        """Every loadable version, oldest first, the shipped seed included."""
        active = self.active_version()
        paths = {SEED_VERSION: SEED_DIR} if SEED_DIR.is_dir() else {}
        if self.models_dir.is_dir():
            for child in self.models_dir.iterdir():
                if child.is_dir() and not child.name.startswith(".") and (child / artifacts.META_FILE).is_file():
                    paths[child.name] = child
        infos = []
        for version, path in paths.items():
            try:
                meta = artifacts.read_meta(path)
            except ArtifactError:
                continue  # a broken directory is reported by `load`, not listed as usable
            infos.append(
                VersionInfo(
                    version=version,
                    created_at=str(meta["created_at"]),
                    n_train=int(meta["n_train"]),
                    metrics=dict(meta["metrics"]),
                    active=version == active,
                    path=path,
                )
            )
        return sorted(infos, key=lambda info: (info.created_at, info.version))

    def active_version(self) -> str:
        try:
            name = (self.models_dir / ACTIVE_FILE).read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            return SEED_VERSION
        except (OSError, UnicodeDecodeError) as exc:
            # A damaged ACTIVE file names no version: the seed, until a promotion writes it again.
            logger.error("cannot read %s (%s); the active version is taken to be %s", ACTIVE_FILE, exc, SEED_VERSION)
            return SEED_VERSION
        return name or SEED_VERSION

    def history(self) -> list[str]:
        """The versions active before the current one, oldest first (what rollback goes back through)."""
        return self._history()

    def load(self, version: str | None = None) -> LoadedModel:
        """Load a version (the active one by default). Raises VersionNotFoundError or ArtifactError for
        any version that cannot be loaded, however its files are broken."""
        name = self.active_version() if version is None else version
        path = self.path_of(name)
        try:
            artifact = artifacts.load(path)
        except ArtifactError:
            raise
        except (OSError, ValueError, EOFError) as exc:
            # An empty weights file (EOFError), undecodable bytes in meta.json (UnicodeDecodeError), an
            # unreadable file: callers that keep serving another version handle one kind of error.
            raise ArtifactError(f"{path}: cannot be read ({type(exc).__name__}: {exc})") from exc
        return LoadedModel(version=name, scorer=artifact.scorer, meta=artifact.meta)

    def save(self, scorer: QueryScorer, meta: dict[str, Any]) -> str:
        """Store a new version and return its id, e.g. "v20261125-153000-ab12cd" (not promoted)."""
        now = datetime.now(UTC)
        # Weights plus a random salt: two versions trained in the same second never share an id.
        hasher = hashlib.sha256(scorer.arrays()["hashed_weights"].tobytes())
        hasher.update(secrets.token_bytes(8))
        version = f"v{now:%Y%m%d-%H%M%S}-{hasher.hexdigest()[:6]}"
        full_meta = {"created_at": now.isoformat(timespec="seconds"), **meta, "version": version}
        artifacts.save(self.models_dir / version, scorer, full_meta)
        return version

    def derive(self, version: str, meta: dict[str, Any]) -> str:
        """Store `version`'s weights with a new meta.json as a new version and return its id.

        Versions are never changed in place: replicas follow the active version by its name, so a
        version whose thresholds changed under the same name would not be picked up by running ones.
        """
        scorer = self.load(version).scorer
        kept = {key: value for key, value in meta.items() if key not in ("version", "created_at")}
        return self.save(scorer, {**kept, "derived_from": version})

    def promote(self, version: str, *, expected_active: str | None = None) -> None:
        """Make `version` the active one; the previous active version goes on the rollback history.

        With `expected_active`, only if that is still the active version (else ActiveVersionChangedError):
        `train` compared its candidate with that one, not with whatever was promoted meanwhile."""
        self.load(version)  # only a loadable version may become active
        with self.lock():
            previous = self.active_version()
            if expected_active is not None and previous != expected_active:
                raise ActiveVersionChangedError(
                    f"the active version changed from {expected_active} to {previous} meanwhile"
                )
            if previous == version:
                return
            history = self._history()
            if not history or history[-1] != previous:
                history.append(previous)
            # HISTORY first: a crash between the two writes leaves an entry equal to ACTIVE, which
            # rollback skips, rather than an ACTIVE whose predecessor is forgotten.
            self._write(HISTORY_FILE, "".join(f"{name}\n" for name in history))
            self._write(ACTIVE_FILE, version + "\n")

    def rollback(self) -> str:
        """Re-activate the version that was active before the last promotion; returns its name."""
        with self.lock():
            active = self.active_version()
            history = self._history()
            while history and history[-1] == active:
                history.pop()  # left by a promotion cut short between its two writes
            if not history:
                raise VersionNotFoundError("nothing to roll back to: no earlier promotion recorded")
            previous = history.pop()
            try:
                self.load(previous)  # as for promote: never activate a version that cannot be loaded
            except (VersionNotFoundError, ArtifactError) as exc:
                raise VersionNotFoundError(
                    f"cannot roll back to {previous}, the version active before the last promotion ({exc}); "
                    "promote one explicitly (moa-router models list, moa-router models promote VERSION)"
                ) from exc
            self._write(ACTIVE_FILE, previous + "\n")
            self._write(HISTORY_FILE, "".join(f"{name}\n" for name in history))
            return previous

    def _history(self) -> list[str]:
        try:
            text = (self.models_dir / HISTORY_FILE).read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        return [line.strip() for line in text.splitlines() if line.strip()]

    def _write(self, name: str, text: str) -> None:
        path = self.models_dir / name
        staging = path.with_name(f".{name}.{os.getpid()}.tmp")
        staging.write_text(text, encoding="utf-8")
        os.replace(staging, path)


def load_model(spec: str | None, models_dir: Path | None = None) -> LoadedModel:
    """What a `--model` option names: a version directory's path, a version id, or (None) the active one."""
    if spec is not None and Path(spec).is_dir() and (Path(spec) / artifacts.META_FILE).is_file():
        artifact = artifacts.load(Path(spec))
        return LoadedModel(version=str(artifact.meta.get("version", spec)), scorer=artifact.scorer, meta=artifact.meta)
    return ModelRegistry(models_dir or default_models_dir()).load(spec)
