"""Hot reload: every replica follows the promoted classifier version within seconds, without a restart.

The promoted version is announced in Redis under `<prefix>:classifier:active` (by `moa-router train`
and `moa-router models promote|rollback`); the registry's ACTIVE file in the shared data directory
says the same on disk. Each replica polls both every `POLL_INTERVAL_S` and, when either changes,
loads that version from the registry (in a thread) and swaps it in with one assignment, so requests in
flight finish with the version they started with and none is dropped. While Redis does not answer, the
ACTIVE file is still followed (a promotion that could not be announced says so). A version that cannot be
loaded here is not swapped in: the replica keeps serving, reports it (ActiveClassifier.failed_to_load:
`/readyz`, metrics, log) and tries again every poll, so restored files are picked up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from redis.exceptions import RedisError

from classifier.artifacts import ArtifactError
from classifier.registry import VersionNotFoundError
from router.scoring import ActiveClassifier, LoadStage
from router.tasks import cancel_and_wait

if TYPE_CHECKING:
    from router.state import AppState

logger = logging.getLogger(__name__)

POLL_INTERVAL_S = 1.0


def active_version_key(prefix: str) -> str:
    return f"{prefix}:classifier:active"


class HotReloader:
    """Polls the announced version (Redis key, then the registry's ACTIVE file) and swaps on change."""

    def __init__(
        self, redis: Any, prefix: str, classifier: ActiveClassifier, poll_interval_s: float = POLL_INTERVAL_S
    ) -> None:
        self._redis = redis
        self._key = active_version_key(prefix)
        self._classifier = classifier
        self._poll_interval_s = poll_interval_s
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

    async def check(self, stage: LoadStage = "reload") -> bool:
        """One poll; True when a new version was swapped in."""
        wanted = await self._announced()
        if wanted is None:
            return False
        if wanted == self._classifier.version:
            self._classifier.serves_promoted()
            return False
        try:
            model = await asyncio.to_thread(self._classifier.registry.load, wanted)
        except (VersionNotFoundError, ArtifactError) as exc:
            if self._classifier.failed_to_load(wanted, exc, stage):
                logger.error("cannot load classifier %s: %s (keeping %s)", wanted, exc, self._classifier.version)
            # Forget the announcement so the next poll tries again (the files may still be arriving).
            self._seen_key = self._seen_file = None
            return False
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


def announce_promotion(version: str) -> Announcement:
    """Set the Redis key when a Redis is configured (REDIS_URL or the config file) or the embedded one
    holds data under the data directory; otherwise replicas sharing the data directory follow the ACTIVE
    file."""
    from router.config import ConfigError
    from router.outcomes import LogLocation, connect

    try:
        location = LogLocation.from_environment()
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
