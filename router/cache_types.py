"""What the request path needs of the response cache; router.cache implements it on Redis."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

from router.providers.base import Usage

if TYPE_CHECKING:
    from router.api.schemas import ChatRequest

CacheStatus = Literal["hit", "miss", "bypass"]


@dataclass(frozen=True, slots=True)
class CachedAnswer:
    text: str
    finish_reason: str
    usage: Usage
    cost_usd: float  # what computing it cost upstream: the saving a hit counts
    model: str
    route: str


class CacheSession(Protocol):
    """One request's use of the cache: a hit carries the answer; a miss may hold the single-flight
    lease for its key, and must end with `store` (finished answers only), `abandon` (no answer to
    keep: the requests waiting on this one then compute their own at once) or `hand_off` (its client
    left, nothing failed: one waiting request takes over, the others wait for it). All are safe to call
    more than once and never raise; only the first of them counts."""

    @property
    def status(self) -> CacheStatus: ...

    @property
    def answer(self) -> CachedAnswer | None: ...

    @property
    def detail(self) -> str:
        """Why the status is what it is (e.g. `redis-timeout`, `not-deterministic`), or ""."""
        ...

    async def store(self, answer: CachedAnswer) -> None: ...

    async def abandon(self) -> None: ...

    async def hand_off(self) -> None: ...


class CacheFront(Protocol):
    # `wait_s`: the longest this request may wait on another computing the same answer (what is left of
    # its own deadline); None: the configured single-flight wait alone.
    async def begin(
        self,
        tenant: str,
        chat: ChatRequest,
        route: str,
        models: Sequence[str],
        headers: Mapping[str, str],
        wait_s: float | None = None,
    ) -> CacheSession: ...


class BypassSession:
    status: CacheStatus = "bypass"
    answer: CachedAnswer | None = None

    def __init__(self, detail: str = "") -> None:
        self.detail = detail

    async def store(self, answer: CachedAnswer) -> None:
        return None

    async def abandon(self) -> None:
        return None

    async def hand_off(self) -> None:
        return None


class NoCache:
    """The cache when it is disabled: every request bypasses it."""

    async def begin(
        self,
        tenant: str,
        chat: ChatRequest,
        route: str,
        models: Sequence[str],
        headers: Mapping[str, str],
        wait_s: float | None = None,
    ) -> CacheSession:
        return BypassSession("disabled")
