"""Hot reload: every replica follows the promoted classifier version within seconds, without a restart.

The promoted version is announced in Redis under `<prefix>:classifier:active` (by `moa-router train`
and `moa-router models promote|rollback`); the registry's ACTIVE file in the shared data directory
says the same on disk. Each replica polls both every `POLL_INTERVAL_S` and, when either changes,
loads that version from the registry (in a thread) and swaps it in with one assignment, so requests in
flight finish with the version they started with and none is dropped. While Redis does not answer, the
ACTIVE file is still followed (a promotion that could not be announced says so). A version that cannot be
loaded here is not swapped in: the replica keeps serving, reports it (ActiveClassifier.failed_to_load:
`/readyz`, metrics, log) and tries it again as soon as its files change (restored files are picked up at the
next poll), else after a wait that doubles up to RETRY_MAX_S: not every second on every worker. A newly
announced version is tried at the first poll that sees it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from redis.exceptions import RedisError

from classifier.artifacts import ArtifactError
from classifier.registry import ModelRegistry, VersionNotFoundError
from router.scoring import ActiveClassifier, LoadStage
from router.tasks import cancel_and_wait

if TYPE_CHECKING:
    from router.state import AppState

logger = logging.getLogger(__name__)

POLL_INTERVAL_S = 1.0
# A version that failed to load and whose files did not change is tried again after RETRY_FIRST_S, then
# after twice as long each time, up to RETRY_MAX_S.
RETRY_FIRST_S = 2.0
RETRY_MAX_S = 60.0

FilesState = tuple[tuple[str, int, int, int, int], ...]


def active_version_key(prefix: str) -> str:
    return f"{prefix}:classifier:active"


def files_state(registry: ModelRegistry, version: str) -> FilesState:
    """What a version's directory holds, by name, size, mode and times: any copy, restore, chmod or removal
    of its files changes it. Empty when there is no such directory."""
    directory = registry.models_dir / version
    if directory.parent != registry.models_dir:  # not a version name: nothing on disk can restore it
        return ()
    try:
        entries = [directory, *directory.iterdir()]
        stats = [(entry.name, os.stat(entry)) for entry in entries]
    except OSError:  # missing, or gone while listed
        return ()
    return tuple(sorted((name, st.st_size, st.st_mode, st.st_mtime_ns, st.st_ctime_ns) for name, st in stats))


@dataclass(frozen=True, slots=True)
class _FailedVersion:
    """A promoted version that could not be loaded here, and when to try it again."""

    version: str
    files: FilesState
    retry_at: float
    wait_s: float

    @classmethod
    def after(cls, previous: _FailedVersion | None, version: str, files: FilesState, now: float) -> _FailedVersion:
        wait_s = RETRY_FIRST_S
        if previous is not None and previous.version == version:
            wait_s = min(previous.wait_s * 2, RETRY_MAX_S)
        return cls(version, files, now + wait_s, wait_s)


class HotReloader:
    """Polls the announced version (Redis key, then the registry's ACTIVE file) and swaps on change."""

    def __init__(
        self,
        redis: Any,
        prefix: str,
        classifier: ActiveClassifier,
        poll_interval_s: float = POLL_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._redis = redis
        self._key = active_version_key(prefix)
        self._classifier = classifier
        self._poll_interval_s = poll_interval_s
        self._clock = clock
        self._failed: _FailedVersion | None = None
        self._seen_key: str | None = None
        # A replica that could not load the active version at startup retries it (its files may be restored).
        self._seen_file: str | None = None if classifier.failure else classifier.registry.active_version()
        self._redis_down = False
        self._task: asyncio.Task[None] | None = None
        self.reloads = 0

    async def _announced(self) -> str | None:
        """The version to run when an announcement changed since the last poll, else None."""
        wanted: str | None = None
        on_file = await asyncio.to_thread(self._classifier.registry.active_version)
        if on_file != self._seen_file:
            self._seen_file = wanted = on_file
        if self._redis is not None:
            try:
                raw = await self._redis.get(self._key)
            except (RedisError, OSError) as exc:
                # The file's change must not be lost with the poll: it was marked seen above.
                if not self._redis_down:
                    logger.warning("hot reload: Redis did not answer (%s); following the ACTIVE file meanwhile", exc)
                self._redis_down = True
                return wanted
            self._redis_down = False
            in_redis = None if raw is None else (raw.decode() if isinstance(raw, bytes) else str(raw))
            if in_redis is not None and in_redis != self._seen_key:
                self._seen_key = wanted = in_redis  # the cluster-wide announcement wins over the file
        return wanted

    async def _retry_due(self) -> str | None:
        """The version that failed to load, when its files changed since or its wait is over."""
        failed = self._failed
        if failed is None:
            return None
        if self._clock() >= failed.retry_at:
            return failed.version
        files = await asyncio.to_thread(files_state, self._classifier.registry, failed.version)
        return failed.version if files != failed.files else None

    async def check(self, stage: LoadStage = "reload") -> bool:
        """One poll; True when a new version was swapped in."""
        wanted = await self._announced() or await self._retry_due()
        if wanted is None:
            return False
        if wanted == self._classifier.version:
            self._failed = None
            self._classifier.serves_promoted()
            return False
        registry = self._classifier.registry
        # Read before the load: a change made while it reads is a change to try again for.
        files = await asyncio.to_thread(files_state, registry, wanted)
        try:
            model = await asyncio.to_thread(registry.load, wanted)
        except (VersionNotFoundError, ArtifactError) as exc:
            if self._classifier.failed_to_load(wanted, exc, stage):
                logger.error("cannot load classifier %s: %s (keeping %s)", wanted, exc, self._classifier.version)
            self._failed = _FailedVersion.after(self._failed, wanted, files, self._clock())
            return False
        self._failed = None
        previous = self._classifier.version
        self._classifier.swap(model)
        self.reloads += 1
        logger.info("classifier hot-reloaded: %s -> %s", previous, model.version)
        return True

    async def run(self) -> None:
        while True:
            try:
                await self.check()
            except (RedisError, OSError) as exc:
                logger.debug("hot reload poll failed: %s", exc)
            await asyncio.sleep(self._poll_interval_s)

    def start(self) -> None:
        self._task = asyncio.create_task(self.run(), name="classifier-hot-reload")

    async def close(self) -> None:
        if self._task is not None:
            await cancel_and_wait(self._task)
            self._task = None


async def start_hot_reload(state: AppState, stack: AsyncExitStack) -> None:
    """Startup step: follow promotions; the first check runs now, so a replica that starts after a
    promotion announced in Redis serves that version from its first request."""
    reloader = HotReloader(state.redis, state.settings.redis_prefix, state.classifier)
    with contextlib.suppress(RedisError, OSError):
        await reloader.check("startup")
    reloader.start()
    stack.push_async_callback(reloader.close)
    state.components["hot_reload"] = reloader


def announce_active_version(client: Any, prefix: str, version: str) -> None:
    """Tell every replica (sync client, for the command line) which version is now active."""
    client.set(active_version_key(prefix), version)


@dataclass(frozen=True, slots=True)
class Announcement:
    """What a command line's announcement did: `ok` is False when Redis was not told, and replicas
    started later would load the previously announced version."""

    ok: bool
    message: str


def announce_promotion(version: str, config: str | None = None) -> Announcement:
    """Set the Redis key when a Redis is configured (REDIS_URL or the config file: `config`, else
    MOA_ROUTER_CONFIG, the one whose data directory holds the registry) or the embedded one holds data under
    the data directory; otherwise replicas sharing the data directory follow the ACTIVE file."""
    from router.config import ConfigError
    from router.outcomes import LogLocation, connect

    try:
        location = LogLocation.from_environment(config)
    except ConfigError as exc:
        return Announcement(False, f"could not announce {version}: {exc}")
    if location.redis_url is None and not (location.data_dir / "redis").is_dir():
        return Announcement(
            True, "no Redis: running replicas that share this data directory pick it up from its ACTIVE file"
        )
    # A stopped embedded Redis still holds the last announcement, which a restarted service would load:
    # connect() starts it to update the key (or uses the one a running service has).
    try:
        with connect(location) as client:
            announce_active_version(client, location.prefix, version)
    except (RedisError, OSError, RuntimeError) as exc:  # RuntimeError: the embedded Redis did not start
        return Announcement(
            False,
            f"could not announce {version} in Redis ({exc}): running replicas that share this data directory "
            f"follow its ACTIVE file, but {active_version_key(location.prefix)} still names the version "
            f"before, which replicas started later load; run `moa-router models promote {version}` again "
            "once Redis answers",
        )
    return Announcement(True, f"announced {version} to running replicas ({active_version_key(location.prefix)})")
