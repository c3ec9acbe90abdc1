"""Secrets (client and upstream API keys) never appear in logs or error messages, and by default
neither do prompt texts: in the captured log output of a run full of failures, nor in what the service
keeps in Redis besides the cache."""

from __future__ import annotations

import logging
import uuid
from typing import Any

import httpx
import pytest
from redis import Redis

from router.auth import hash_key
from router.simulator.runner import SimulatorServer
from tests.conftest import entry

CLIENT_KEY = f"sk-client-{uuid.uuid4().hex}"
WRONG_KEY = f"sk-wrong-{uuid.uuid4().hex}"
UPSTREAM_KEY = f"sk-upstream-{uuid.uuid4().hex}"
PROMPT = f"my diagnosis is canary{uuid.uuid4().hex} please advise"
SECRETS = (CLIENT_KEY, WRONG_KEY, UPSTREAM_KEY)


def patch(sim: SimulatorServer, model: str, **changes: Any) -> None:
    httpx.patch(f"{sim.root_url}/_sim/models/{model}", json=changes, timeout=5).raise_for_status()


def models(sim_url: str) -> dict[str, Any]:
    keyed = {"api_key": UPSTREAM_KEY}
    return {
        "cheap": entry(sim_url, "cheap-1", **keyed),
        "proposers": [entry(sim_url, name, **keyed) for name in ("prop-a", "prop-b", "prop-c")],
        "aggregator": entry(sim_url, "agg-1", **keyed),
        "judge": entry(sim_url, "judge-1", **keyed),
    }


def stored_outside_the_cache(redis_url: str, prefix: str) -> str:
    """Everything under `prefix` except cache entries (which hold answers by design), as text."""
    client = Redis.from_url(redis_url)
    parts: list[str] = []
    for raw_key in client.scan_iter(match=f"{prefix}:*", count=500):
        key = raw_key.decode()
        if key.startswith(f"{prefix}:cache:"):
            continue
        readers: dict[str, Any] = {
            "string": client.get,
            "hash": client.hgetall,
            "list": lambda name: client.lrange(name, 0, -1),
            "set": client.smembers,
            "zset": lambda name: client.zrange(name, 0, -1),
            "stream": client.xrange,
        }
        reader = readers.get(client.type(key).decode())
        value = reader(key) if reader is not None else None
        parts.append(f"{key} {value!r}")
    client.close()
    return "\n".join(parts)


def test_no_secret_and_no_prompt_in_logs_errors_or_stored_events(
    make_service: Any, sim: SimulatorServer, sim_url: str, redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # everything any logger says, including the libraries'
    prefix = f"t{uuid.uuid4().hex[:10]}"
    base = make_service(
        redis_url=redis_url,
        redis_prefix=prefix,
        auth={"open": False, "keys": [{"tenant": "acme", "key_sha256": hash_key(CLIENT_KEY)}]},
        resilience={"backoff_base_s": 0.0, "failure_threshold": 3},
        **models(sim_url),
    )
    good = {"authorization": f"Bearer {CLIENT_KEY}"}
    body = {"model": "moa-router", "messages": [{"role": "user", "content": PROMPT}]}
    bodies: list[str] = []
    with httpx.Client(base_url=base, timeout=30) as client:

        def post(payload: dict[str, Any], headers: dict[str, str], route: str = "cheap") -> httpx.Response:
            response = client.post("/v1/chat/completions", json=payload, headers={**headers, "x-moa-route": route})
            bodies.append(response.text)
            return response

        for route in ("cheap", "mixture"):
            for stream in (False, True):
                assert post({**body, "stream": stream}, good, route).status_code == 200
        assert post(body, {"authorization": f"Bearer {WRONG_KEY}"}).status_code == 401
        assert post({**body, "api_key": UPSTREAM_KEY}, good).status_code == 400
        assert post({**body, "messages": [{"role": "robot", "content": PROMPT}]}, good).status_code == 400
        for fault in ("error_rate", "malformed_rate", "rate_limit_rate"):
            patch(sim, "cheap-1", **{fault: 1.0, "retry_after_s": 0.0})
            assert post(body, good).status_code >= 500
            patch(sim, "cheap-1", **{fault: 0.0})
        patch(sim, "cheap-1", drop_stream_rate=1.0)
        post({**body, "stream": True}, good)
        patch(sim, "prop-a", error_rate=1.0)
        assert post(body, good, "mixture").status_code == 200
    logged = caplog.text
    assert "cheap-1" in logged  # the failures above were logged: the check below is not vacuous
    for secret in SECRETS:
        assert secret not in logged
        assert not any(secret in text for text in bodies)
    assert PROMPT not in logged
    assert PROMPT.split()[3] not in logged  # not even the distinctive word alone
    kept = stored_outside_the_cache(redis_url, prefix)
    assert "ledger" in kept  # the outcome log was written: the check below is not vacuous
    assert PROMPT.split()[3] not in kept
    assert all(secret not in kept for secret in SECRETS)
