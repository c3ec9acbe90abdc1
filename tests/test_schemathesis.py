"""Schemathesis against the service's own OpenAPI schema: whatever it generates, no 5xx."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from router.app import create_app
from router.auth import hash_key
from router.background_server import BackgroundServer
from router.config import settings_from_mapping
from router.simulator.runner import SimulatorServer
from tests.conftest import settings_dict, sim_stats

ADMIN_KEY = "sk-schemathesis-admin"
CLIENT_KEY = "sk-schemathesis-client"
EXAMPLES_PER_OPERATION = 50


@pytest.fixture(scope="module")
def service_url(sim: SimulatorServer, redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One service for every generated case (starting one per case would take minutes)."""
    data = settings_dict(
        sim.base_url,
        tmp_path_factory.mktemp("schemathesis") / "data",
        redis_url=redis_url,
        auth={
            "open": False,
            "keys": [{"tenant": "fuzz", "key_sha256": hash_key(CLIENT_KEY)}],
            "admin_key_sha256": hash_key(ADMIN_KEY),
        },
        limits={"max_body_bytes": 64_000, "max_messages": 16, "max_tokens_cap": 256},
    )
    with BackgroundServer(create_app(settings_from_mapping(data))) as server:
        yield server.url


def dangling_refs(document: dict[str, Any]) -> set[str]:
    """`$ref`s of the document that point at no component schema."""
    known = set(document.get("components", {}).get("schemas", {}))
    refs: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/components/schemas/"):
                refs.add(ref.rsplit("/", 1)[1])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(document)
    return refs - known


@pytest.fixture(scope="module")
def published_schema(service_url: str) -> dict[str, Any]:
    document: dict[str, Any] = httpx.get(f"{service_url}/openapi.json", timeout=10).json()
    return document


@pytest.fixture(scope="module")
def api_schema(published_schema: dict[str, Any], service_url: str) -> Any:
    document = copy.deepcopy(published_schema)
    schema = schemathesis.openapi.from_dict(document)
    schema.location = f"{service_url}/openapi.json"
    return schema


def test_the_published_schema_has_no_dangling_refs(published_schema: dict[str, Any]) -> None:
    assert dangling_refs(published_schema) == set()


# Schemathesis's own pytest integration does not run under pytest 9 (it sets a private node id), so the
# cases are drawn from each operation's strategy here, in both generation modes.
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=["valid", "invalid"])
def test_no_generated_request_gets_a_5xx(
    api_schema: Any, service_url: str, mode: GenerationMode, sim: SimulatorServer
) -> None:
    calls_before = sim_stats(sim)["total_calls"]
    operations = [result.ok() for result in api_schema.get_all_operations()]
    fuzzed = []
    for operation in operations:
        try:
            _fuzz(operation, service_url, mode)
        except Unsatisfiable:
            # An operation without parameters or body has no invalid input to generate.
            assert mode is GenerationMode.NEGATIVE, operation.label
            continue
        fuzzed.append(operation.path)
    assert "/v1/chat/completions" in fuzzed
    if mode is GenerationMode.POSITIVE:  # valid bodies went all the way to the upstream models
        assert sim_stats(sim)["total_calls"] > calls_before


def _fuzz(operation: Any, service_url: str, mode: GenerationMode) -> None:
    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def run(case: Any) -> None:
        # The client key reaches the chat path, the admin key the admin endpoints.
        for key in (CLIENT_KEY, ADMIN_KEY):
            headers = {"authorization": f"Bearer {key}"}
            case.call_and_validate(base_url=service_url, headers=headers, checks=[not_a_server_error], timeout=30)

    run()


def test_the_schema_lists_the_chat_endpoint(api_schema: Any) -> None:
    assert "/v1/chat/completions" in api_schema.raw_schema["paths"]
