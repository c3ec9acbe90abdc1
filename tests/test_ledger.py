"""The outcome log: events in the Redis Stream, prompt storage and redaction, batching off the request
path, no loss on a normal shutdown under load, and no loss across a Redis outage."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from redis import Redis

from router.config import settings_from_mapping
from router.events import RequestEvent
from router.ledger import LedgerKeys, OutcomeLog, event_record
from router.mixture import CallRecord
from router.providers.base import CompletionRequest, Usage
from router.redaction import redact_common_secrets
from router.redis_client import make_redis_client
from router.redis_server import EmbeddedRedis, free_port
from tests.conftest import settings_dict
from tests.support.exec_proxy import ExecReplyProxy

Service = Callable[..., str]


def ask(base: str, text: str, route: str = "cheap", timeout: float = 30) -> httpx.Response:
    payload = {"model": "moa-router", "messages": [{"role": "user", "content": text}], "temperature": 0}
    return httpx.post(f"{base}/v1/chat/completions", json=payload, headers={"x-moa-route": route}, timeout=timeout)


def logged(redis_url: str, prefix: str) -> list[dict[str, Any]]:
    client: Any = Redis.from_url(redis_url)
    try:
        return [orjson.loads(fields[b"e"]) for _, fields in client.xrange(LedgerKeys(prefix).events)]
    finally:
        client.close()


def wait_for_events(redis_url: str, prefix: str, count: int, timeout_s: float = 10.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout_s
    while True:
        events = logged(redis_url, prefix)
        if len(events) >= count or time.monotonic() > deadline:
            return events
        time.sleep(0.05)


@pytest.fixture
def prefix() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


def test_every_request_is_logged_with_its_decision_and_calls(
    make_service: Service, redis_url: str, prefix: str
) -> None:
    base = make_service(redis_url=redis_url, redis_prefix=prefix)
    ids = []
    for i, route in enumerate(["cheap", "mixture", "cheap"]):
        response = ask(base, f"question number {i} about tides", route)
        assert response.status_code == 200
        ids.append(response.headers["x-request-id"])
    events = wait_for_events(redis_url, prefix, 3)
    assert [event["request_id"] for event in events] == ids
    mixture = events[1]
    assert mixture["route"] == "mixture" and mixture["reason"] == "override"
    assert {call["role"] for call in mixture["calls"]} == {"proposer", "aggregator"}
    assert mixture["cost_usd"] == pytest.approx(sum(call["cost_usd"] for call in mixture["calls"]))
    assert mixture["cost_usd"] > 0 and mixture["completion_tokens"] > 0
    for event in events:
        assert event["kind"] == "request" and event["tenant"] == "open" and event["status"] == 200
        assert event["classifier_version"] and 0 <= event["difficulty"] <= 1 and 0 <= event["stakes"] <= 1
        assert len(event["prompt_hash"]) == 64 and len(event["prompt_hash_key_id"]) == 8
        assert "messages" not in event and "answer" not in event  # prompts are not stored by default
        assert "upstream" not in event and "answer_text" not in event
    # Keyed (router/prompt_hash.py): equal prompts match, and a guess at a prompt cannot be checked.
    again = ask(base, "question number 0 about tides", "cheap").headers["x-request-id"]
    [repeat] = [event for event in wait_for_events(redis_url, prefix, 4) if event["request_id"] == again]
    assert repeat["prompt_hash"] == events[0]["prompt_hash"] != events[2]["prompt_hash"]
    plain = [{"role": "user", "content": "question number 0 about tides"}]
    assert repeat["prompt_hash"] != hashlib.sha256(orjson.dumps(plain)).hexdigest()


def test_failed_requests_are_logged_too(make_service: Service, redis_url: str, prefix: str) -> None:
    base = make_service(redis_url=redis_url, redis_prefix=prefix)
    bad = httpx.post(f"{base}/v1/chat/completions", json={"model": "m", "messages": []}, timeout=10)
    assert bad.status_code == 400
    [event] = wait_for_events(redis_url, prefix, 1)
    assert event["request_id"] == bad.headers["x-request-id"]
    assert event["status"] == 400 and event["error"] and event["route"] == ""


def test_prompts_are_stored_redacted_only_when_configured(make_service: Service, redis_url: str, prefix: str) -> None:
    base = make_service(redis_url=redis_url, redis_prefix=prefix, ledger={"store_prompts": True})
    response = ask(base, "Write to alice.smith@example.com about the invoice for card 4111 1111 1111 1111")
    assert response.status_code == 200
    [event] = wait_for_events(redis_url, prefix, 1)
    stored = event["messages"][0]["content"]
    assert "alice.smith@example.com" not in stored and "[email]" in stored
    assert "4111" not in stored and "[number]" in stored
    assert "the invoice" in stored
    assert event["answer"] == response.json()["choices"][0]["message"]["content"]


def test_event_record_keeps_transient_fields_out() -> None:
    event = RequestEvent(request_id="r1", tenant="acme", route="cheap", messages=[{"role": "user", "content": "hi"}])
    event.answer = "hello"
    event.upstream = CompletionRequest(event.messages or [])
    event.answer_text = "hello"
    event.calls.append(CallRecord("openai/cheap-1", "cheap", "ok", 0.01, Usage(3, 4), 1e-6))
    hidden = event_record(event, store_prompts=False, redact=redact_common_secrets)
    assert "messages" not in hidden and "answer" not in hidden and "upstream" not in hidden
    assert hidden["prompt_tokens"] == 3 and hidden["completion_tokens"] == 4
    shown = event_record(event, store_prompts=True, redact=redact_common_secrets)
    assert shown["messages"] == [{"role": "user", "content": "hi"}] and shown["answer"] == "hello"
    orjson.dumps(shown)  # serialisable as it is
    assert hidden["calls"][0]["usage_estimated"] is False and hidden["calls"][0]["replaced_by_fallback"] is False


def test_an_estimated_or_replaced_call_says_so_in_the_log() -> None:
    # Tokens the router counted itself (a call cut off, or an upstream that reported none) and a primary
    # that its fallback replaced were indistinguishable from billed calls in the outcome log.
    event = RequestEvent(request_id="r1", tenant="acme", route="cheap")
    replaced = CallRecord("openai/cheap-1", "cheap", "error", 2.0, Usage(30, 0), 1e-6, error="timeout")
    event.calls.append(dataclasses.replace(replaced, usage_estimated=True, replaced_by_fallback=True))
    [call] = event_record(event, store_prompts=False, redact=redact_common_secrets)["calls"]
    assert call["usage_estimated"] is True and call["replaced_by_fallback"] is True


@pytest.fixture
def service_factory(sim_url: str, tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """Like make_service, but hands back the server so the test can stop it itself."""
    from router.app import create_app
    from router.background_server import BackgroundServer

    servers: list[BackgroundServer] = []

    def build(**overrides: Any) -> BackgroundServer:
        settings = settings_from_mapping(settings_dict(sim_url, tmp_path / "data", **overrides))
        server = BackgroundServer(create_app(settings))
        servers.append(server)
        return server

    yield build
    for server in servers:
        server.stop()


def test_no_event_is_lost_when_the_service_stops_under_load(
    service_factory: Callable[..., Any], redis_url: str, prefix: str
) -> None:
    # Big batches and a slow flush: most events are still buffered when the stop comes, so only the
    # shutdown flush can save them.
    server = service_factory(
        redis_url=redis_url, redis_prefix=prefix, ledger={"batch_size": 10_000, "flush_interval_s": 30.0}
    )
    base = server.start()
    answered: list[int] = []
    stop_after = 60

    def client(worker: int) -> None:
        with httpx.Client(timeout=30) as http:
            for i in range(1000):
                try:
                    response = http.post(
                        f"{base}/v1/chat/completions",
                        json={"model": "m", "messages": [{"role": "user", "content": f"load {worker} {i}"}]},
                        headers={"x-moa-route": "cheap"},
                    )
                except httpx.TransportError:
                    return  # the service has stopped
                answered.append(response.status_code)

    with ThreadPoolExecutor(max_workers=8) as pool:
        for worker in range(8):
            pool.submit(client, worker)
        while len(answered) < stop_after:
            time.sleep(0.01)
        server.stop()
    assert len(answered) >= stop_after
    events = logged(redis_url, prefix)
    assert len(events) == len(answered)
    assert len({event["request_id"] for event in events}) == len(events)


def test_redis_outage_loses_nothing(make_service: Service, own_redis: EmbeddedRedis, prefix: str) -> None:
    base = make_service(redis_url=own_redis.url, redis_prefix=prefix, ledger={"flush_interval_s": 0.05})
    assert ask(base, "before the outage").status_code == 200
    assert len(wait_for_events(own_redis.url, prefix, 1)) == 1
    own_redis.stop()
    during = [ask(base, f"during the outage {i}") for i in range(5)]
    assert all(response.status_code == 200 for response in during)  # the log never fails a request
    own_redis.start()
    events = wait_for_events(own_redis.url, prefix, 6, timeout_s=20)
    assert [event["request_id"] for event in events[1:]] == [r.headers["x-request-id"] for r in during]


async def test_a_full_buffer_drops_the_oldest_and_counts_it(tmp_path: Path) -> None:
    from redis.asyncio import Redis as AsyncRedis

    unreachable = AsyncRedis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=0.2)
    settings = settings_from_mapping(
        settings_dict("http://127.0.0.1:9/v1", tmp_path, ledger={"max_buffer": 5, "shutdown_timeout_s": 0.3})
    )
    log = OutcomeLog(unreachable, settings)
    log.start()
    for i in range(8):
        log.record(RequestEvent(request_id=f"r{i}", tenant="t"))
    assert log.counters.dropped == 3 and log.pending == 5
    await asyncio.sleep(0.3)
    await log.close()
    assert log.counters.written == 0 and log.counters.dropped == 8 and log.counters.write_failures >= 1
    await unreachable.aclose()


async def test_a_failed_write_logs_how_many_events_are_buffered(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from redis.asyncio import Redis as AsyncRedis

    unreachable = AsyncRedis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=0.2)
    settings = settings_from_mapping(settings_dict("http://127.0.0.1:9/v1", tmp_path, ledger={"batch_size": 10}))
    log = OutcomeLog(unreachable, settings)
    for i in range(3):
        log.record(RequestEvent(request_id=f"r{i}", tenant="t"))
    with caplog.at_level(logging.WARNING, logger="router.ledger"):
        assert not await log.flush(timeout_s=0.5)
    # The failed batch is counted: it is back in the buffer (it said "0 events buffered").
    assert "3 events buffered" in caplog.text and log.pending == 3
    await unreachable.aclose()


async def test_events_are_written_in_batches(redis_url: str, tmp_path: Path, prefix: str) -> None:
    from redis.asyncio import Redis as AsyncRedis

    client: Any = AsyncRedis.from_url(redis_url)
    settings = settings_from_mapping(
        settings_dict(
            "http://127.0.0.1:9/v1", tmp_path, redis_prefix=prefix, ledger={"batch_size": 4, "flush_interval_s": 30}
        )
    )
    log = OutcomeLog(client, settings)
    log.start()
    for i in range(9):
        # A value JSON cannot hold, in the first event, is logged as text instead of failing the batch.
        log.record(RequestEvent(request_id=f"r{i}", tenant="t", extra={"odd": {1}} if i == 0 else {}))
    deadline = time.monotonic() + 5
    while log.counters.written < 8:
        assert time.monotonic() < deadline, "the two full batches were not written"
        await asyncio.sleep(0.01)
    assert log.counters.written == 8 and log.pending == 1  # two full batches; the ninth waits
    await log.close()
    assert log.counters.written == 9
    assert await client.xlen(LedgerKeys(prefix).events) == 9
    [(_, first)] = await client.xrange(LedgerKeys(prefix).events, count=1)
    assert orjson.loads(first[b"e"])["extra"] == {"odd": "{1}"}
    index = await client.get(LedgerKeys(prefix).request("r3"))
    assert index is not None and index.split(b" ", 1)[0].count(b"-") == 1
    await client.aclose()


async def test_a_batch_sent_again_after_its_reply_was_lost_logs_each_request_once(
    redis_url: str, tmp_path: Path, prefix: str
) -> None:
    from redis.asyncio import Redis as AsyncRedis

    client: Any = AsyncRedis.from_url(redis_url)
    settings = settings_from_mapping(settings_dict("http://127.0.0.1:9/v1", tmp_path, redis_prefix=prefix))
    log = OutcomeLog(client, settings)
    try:
        for i in range(3):
            log.record(RequestEvent(request_id=f"r{i}", tenant="t"))
        log.record_outcome({"kind": "shadow", "request_id": "r0"})
        batch = list(log._pending)
        await log._send(batch)
        # A batch whose reply was lost goes back to the buffer and is sent again, although Redis applied it.
        await log._send(batch)
        assert await client.xlen(LedgerKeys(prefix).events) == 3
        assert await client.xlen(LedgerKeys(prefix).outcomes) == 1
    finally:
        await client.aclose()


async def test_shadow_outcomes_of_a_batch_sent_again_after_its_reply_was_lost_are_logged_once(
    redis_url: str, tmp_path: Path, prefix: str
) -> None:
    from redis.asyncio import Redis as AsyncRedis

    client: Any = AsyncRedis.from_url(redis_url)
    keys = LedgerKeys(prefix)
    settings = settings_from_mapping(settings_dict("http://127.0.0.1:9/v1", tmp_path, redis_prefix=prefix))
    proxy = ExecReplyProxy(redis_url)
    async with proxy.running():
        slow = make_redis_client(proxy.url, 0.3)
        log = OutcomeLog(slow, settings)
        try:
            log.record(RequestEvent(request_id="r0", tenant="t"))
            for request_id, verdict in (("r0", "cheap"), ("r1", "mixture")):
                log.record_outcome({"kind": "shadow", "request_id": request_id, "verdict": verdict})
            proxy.hold_reply_to_next_exec(0.6)  # Redis applies the batch; its reply comes after the client gave up
            assert not await log._write_batch()
            assert await client.xlen(keys.outcomes) == 2 and log.pending == 3  # applied, and kept to send again
            assert await log.flush(timeout_s=5)
        finally:
            await slow.aclose()
    try:
        assert await client.xlen(keys.events) == 1
        outcomes = [orjson.loads(fields[b"o"]) for _, fields in await client.xrange(keys.outcomes)]
        assert [(outcome["request_id"], outcome["verdict"]) for outcome in outcomes] == [
            ("r0", "cheap"),
            ("r1", "mixture"),
        ]
        assert len({outcome["outcome_id"] for outcome in outcomes}) == 2  # each its own id
        marker = await client.get(keys.outcome(outcomes[0]["outcome_id"]))
        assert 0 < await client.ttl(keys.outcome(outcomes[0]["outcome_id"])) <= settings.ledger.feedback_window_s
        assert marker is not None and marker.count(b"-") == 1  # the outcome's stream id
    finally:
        await client.aclose()


async def test_a_large_batch_indexes_every_event_and_lets_the_loop_run(
    redis_url: str, tmp_path: Path, prefix: str
) -> None:
    from redis.asyncio import Redis as AsyncRedis

    client: Any = AsyncRedis.from_url(redis_url)
    settings = settings_from_mapping(
        settings_dict(
            "http://127.0.0.1:9/v1", tmp_path, redis_prefix=prefix, ledger={"batch_size": 500, "store_prompts": True}
        )
    )
    turns = 0
    turn_of_each_record: list[int] = []

    def redact(text: str) -> str:  # called once per stored prompt, as each record is built
        turn_of_each_record.append(turns)
        return text

    log = OutcomeLog(client, settings, redact=redact)
    ids = [f"big{i}" for i in range(300)]
    for i, request_id in enumerate(ids):
        messages = [{"role": "user", "content": f"ask {i}"}]
        log.record(RequestEvent(request_id=request_id, tenant="t", route="cheap", messages=messages))
        if i % 100 == 0:
            log.record_outcome({"request_id": request_id, "label": 1.0})
    writing = True

    async def other_request() -> None:
        nonlocal turns
        while writing:
            turns += 1
            await asyncio.sleep(0)

    other = asyncio.create_task(other_request())
    await asyncio.sleep(0)
    assert await log.flush()  # one batch of 303 items, written by one transaction
    writing = False
    await other
    # Other tasks ran between slices of the batch, not only after it was built whole.
    assert len(turn_of_each_record) == 300 and len(set(turn_of_each_record)) >= 300 // 40
    keys = LedgerKeys(prefix)
    entries = await client.xrange(keys.events)
    assert [orjson.loads(fields[b"e"])["request_id"] for _, fields in entries] == ids
    for (stream_id, _), request_id in zip(entries, ids, strict=True):
        index = await client.get(keys.request(request_id))
        assert index is not None and index.split(b" ", 1)[0] == stream_id
        assert orjson.loads(index.split(b" ", 1)[1])["route"] == "cheap"
    outcomes = await client.xrange(keys.outcomes)
    assert [orjson.loads(fields[b"o"])["request_id"] for _, fields in outcomes] == ["big0", "big100", "big200"]
    await client.aclose()


def _refuses_codes(text: str) -> str:
    """An operator's redaction hook with a bug: it raises on some texts."""
    if "CODE-" in text:
        raise RuntimeError(f"cannot redact {text}")
    return text


