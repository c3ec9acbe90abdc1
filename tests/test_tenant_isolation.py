"""A tenant's cached answer is never returned to another tenant, whatever the request says."""

from __future__ import annotations

import concurrent.futures
from typing import Any

import httpx
import pytest

from router.auth import hash_key
from router.simulator.runner import SimulatorServer
from tests.conftest import sim_stats

KEYS = {"acme": "sk-acme-tenant", "globex": "sk-globex-tenant"}


@pytest.fixture
def service(make_service: Any, redis_url: str) -> str:
    keys = [{"tenant": tenant, "key_sha256": hash_key(key)} for tenant, key in KEYS.items()]
    # A generous cache timeout: on a loaded machine a lookup slower than the default 50 ms is a bypass,
    # which these tests would mistake for a cache that does not work.
    base: str = make_service(redis_url=redis_url, auth={"open": False, "keys": keys}, cache={"timeout_ms": 2000})
    return base


def ask(base: str, tenant: str, route: str = "cheap", stream: bool = False, **body: Any) -> httpx.Response:
    extra_headers = body.pop("headers", {})
    payload = {
        "model": "moa-router",
        "messages": [{"role": "user", "content": "Summarise our Q3 board minutes."}],
        "temperature": 0,
        "stream": stream,
        **body,
    }
    headers = {"authorization": f"Bearer {KEYS[tenant]}", "x-moa-route": route, **extra_headers}
    response = httpx.post(f"{base}/v1/chat/completions", json=payload, headers=headers, timeout=30)
    assert response.status_code == 200, response.text
    return response


def upstream_calls(sim: SimulatorServer) -> int:
    calls: int = sim_stats(sim)["total_calls"]
    return calls


@pytest.mark.parametrize("route", ["cheap", "mixture"])
@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
def test_another_tenant_misses_what_one_tenant_cached(
    service: str, sim: SimulatorServer, route: str, stream: bool
) -> None:
    assert ask(service, "acme", route, stream).headers["x-moa-cache"] == "miss"
    assert ask(service, "acme", route, stream).headers["x-moa-cache"] == "hit"  # the cache is on and works
    before = upstream_calls(sim)
    other = ask(service, "globex", route, stream)
    assert other.headers["x-moa-cache"] == "miss"
    assert upstream_calls(sim) > before  # globex's answer was computed for globex
    assert ask(service, "globex", route, stream).headers["x-moa-cache"] == "hit"


@pytest.mark.parametrize(
    "namespace",
    [{"cache": {"namespace": "team-shared"}}, {"headers": {"x-moa-cache-namespace": "team-shared"}}],
    ids=["body", "header"],
)
def test_a_shared_namespace_does_not_cross_tenants(service: str, namespace: dict[str, Any]) -> None:
    assert ask(service, "acme", **namespace).headers["x-moa-cache"] == "miss"
    assert ask(service, "acme", **namespace).headers["x-moa-cache"] == "hit"
    assert ask(service, "globex", **namespace).headers["x-moa-cache"] == "miss"


def test_concurrent_identical_requests_of_two_tenants_are_computed_for_each(service: str, sim: SimulatorServer) -> None:
    tenants = ["acme", "globex"] * 8
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(tenants)) as pool:
        responses = list(pool.map(lambda tenant: ask(service, tenant), tenants))
    misses = {tenant for tenant, r in zip(tenants, responses, strict=True) if r.headers["x-moa-cache"] == "miss"}
    statuses = [(tenant, r.headers["x-moa-cache"]) for tenant, r in zip(tenants, responses, strict=True)]
    assert misses == {"acme", "globex"}, statuses  # each tenant computed its own answer: none was handed across
    assert sim_stats(sim)["models"]["cheap-1"]["calls"] >= 2
