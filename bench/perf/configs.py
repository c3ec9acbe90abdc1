"""The generated configurations: one fake upstream fleet, the router's config and LiteLLM's proxy config,
all pointing at the same upstream, and the request bodies each gateway is sent."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import yaml

# Real OpenAI model names, so that the router prices calls from litellm's cost map as it would in
# production; the simulator answers under any name its fleet lists.
CHEAP_MODEL = "gpt-4o-mini"
PROPOSER_MODELS = ("gpt-4o", "gpt-4.1", "gpt-4.1-mini", "gpt-4.1-nano")
AGGREGATOR_MODEL = "gpt-4o"
ANSWER_TOKENS = 20  # a short answer: the upstream's own work stays small next to the gateways'

ROUTER_KEY = "sk-bench-router-client-key"
LITELLM_MASTER_KEY = "sk-bench-litellm-master-key-0123456789abcdef"
LITELLM_MODEL_NAME = "bench-cheap"
PROMPT = "What is the capital of France? Answer in one sentence."


@dataclass(frozen=True, slots=True)
class Files:
    fleet: Path
    router: Path
    litellm: Path


def fleet_config() -> dict[str, Any]:
    """Zero-latency models: every answer is sent at once, so only the gateways' own costs remain."""
    names = dict.fromkeys((CHEAP_MODEL, *PROPOSER_MODELS, AGGREGATOR_MODEL))
    models = [{"name": name, "family": f"f{i}", "output_tokens": ANSWER_TOKENS} for i, name in enumerate(names)]
    return {"seed": 7, "models": models}


def router_config(upstream_base: str, data_dir: Path, redis_url: str | None) -> dict[str, Any]:
    """The router as it would run in production (auth with one client key, cache on, outcome log and
    stats on), with 4 proposers and an aggregator for the mixture route."""

    def entry(model: str, family: str) -> dict[str, Any]:
        return {"model": f"openai/{model}", "api_base": upstream_base, "api_key": "bench-upstream", "family": family}

    config: dict[str, Any] = {
        "cheap": entry(CHEAP_MODEL, "f0"),
        "proposers": [entry(model, f"p{i}") for i, model in enumerate(PROPOSER_MODELS)],
        "aggregator": entry(AGGREGATOR_MODEL, "agg"),
        "auth": {"keys": [{"tenant": "bench", "key_sha256": hashlib.sha256(ROUTER_KEY.encode()).hexdigest()}]},
        "data_dir": str(data_dir),
        "redis_prefix": "moa-bench",
    }
    if redis_url:
        config["redis_url"] = redis_url
    return config


def litellm_config(upstream_base: str) -> dict[str, Any]:
    """LiteLLM's proxy with one model on the same upstream; no database. LiteLLM refuses to start
    without a master key, so the benchmark sends it, as the router's benchmark sends a client key."""
    return {
        "model_list": [
            {
                "model_name": LITELLM_MODEL_NAME,
                "litellm_params": {"model": f"openai/{CHEAP_MODEL}", "api_base": upstream_base, "api_key": "x"},
            }
        ],
        "general_settings": {"master_key": LITELLM_MASTER_KEY},
    }


def write_configs(directory: Path, upstream_base: str, redis_url: str | None) -> Files:
    directory.mkdir(parents=True, exist_ok=True)
    files = Files(directory / "fleet.yaml", directory / "router.yaml", directory / "litellm.yaml")
    files.fleet.write_text(yaml.safe_dump(fleet_config(), sort_keys=False))
    files.router.write_text(
        yaml.safe_dump(router_config(upstream_base, directory / "data", redis_url), sort_keys=False)
    )
    files.litellm.write_text(yaml.safe_dump(litellm_config(upstream_base), sort_keys=False))
    return files


def chat_body(model: str, *, stream: bool = False, deterministic: bool = False) -> bytes:
    """A small chat request. `deterministic` (temperature 0) makes it cacheable by the router; without
    it the router's default `cache.deterministic_only` bypasses the cache."""
    body: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": PROMPT}]}
    if deterministic:
        body["temperature"] = 0
    if stream:
        body["stream"] = True
    return orjson.dumps(body)
