"""The README's demo command, as a user runs it: a real process, the official openai client."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from router.redis_server import free_port

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    data_dir = tmp_path_factory.mktemp("demo")
    log = data_dir / "connections.log"
    port = free_port()
    # As on a fresh machine: the embedded Redis and the default, relative data directory (./.moa-router).
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "MOA_ROUTER_DATA_DIR")}
    env.update(MOA_TEST_CONNECTIONS_LOG=str(log),
               LITELLM_LOCAL_MODEL_COST_MAP="True", PYTHONPATH=str(ROOT))
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "tests/support/record_connections.py"), "serve", "--demo", "--port", str(port),
         "--log-level", "warning"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=data_dir,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, process.stdout.read().decode() if process.stdout else ""
            try:
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "demo did not become ready"
            time.sleep(0.1)
        yield base, log
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_openai_client_gets_answers_streamed_and_not(demo: tuple[str, Path]) -> None:
    from openai import OpenAI

    base, _ = demo
    client = OpenAI(base_url=f"{base}/v1", api_key="any-token-works-in-the-demo")
    for route in ("cheap", "mixture"):
        reply = client.chat.completions.create(
            model="moa-router", messages=[{"role": "user", "content": "Prove that sqrt(2) is irrational."}],
            extra_headers={"x-moa-route": route},
        )
        assert reply.choices[0].message.content
        assert reply.usage is not None and reply.usage.total_tokens == (
            reply.usage.prompt_tokens + reply.usage.completion_tokens) > 0
        stream = client.chat.completions.create(
            model="moa-router", messages=[{"role": "user", "content": "Name three rivers in Europe."}],
            stream=True, stream_options={"include_usage": True}, extra_headers={"x-moa-route": route},
        )
        parts, usage = [], None
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                parts.append(chunk.choices[0].delta.content)
            if chunk.usage is not None:
                usage = chunk.usage
        assert len(parts) > 1 and "".join(parts)
        assert usage is not None and usage.completion_tokens > 0


def test_startup_reaches_only_loopback(demo: tuple[str, Path]) -> None:
    _, log = demo
    addresses = [ast.literal_eval(line) for line in log.read_text().splitlines() if line.strip()]
    assert addresses, "the recorder saw no connection at all"
    for address in addresses:
        host = address[0] if isinstance(address, tuple) else address
        assert host in ("127.0.0.1", "::1", "localhost") or str(host).startswith("/"), address
