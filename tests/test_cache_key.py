"""The one cache key function: what must change the key and what must not."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from router.api.schemas import ChatRequest
from router.cache_key import cache_key, normalised_request

SYSTEM = {"role": "system", "content": "Be brief."}
ASK = {"role": "user", "content": "What is a B-tree?"}
BASE: dict[str, Any] = {"model": "moa-router", "messages": [SYSTEM, ASK], "temperature": 0}
MODELS = ["openai/cheap-1"]


def key_of(
    body: dict[str, Any],
    tenant: str = "acme",
    namespace: str = "",
    route: str = "cheap",
    models: list[str] | None = None,
    route_settings: dict[str, Any] | None = None,
) -> str:
    chat = ChatRequest.model_validate(body)
    return cache_key("pfx", tenant, namespace, chat, route, models or MODELS, route_settings)


def with_(**changes: Any) -> dict[str, Any]:
    return {**BASE, **changes}


def test_key_is_prefixed_hex_digest_and_stable() -> None:
    key = key_of(BASE)
    assert key.startswith("pfx:cache:")
    digest = key.removeprefix("pfx:cache:")
    assert len(digest) == 64 and int(digest, 16) >= 0
    assert key_of(dict(reversed(list(BASE.items())))) == key


def test_tenant_is_hashed_not_spelled_out() -> None:
    assert "acme" not in key_of(BASE, tenant="acme")
    assert key_of(BASE, tenant="a") != key_of(BASE, tenant="b")


@pytest.mark.parametrize(
    "changed",
    [
        with_(temperature=0.5),
        with_(temperature=None),
        with_(max_tokens=10),
        with_(top_p=0.5),
        with_(stop="END"),
        with_(seed=1),
        with_(presence_penalty=0.5),
        with_(frequency_penalty=0.5),
        with_(response_format={"type": "json_object"}),
        with_(messages=[{"role": "user", "content": "What is a B-tree?"}]),
        with_(messages=[SYSTEM, ASK, {"role": "assistant", "content": "A tree."}, {"role": "user", "content": "And?"}]),
        with_(messages=[SYSTEM, {"role": "user", "content": "What is a b-tree?"}]),
        with_(messages=[SYSTEM, {**ASK, "name": "bob"}]),
        with_(messages=[ASK, SYSTEM]),
    ],
)
def test_every_answer_changing_parameter_changes_the_key(changed: dict[str, Any]) -> None:
    assert key_of(changed) != key_of(BASE)


def test_route_models_namespace_and_route_settings_change_the_key() -> None:
    base = key_of(BASE)
    assert key_of(BASE, route="mixture") != base
    assert key_of(BASE, models=["openai/other"]) != base
    assert key_of(BASE, namespace="ns1") != base
    assert key_of(BASE, route_settings={"layers": 2}) != key_of(BASE, route_settings={"layers": 1})


@pytest.mark.parametrize(
    "same",
    [
        with_(stream=True, stream_options={"include_usage": True}),
        with_(user="someone", metadata={"team": "x"}),
        with_(cache={"no_store": True, "ttl_s": 5}),
        with_(model="any-other-public-name"),
        with_(max_completion_tokens=None),
        # developer is sent upstream as system; one text part is sent as its text (several parts may be
        # sent as parts: whether they share the string's key follows what upstream_messages() sends)
        with_(messages=[{**SYSTEM, "role": "developer"}, ASK]),
        with_(messages=[SYSTEM, {"role": "user", "content": [{"type": "text", "text": "What is a B-tree?"}]}]),
    ],
)
def test_what_does_not_change_the_answer_does_not_change_the_key(same: dict[str, Any]) -> None:
    assert key_of(same) == key_of(BASE)


def test_equivalent_spellings_of_parameters_share_a_key() -> None:
    assert key_of(with_(max_tokens=50)) == key_of(with_(max_completion_tokens=50))
    assert key_of(with_(stop="END")) == key_of(with_(stop=["END"]))
    assert key_of(with_(stop=["a", "b"])) == key_of(with_(stop=["b", "a", "a"]))
    assert key_of(with_(temperature=0)) == key_of(with_(temperature=0.0))


def test_cache_controls_other_than_namespace_are_not_in_the_preimage() -> None:
    chat = ChatRequest.model_validate(with_(cache={"no_cache": True, "namespace": "ns"}))
    preimage = normalised_request("t", "ns", chat, "cheap", MODELS)
    assert "cache" not in preimage and "stream" not in preimage and "user" not in preimage
    assert preimage["namespace"] == "ns"


texts = st.text(min_size=1, max_size=40)


@settings(max_examples=150, deadline=None)
@given(a=texts, b=texts, tenant_a=st.text(max_size=12), tenant_b=st.text(max_size=12))
def test_different_prompts_or_tenants_never_share_a_key(a: str, b: str, tenant_a: str, tenant_b: str) -> None:
    key_a = key_of(with_(messages=[{"role": "user", "content": a}]), tenant=tenant_a)
    key_b = key_of(with_(messages=[{"role": "user", "content": b}]), tenant=tenant_b)
    assert (key_a == key_b) == (a == b and tenant_a == tenant_b)


@settings(max_examples=100, deadline=None)
@given(
    temperature=st.sampled_from([0.0, 0.2, 1.0, None]),
    max_tokens=st.one_of(st.none(), st.integers(1, 4000)),
    seed=st.one_of(st.none(), st.integers(-(2**31), 2**31)),
    stop=st.one_of(st.none(), st.lists(st.text(min_size=1, max_size=5), min_size=1, max_size=4)),
    stream=st.booleans(),
    user=st.one_of(st.none(), st.text(max_size=10)),
)
def test_key_depends_on_answer_changing_fields_only(
    temperature: float | None,
    max_tokens: int | None,
    seed: int | None,
    stop: list[str] | None,
    stream: bool,
    user: str | None,
) -> None:
    body = with_(temperature=temperature, max_tokens=max_tokens, seed=seed, stop=stop)
    assert key_of({**body, "stream": stream, "user": user}) == key_of(body)
    if seed is not None:
        assert key_of({**body, "seed": seed + 1}) != key_of(body)
    if max_tokens is not None:
        assert key_of({**body, "max_tokens": max_tokens + 1}) != key_of(body)
