"""The one cache key function: what makes two requests the same question asked of the same models.

Everything that can change the answer is in the key: the tenant (answers never cross tenants), the
cache namespace, the messages as the upstream models see them, the route and its models, the route's
own settings (a mixture's layers and temperatures) and every sampling parameter. Nothing else is:
streaming or not, stream options, `user`, `metadata` and the cache controls themselves do not change
the answer, so they do not split the cache.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from router.api.schemas import ChatRequest

# Bump when the normalisation changes, so old entries are simply never found again.
KEY_VERSION = 1


def _normalised_params(chat: ChatRequest) -> dict[str, Any]:
    params = chat.sampling_params()
    stop = params.get("stop")
    if stop is not None:
        # "x" and ["x"] stop the same way, and a stop list is a set: order and repeats do not matter.
        params["stop"] = sorted({stop} if isinstance(stop, str) else set(stop))
    return params


def normalised_request(
    tenant: str,
    namespace: str,
    chat: ChatRequest,
    route: str,
    models: Sequence[str],
    route_settings: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The request reduced to what decides its answer (the preimage of the key; useful in tests)."""
    return {
        "v": KEY_VERSION,
        "tenant": tenant,
        "namespace": namespace,
        "route": route,
        "models": list(models),
        "route_settings": dict(route_settings or {}),
        "messages": chat.upstream_messages(),
        "temperature": chat.temperature,
        "max_tokens": chat.requested_max_tokens(),
        "params": _normalised_params(chat),
    }


def cache_key(
    prefix: str,
    tenant: str,
    namespace: str,
    chat: ChatRequest,
    route: str,
    models: Sequence[str],
    route_settings: Mapping[str, Any] | None = None,
) -> str:
    """`<prefix>:cache:<sha256>` of the normalised request. The tenant is inside the hash, so a key
    says nothing about whose it is and no other tenant's request can produce it."""
    preimage = normalised_request(tenant, namespace, chat, route, models, route_settings)
    digest = hashlib.sha256(orjson.dumps(preimage, option=orjson.OPT_SORT_KEYS)).hexdigest()
    return f"{prefix}:cache:{digest}"
