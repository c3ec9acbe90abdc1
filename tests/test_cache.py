"""ResponseCache against a real Redis: hits and misses, controls, single flight, leases, degrading."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from router import cache as cache_module
from router import single_flight
from router.api.errors import APIError
from router.api.schemas import ChatRequest
from router.cache import ResponseCache, decode_answer, encode_answer, request_controls
from router.cache_types import CachedAnswer, CacheSession
from router.config import Settings, settings_from_mapping
from router.providers.base import Usage
from router.redis_client import make_redis_client
from router.redis_server import EmbeddedRedis
from tests.conftest import settings_dict

MODELS = ["openai/cheap-1"]
ANSWER = CachedAnswer("A balanced search tree.", "stop", Usage(12, 5), 0.00042, "openai/cheap-1", "cheap")


def make_settings(tmp_path: Path, **overrides: Any) -> Settings:
    return settings_from_mapping(settings_dict("http://127.0.0.1:9/v1", tmp_path, **overrides))


def ask(text: str = "What is a B-tree?", **body: Any) -> ChatRequest:
    return ChatRequest.model_validate(
        {"model": "m", "messages": [{"role": "user", "content": text}], "temperature": 0, **body}
    )


@asynccontextmanager
async def response_cache(url: str, settings: Settings, timeout_s: float = 2.0) -> AsyncIterator[ResponseCache]:
    client = make_redis_client(url, timeout_s)
    cache = ResponseCache(client, settings)
    try:
        yield cache
    finally:
        await cache.close()
        await client.aclose()


def is_flight_key(key: bytes) -> bool:
    """A single-flight lease or gave-up marker, not an entry."""
    return key.endswith(b":lease") or b":gave-up:" in key


async def entry_keys(cache: ResponseCache) -> list[bytes]:
    pattern = f"{cache._prefix}:cache:*"
    return [key async for key in cache._redis.scan_iter(match=pattern) if not is_flight_key(key)]


async def begin(cache: ResponseCache, chat: ChatRequest, tenant: str = "t1", **headers: str) -> CacheSession:
    return await cache.begin(tenant, chat, "cheap", MODELS, headers)


def test_controls_from_body_and_headers() -> None:
    assert request_controls(ask(), {}).model_dump() == {
        "no_cache": False,
        "no_store": False,
        "ttl_s": None,
        "namespace": None,
    }
    body = ask(cache={"no_store": True, "ttl_s": 30, "namespace": "a"})
    assert request_controls(body, {}) == body.cache
    merged = request_controls(body, {"x-moa-cache-control": "No-Cache, ttl=60", "x-moa-cache-namespace": "b"})
    assert (merged.no_cache, merged.no_store, merged.ttl_s, merged.namespace) == (True, True, 60, "b")
    # Leading zeros are the number's (int() alone refused 5000 digits: a 500).
    assert request_controls(ask(), {"x-moa-cache-control": "ttl=" + "0" * 5000 + "60"}).ttl_s == 60


@pytest.mark.parametrize(
    "headers",
    [
        {"x-moa-cache-control": "max-age=5"},
        {"x-moa-cache-control": "ttl=abc"},
        {"x-moa-cache-control": "ttl=0"},
        # More digits than int() converts (4300): a 500 before, over the limit like any other too long ttl.
        {"x-moa-cache-control": "ttl=" + "9" * 5000},
        {"x-moa-cache-namespace": "has space"},
        {"x-moa-cache-namespace": "x" * 65},
    ],
)
def test_bad_cache_headers_are_client_errors(headers: dict[str, str]) -> None:
    with pytest.raises(APIError) as caught:
        request_controls(ask(), headers)
    assert caught.value.status == 400
    assert caught.value.code == "invalid_cache_control"


def test_entries_round_trip_and_unreadable_ones_are_ignored() -> None:
    assert decode_answer(encode_answer(ANSWER)) == ANSWER
    assert decode_answer(b"not json") is None
    assert decode_answer(b'[99, "x"]') is None
    assert decode_answer(b"{}") is None


async def test_miss_then_store_then_hit_with_ttl(redis_url: str, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, cache={"ttl_s": 100})
    async with response_cache(redis_url, settings) as cache:
        first = await begin(cache, ask())
        assert (first.status, first.answer) == ("miss", None)
        await first.store(ANSWER)
        second = await begin(cache, ask())
        assert (second.status, second.answer) == ("hit", ANSWER)
        keys = [key async for key in cache._redis.scan_iter(match=f"{settings.redis_prefix}:cache:*")]
        assert len(keys) == 1 and keys == await entry_keys(cache)  # the entry; the lease is gone, no marker
        assert 95_000 < await cache._redis.pttl(keys[0]) <= 100_000
        other_tenant = await begin(cache, ask(), tenant="t2")
        assert other_tenant.status == "miss"
        await other_tenant.abandon()
        assert cache.counts["hit"] == 1 and cache.counts["miss"] == 2
        assert await entry_keys(cache) == keys  # the other tenant's lease left a marker, not an entry


async def test_ttl_override_and_namespace(redis_url: str, tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    async with response_cache(redis_url, settings) as cache:
        session = await begin(cache, ask(), **{"x-moa-cache-control": "ttl=7", "x-moa-cache-namespace": "exp1"})
        await session.store(ANSWER)
        assert (await begin(cache, ask(), **{"x-moa-cache-namespace": "exp1"})).status == "hit"
        elsewhere = await begin(cache, ask())
        assert elsewhere.status == "miss"
        await elsewhere.abandon()
        keys = await entry_keys(cache)
        assert len(keys) == 1 and 0 < await cache._redis.pttl(keys[0]) <= 7000


async def test_only_deterministic_requests_by_default(redis_url: str, tmp_path: Path) -> None:
    async with response_cache(redis_url, make_settings(tmp_path)) as cache:
        warm = await begin(cache, ask(temperature=0.7))
        assert (warm.status, warm.detail) == ("bypass", "not-deterministic")
        seeded = await begin(cache, ask(temperature=0.7, seed=3))
        assert seeded.status == "miss"
        await seeded.abandon()
    async with response_cache(redis_url, make_settings(tmp_path, cache={"deterministic_only": False})) as cache:
        anything = await begin(cache, ask(temperature=0.7))
        assert anything.status == "miss"
        await anything.abandon()


async def test_no_store_and_no_cache(redis_url: str, tmp_path: Path) -> None:
    async with response_cache(redis_url, make_settings(tmp_path)) as cache:
        no_store = await begin(cache, ask(cache={"no_store": True}))
        assert (no_store.status, no_store.detail) == ("miss", "no-store")
        holder = await begin(cache, ask())  # no-store took no lease, so this one gets it at once
        assert (holder.status, holder.detail) == ("miss", "")
        await no_store.store(ANSWER)
        assert await entry_keys(cache) == []
        await holder.abandon()
        assert (await begin(cache, ask(cache={"no_store": True}))).status == "miss"  # nothing was stored

        stored = await begin(cache, ask())
        await stored.store(ANSWER)
        fresh = await begin(cache, ask(), **{"x-moa-cache-control": "no-cache"})
        assert (fresh.status, fresh.detail) == ("miss", "no-cache")  # skips the lookup...
        newer = CachedAnswer("Newer.", "stop", Usage(1, 1), 0.1, "m", "cheap")
        await fresh.store(newer)  # ...but stores its answer
        assert (await begin(cache, ask())).answer == newer
        both = await begin(cache, ask(), **{"x-moa-cache-control": "no-cache, no-store"})
        assert both.status == "bypass"


async def test_failed_or_cut_off_answers_are_not_stored(redis_url: str, tmp_path: Path) -> None:
    async with response_cache(redis_url, make_settings(tmp_path)) as cache:
        session = await begin(cache, ask())
        await session.store(CachedAnswer("half an ans", "error", Usage(1, 1), 0.1, "m", "cheap"))
        again = await begin(cache, ask())
        assert again.status == "miss" and again.detail == ""  # not stored, and the lease was freed
        assert await entry_keys(cache) == []
        await again.abandon()


async def test_single_flight_waiters_get_the_holders_answer(redis_url: str, tmp_path: Path) -> None:
    async with response_cache(redis_url, make_settings(tmp_path)) as cache:
        holder = await begin(cache, ask())
        waiters = [asyncio.create_task(begin(cache, ask())) for _ in range(5)]
        await asyncio.sleep(0.1)
        assert not any(waiter.done() for waiter in waiters)
        await holder.store(ANSWER)
        sessions = await asyncio.gather(*waiters)
        assert [(s.status, s.answer) for s in sessions] == [("hit", ANSWER)] * 5


async def waiting(cache: ResponseCache, count: int, tenant: str = "t1") -> list[asyncio.Task[CacheSession]]:
    """`count` requests for the same answer, left waiting on its lease."""
    waiters = [asyncio.create_task(begin(cache, ask(), tenant)) for _ in range(count)]
    await asyncio.sleep(0.1)
    assert not any(waiter.done() for waiter in waiters)
    return waiters


@pytest.mark.parametrize("give_up", ["failed", "cut-off"])
async def test_when_the_holder_gives_up_its_waiters_all_compute_at_once(
    redis_url: str, tmp_path: Path, give_up: str
) -> None:
    settings = make_settings(tmp_path)
    # Waiters in the holder's process wake on its end; those in another poll Redis for the marker.
    async with response_cache(redis_url, settings) as cache, response_cache(redis_url, settings) as replica:
        holder = await begin(cache, ask())
        waiters = await waiting(cache, 3) + await waiting(replica, 3)
        if give_up == "failed":
            await holder.abandon()
        else:
            await holder.store(CachedAnswer("half an ans", "error", Usage(1, 1), 0.1, "m", "cheap"))
        sessions = await asyncio.wait_for(asyncio.gather(*waiters), 1.0)  # together, none behind another
        assert [(s.status, s.detail, s.answer) for s in sessions] == [("miss", "leader-gave-up", None)] * 6
        assert await entry_keys(cache) == []
        # None of them holds the lease, and each may store its own answer.
        newcomer = await begin(cache, ask())
        assert (newcomer.status, newcomer.detail) == ("miss", "")
        await sessions[0].store(ANSWER)
        assert (await begin(replica, ask())).answer == ANSWER
        await newcomer.abandon()


async def test_a_holder_whose_client_left_hands_the_lease_to_one_waiter(redis_url: str, tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    async with response_cache(redis_url, settings) as cache, response_cache(redis_url, settings) as replica:
        holder = await begin(cache, ask())
        waiters = await waiting(cache, 2) + await waiting(replica, 2)
        await holder.hand_off()  # nothing failed: one run gives the answer all four want
        await asyncio.sleep(0.3)
        successors = [waiter for waiter in waiters if waiter.done()]
        assert len(successors) == 1  # the others wait for it, not each computing its own
        successor = successors[0].result()
        assert (successor.status, successor.detail) == ("miss", "")
        await successor.store(ANSWER)
        rest = await asyncio.wait_for(asyncio.gather(*(w for w in waiters if w is not successors[0])), 1.0)
        assert [(s.status, s.answer) for s in rest] == [("hit", ANSWER)] * 3
        markers = [key async for key in cache._redis.scan_iter(match=f"{cache._prefix}:cache:*:gave-up:*")]
        assert markers == []


async def test_a_gave_up_marker_releases_only_its_own_waiters_and_never_answers(redis_url: str, tmp_path: Path) -> None:
    async with response_cache(redis_url, make_settings(tmp_path)) as cache:
        holder, other_tenants = await begin(cache, ask()), await begin(cache, ask(), tenant="t2")
        released, other_tenants_waiters = await waiting(cache, 2), await waiting(cache, 2, tenant="t2")
        await holder.abandon()
        assert [s.detail for s in await asyncio.gather(*released)] == ["leader-gave-up"] * 2
        markers = [key async for key in cache._redis.scan_iter(match=f"{cache._prefix}:cache:*:gave-up:*")]
        assert len(markers) == 1 and await cache._redis.get(markers[0]) == b"1"  # a marker holds no answer
        assert 0 < await cache._redis.pttl(markers[0]) <= single_flight.GAVE_UP_MS

        # A request arriving after the marker was left leads afresh, and its own waiters wait for it.
        successor = await begin(cache, ask())
        assert (successor.status, successor.detail) == ("miss", "")
        its_waiters = await waiting(cache, 2)
        await successor.store(ANSWER)
        assert [(s.status, s.answer) for s in await asyncio.gather(*its_waiters)] == [("hit", ANSWER)] * 2

        # Another tenant's requests for the same prompt were never released: they wait for their own holder.
        assert not any(waiter.done() for waiter in other_tenants_waiters)
        theirs = CachedAnswer("Tenant two's answer.", "stop", Usage(1, 1), 0.1, "m", "cheap")
        await other_tenants.store(theirs)
        assert [s.answer for s in await asyncio.gather(*other_tenants_waiters)] == [theirs] * 2


async def test_a_lease_lapses_when_its_holder_stops_renewing(
    redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(single_flight, "LEASE_MS", 300)
    settings = make_settings(tmp_path)
    async with response_cache(redis_url, settings) as alive, response_cache(redis_url, settings) as dying:
        holder = await begin(alive, ask("kept"))
        waiter = asyncio.create_task(begin(alive, ask("kept")))
        await asyncio.sleep(1.0)  # several lease lengths: the holder's renewals keep it
        assert not waiter.done()
        await holder.store(ANSWER)
        assert (await waiter).status == "hit"

        await begin(dying, ask("lost"))
        await dying.close()  # as if its process died: no renewal, no release
        successor = await begin(alive, ask("lost"))
        assert (successor.status, successor.detail) == ("miss", "")
        await successor.abandon()


async def test_waiting_is_bounded(redis_url: str, tmp_path: Path) -> None:
    # A generous Redis timeout: on a loaded machine the default 50 ms made the holder a bypass at times,
    # and then the other request simply took the lease.
    settings = make_settings(tmp_path, cache={"single_flight_wait_s": 0.2, "timeout_ms": 2000})
    async with response_cache(redis_url, settings) as cache:
        holder = await begin(cache, ask())
        assert (holder.status, holder.detail) == ("miss", "")
        impatient = await begin(cache, ask())
        assert (impatient.status, impatient.detail) == ("miss", "wait-expired")
        await impatient.store(ANSWER)
        assert (await begin(cache, ask())).status == "hit"
        await holder.abandon()


async def test_redis_down_is_a_bypass_and_the_cache_recovers(
    own_redis: EmbeddedRedis, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(cache_module, "DOWN_RETRY_S", 0.0)
    async with response_cache(own_redis.url, make_settings(tmp_path), timeout_s=0.5) as cache:
        session = await begin(cache, ask())
        await session.store(ANSWER)
        own_redis.stop()
        with caplog.at_level(logging.WARNING, logger="router.cache"):
            sessions = [await begin(cache, ask()) for _ in range(20)]
        assert {(s.status, s.detail) for s in sessions} == {("bypass", "redis-unavailable")}
        assert len([r for r in caplog.records if r.name == "router.cache"]) == 1  # rate-limited
        assert cache.counts["redis-unavailable"] == 20
        own_redis.start()  # the append-only file brings the entry back
        assert (await begin(cache, ask())).answer == ANSWER


async def test_slow_redis_is_a_bypass_within_the_timeout(
    own_redis: EmbeddedRedis, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cache_module, "DOWN_RETRY_S", 0.0)
    settings = make_settings(tmp_path, cache={"timeout_ms": 30})
    async with response_cache(own_redis.url, settings, timeout_s=5.0) as cache:
        session = await begin(cache, ask())
        await session.store(ANSWER)
        pauser = make_redis_client(own_redis.url, 5.0)
        await pauser.execute_command("CLIENT", "PAUSE", "500", "ALL")  # every client's commands now wait
        slow = await asyncio.wait_for(begin(cache, ask()), 1.0)
        assert (slow.status, slow.detail) == ("bypass", "redis-timeout")
        await pauser.execute_command("CLIENT", "UNPAUSE")
        await pauser.aclose()
        assert (await begin(cache, ask())).answer == ANSWER


async def test_one_timeout_does_not_pause_the_cache_but_a_run_of_them_does(
    own_redis: EmbeddedRedis, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cache_module, "DOWN_RETRY_S", 60.0)
    # 250 ms, well under the 1.5 s pauses (three timed-out lookups fit in one); the answer is stored first with a
    # lenient timeout: on a loaded CI machine the tight one let the store itself time out (seen at 100 ms).
    settings = make_settings(tmp_path, cache={"timeout_ms": 250})
    lenient = settings.model_copy(update={"cache": settings.cache.model_copy(update={"timeout_ms": 5000.0})})
    async with response_cache(own_redis.url, lenient, timeout_s=5.0) as seeding:
        await (await begin(seeding, ask())).store(ANSWER)
        assert seeding.counts["redis-timeout"] == 0, "the answer was not stored: nothing below can hit"
    pauser = make_redis_client(own_redis.url, 5.0)
    async with response_cache(own_redis.url, settings, timeout_s=5.0) as cache:
        await pauser.execute_command("CLIENT", "PAUSE", "1500", "ALL")
        assert (await begin(cache, ask())).detail == "redis-timeout"
        await pauser.execute_command("CLIENT", "UNPAUSE")
        after = await begin(cache, ask())
        assert after.status == "hit", (after.status, after.detail, dict(cache.counts))  # Redis is still used

        await pauser.execute_command("CLIENT", "PAUSE", "1500", "ALL")
        details = [(await begin(cache, ask())).detail for _ in range(cache_module.FAILURES_BEFORE_PAUSE)]
        assert details == ["redis-timeout"] * cache_module.FAILURES_BEFORE_PAUSE
        await pauser.execute_command("CLIENT", "UNPAUSE")
        paused = await begin(cache, ask())
        assert (paused.status, paused.detail) == ("bypass", "redis-timeout")  # skipped without trying
    await pauser.aclose()
