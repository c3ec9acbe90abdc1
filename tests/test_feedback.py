"""POST /v1/feedback over real HTTP: labels per route, validation errors in OpenAI's shape, idempotency,
tenant scoping, and a rating that arrives before the request's event was written."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import orjson
import pytest
from redis import Redis

from router.auth import hash_key
from router.ledger import LedgerKeys
from router.simulator.runner import SimulatorServer
from tests.conftest import entry
from tests.test_chat_api import patch_model

Service = Callable[..., str]


def ask(base: str, route: str = "cheap", key: str | None = None, text: str = "How do tides work?") -> httpx.Response:
    headers = {"x-moa-route": route}
    if key:
        headers["authorization"] = f"Bearer {key}"
    payload = {"model": "moa-router", "messages": [{"role": "user", "content": text}]}
    return httpx.post(f"{base}/v1/chat/completions", json=payload, headers=headers, timeout=30)


def rate(base: str, body: Any, key: str | None = None) -> httpx.Response:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    return httpx.post(f"{base}/v1/feedback", content=content, headers=headers, timeout=10)


def outcomes(redis_url: str, prefix: str) -> list[dict[str, Any]]:
    client: Any = Redis.from_url(redis_url)
    try:
        return [orjson.loads(fields[b"o"]) for _, fields in client.xrange(LedgerKeys(prefix).outcomes)]
    finally:
        client.close()


@pytest.fixture
def prefix() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
def service(make_service: Service, redis_url: str, prefix: str) -> str:
    # A slow flush: ratings arrive while their request's event is still buffered in the service.
    return make_service(
        redis_url=redis_url, redis_prefix=prefix, ledger={"store_prompts": True, "flush_interval_s": 30.0}
    )


def test_ratings_on_cheap_requests_label_difficulty(service: str, redis_url: str, prefix: str) -> None:
    bad_id = ask(service, text="Prove the Collatz conjecture").headers["x-request-id"]
    good_id = ask(service, text="Say hello").headers["x-request-id"]
    bad = rate(service, {"request_id": bad_id, "rating": "bad", "comment": "wrong, mail me at a@b.io"})
    good = rate(service, {"request_id": good_id, "rating": "good"})
    assert bad.status_code == 200 and good.status_code == 200
    assert bad.json() == {
        "object": "feedback",
        "request_id": bad_id,
        "rating": "bad",
        "status": "recorded",
        "label": {"difficulty": 1, "factor": 1.0},
    }
    assert good.json()["label"] == {"difficulty": 0, "factor": 1.0}
    logged = {outcome["request_id"]: outcome for outcome in outcomes(redis_url, prefix)}
    assert set(logged) == {bad_id, good_id}
    first = logged[bad_id]
    assert first["kind"] == "feedback" and first["route"] == "cheap" and first["tenant"] == "open"
    assert first["messages"] == [{"role": "user", "content": "Prove the Collatz conjecture"}]
    assert first["comment"] == "wrong, mail me at [email]"
    assert first["classifier_version"] and 0 <= first["difficulty"] <= 1


def test_a_rating_of_a_fallback_models_answer_labels_nothing(
    make_service: Service, sim: SimulatorServer, sim_url: str, redis_url: str, prefix: str
) -> None:
    patch_model(sim, "cheap-1", error_rate=1.0)  # the cheap model fails; its fallback answers
    base = make_service(
        redis_url=redis_url,
        redis_prefix=prefix,
        resilience={"max_attempts": 1},
        cheap=entry(sim_url, "cheap-1", fallback=entry(sim_url, "judge-1")),
        ledger={"store_prompts": True},
    )
    answer = ask(base, text="Prove the Collatz conjecture")
    assert answer.status_code == 200 and answer.headers["x-moa-route"] == "cheap"
    assert answer.headers["x-moa-fallback"] == "entry"
    rated = rate(base, {"request_id": answer.headers["x-request-id"], "rating": "bad"})
    # The rating judges judge-1's answer: it says nothing of what the cheap model would have done.
    assert rated.status_code == 200 and rated.json()["label"] == {"difficulty": None, "factor": 1.0}


def test_a_comment_is_not_kept_when_prompts_are_not(make_service: Service, redis_url: str, prefix: str) -> None:
    base = make_service(redis_url=redis_url, redis_prefix=prefix, ledger={"store_prompts": False})
    request_id = ask(base, text="my own medical history").headers["x-request-id"]
    comment = "wrong about my own medical history"
    assert rate(base, {"request_id": request_id, "rating": "bad", "comment": comment}).status_code == 200
    [outcome] = outcomes(redis_url, prefix)
    assert outcome["comment"] is None and outcome["rating"] == "bad"  # a comment may quote the prompt


def test_ratings_on_mixture_requests(service: str) -> None:
    good_id = ask(service, route="mixture").headers["x-request-id"]
    bad_id = ask(service, route="mixture", text="another question").headers["x-request-id"]
    # A good mixture answer says nothing about the cheap model; a bad one means the query is hard.
    assert rate(service, {"request_id": good_id, "rating": "good"}).json()["label"] == {
        "difficulty": None,
        "factor": 1.0,
    }
    assert rate(service, {"request_id": bad_id, "rating": "bad"}).json()["label"] == {
        "difficulty": 1,
        "factor": 0.5,
    }


def test_feedback_is_idempotent_per_request(service: str, redis_url: str, prefix: str) -> None:
    request_id = ask(service).headers["x-request-id"]
    first = rate(service, {"request_id": request_id, "rating": "bad"})
    again = rate(service, {"request_id": request_id, "rating": "bad"})
    assert first.json()["status"] == "recorded"
    assert again.status_code == 200 and again.json()["status"] == "already_recorded"
    changed = rate(service, {"request_id": request_id, "rating": "good"})
    assert changed.status_code == 409 and changed.json()["error"]["code"] == "feedback_exists"
    assert len(outcomes(redis_url, prefix)) == 1


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"request_id": "chatcmpl-unknown", "rating": "good"}, 404, "request_not_found"),
        ({"request_id": "x", "rating": "meh"}, 400, "invalid_rating"),
        ({"request_id": "x", "rating": 1}, 400, "invalid_rating"),
        ({"rating": "good"}, 400, "invalid_request"),
        ({"request_id": "", "rating": "good"}, 400, "invalid_request"),
        ({"request_id": "x", "rating": "good", "comment": 5}, 400, "invalid_request"),
        (b"{not json", 400, "invalid_json"),
        (b"[1, 2]", 400, "invalid_request"),
    ],
)
def test_invalid_feedback_gets_an_openai_error(service: str, body: Any, status: int, code: str) -> None:
    response = rate(service, body)
    assert response.status_code == status
    error = response.json()["error"]
    assert error["code"] == code and error["message"]
    assert error["type"] == ("not_found_error" if status == 404 else "invalid_request_error")


def test_failed_requests_cannot_be_rated(service: str) -> None:
    failed = httpx.post(f"{service}/v1/chat/completions", json={"model": "m", "messages": []}, timeout=10)
    assert failed.status_code == 400
    response = rate(service, {"request_id": failed.headers["x-request-id"], "rating": "bad"})
    assert response.status_code == 409 and response.json()["error"]["code"] == "request_failed"


def test_a_tenant_rates_only_its_own_requests(make_service: Service, redis_url: str, prefix: str) -> None:
    keys = [
        {"tenant": "acme", "key_sha256": hash_key("key-acme")},
        {"tenant": "globex", "key_sha256": hash_key("key-globex")},
    ]
    base = make_service(redis_url=redis_url, redis_prefix=prefix, auth={"open": False, "keys": keys})
    request_id = ask(base, key="key-acme").headers["x-request-id"]
    other = rate(base, {"request_id": request_id, "rating": "bad"}, key="key-globex")
    assert other.status_code == 404 and other.json()["error"]["code"] == "request_not_found"
    assert rate(base, {"request_id": request_id, "rating": "bad"}).status_code == 401
    own = rate(base, {"request_id": request_id, "rating": "bad"}, key="key-acme")
    assert own.status_code == 200 and own.json()["status"] == "recorded"


def test_ratings_right_after_the_answer_always_find_the_request(
    make_service: Service, redis_url: str, prefix: str
) -> None:
    # Many clients at once and a writer that flushes all the time: ratings race with batches being
    # written (a rating must never miss a request whose answer the client already has).
    base = make_service(redis_url=redis_url, redis_prefix=prefix, ledger={"flush_interval_s": 0.001})

    def client(worker: int) -> list[int]:
        statuses = []
        with httpx.Client(timeout=30) as http:
            for i in range(40):
                payload = {"model": "m", "messages": [{"role": "user", "content": f"race {worker} {i}"}]}
                answer = http.post(f"{base}/v1/chat/completions", json=payload, headers={"x-moa-route": "cheap"})
                rating = {"request_id": answer.headers["x-request-id"], "rating": "good"}
                statuses.append(http.post(f"{base}/v1/feedback", json=rating).status_code)
        return statuses

    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = [status for worker in pool.map(client, range(8)) for status in worker]
    assert statuses == [200] * 320


def test_a_rating_on_another_replica_finds_a_request_not_yet_logged(
    make_service: Service, redis_url: str, prefix: str
) -> None:
    # Two replicas behind one load balancer: the answer came from A, whose outcome log writes its events
    # in batches (every 0.5 s here); the rating lands on B a moment later, before A has written the event.
    a = make_service(redis_url=redis_url, redis_prefix=prefix, ledger={"flush_interval_s": 0.5})
    b = make_service(redis_url=redis_url, redis_prefix=prefix, ledger={"flush_interval_s": 0.5})
    statuses = []
    for i in range(3):
        request_id = ask(a, text=f"question {i}").headers["x-request-id"]
        statuses.append(rate(b, {"request_id": request_id, "rating": "good"}).status_code)
    assert statuses == [200, 200, 200]
    assert len(outcomes(redis_url, prefix)) == 3


def test_an_oversized_body_is_refused_without_reading_it_all(service: str) -> None:
    # A body without a declared length (chunked) that has passed the limit and is still coming: the answer
    # comes now, not after the service buffered all of it (a client could stream gigabytes).
    url = httpx.URL(service)
    chunk = b" " * 4096
    with socket.create_connection((url.host, url.port or 80), timeout=5) as sock:
        sock.sendall(
            f"POST /v1/feedback HTTP/1.1\r\nhost: {url.host}\r\ncontent-type: application/json\r\n"
            "transfer-encoding: chunked\r\n\r\n".encode()
        )
        for _ in range(5):  # 20 KiB so far, and the body has not ended
            sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        head = sock.recv(4096)  # a timeout here: the service waits for the rest of the body
    assert head.startswith(b"HTTP/1.1 413") and b"body_too_large" in head
    declared = httpx.post(f"{service}/v1/feedback", content=b" " * 20_000, timeout=10)
    assert declared.status_code == 413 and declared.json()["error"]["code"] == "body_too_large"


def test_concurrent_duplicate_ratings_on_two_replicas_are_recorded_once(
    make_service: Service, redis_url: str, prefix: str
) -> None:
    a = make_service(redis_url=redis_url, redis_prefix=prefix)
    b = make_service(redis_url=redis_url, redis_prefix=prefix)
    request_id = ask(a).headers["x-request-id"]
    rate(a, {"request_id": "warm-up", "rating": "good"})  # both replicas have a connection to Redis ready
    rate(b, {"request_id": "warm-up", "rating": "good"})
    with ThreadPoolExecutor(max_workers=8) as pool:
        replies = list(pool.map(lambda i: rate((a, b)[i % 2], {"request_id": request_id, "rating": "bad"}), range(8)))
    assert sorted(reply.json()["status"] for reply in replies) == ["already_recorded"] * 7 + ["recorded"]
    assert [outcome["request_id"] for outcome in outcomes(redis_url, prefix)] == [request_id]