async def test_an_event_that_cannot_be_made_into_a_record_is_dropped_alone(
    redis_url: str, tmp_path: Path, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    # A raising redaction hook (or a value orjson refuses) ended the writer task: every later event stayed
    # in the buffer until it overflowed, and the batch with the bad record was lost whole.
    from redis.asyncio import Redis as AsyncRedis

    client: Any = AsyncRedis.from_url(redis_url)
    data = settings_dict("http://127.0.0.1:9/v1", tmp_path, redis_prefix=prefix, ledger={"store_prompts": True})
    log = OutcomeLog(client, settings_from_mapping(data), redact=_refuses_codes)
    log.start()
    for i, text in enumerate(["hello", "my CODE-1234", "bye"]):
        log.record(RequestEvent(request_id=f"r{i}", tenant="t", messages=[{"role": "user", "content": text}]))
    log.record(RequestEvent(request_id="huge", tenant="t", extra={"tokens": 2**70}))
    with caplog.at_level(logging.ERROR, logger="router.ledger"):
        assert await log.flush(timeout_s=5)
    assert log.counters.written == 2 and log.counters.dropped == 2
    assert "request r1 could not be made into a record (RuntimeError)" in caplog.text
    assert "CODE-1234" not in caplog.text  # the hook's message quotes the prompt
    log.record(RequestEvent(request_id="later", tenant="t"))  # the writer still runs
    deadline = time.monotonic() + 5
    while log.counters.written < 3:
        assert time.monotonic() < deadline, "the writer stopped"
        await asyncio.sleep(0.01)
    await log.close()
    written = [orjson.loads(fields[b"e"])["request_id"] for _, fields in await client.xrange(LedgerKeys(prefix).events)]
    assert written == ["r0", "r2", "later"]
    await client.aclose()


async def test_an_event_that_cannot_be_made_into_a_record_is_counted_once_while_redis_is_down(
    tmp_path: Path,
) -> None:
    # The batch of a failed write goes back to the buffer: a record that could not be made was counted as
    # dropped (and logged) again at every retry, and once more at shutdown, so `dropped` (and the
    # moa_events_dropped metric) grew through a Redis outage past the events ever recorded.
    from redis.asyncio import Redis as AsyncRedis

    unreachable = AsyncRedis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=0.2)
    data = settings_dict("http://127.0.0.1:9/v1", tmp_path, ledger={"store_prompts": True, "shutdown_timeout_s": 0.3})
    log = OutcomeLog(unreachable, settings_from_mapping(data), redact=_refuses_codes)
    for i, text in enumerate(["hello", "my CODE-1234"]):
        log.record(RequestEvent(request_id=f"r{i}", tenant="t", messages=[{"role": "user", "content": text}]))
    for _ in range(3):  # each flush tries the write at least once, and it fails
        assert not await log.flush(timeout_s=0.3)
    assert log.counters.write_failures >= 3
    assert log.counters.dropped == 1 and log.pending == 1
    await log.close()  # Redis still down: the good event is lost, once
    assert log.counters.dropped == 2 and log.counters.written == 0
    assert log.counters.recorded == log.counters.written + log.counters.dropped
    await unreachable.aclose()
