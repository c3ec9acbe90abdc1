"""The lean path: OpenAI-compatible upstreams called over one shared keep-alive pool, no litellm machinery.

Every product request pays for this call, so it is kept cheap. Through aiohttp's client (a C HTTP parser,
no scan of the whole pool on each request) a call costs about 0.1 ms of CPU, against about 0.7 ms through
httpx and about 4.5 ms through `litellm.acompletion` (bench/perf). The service gives the providers an
UpstreamSession (aiohttp's pool and a cap on calls in flight, `make_upstream_session`); a bare aiohttp
session or an httpx client is accepted too and behaves the same, which lets tests hand in httpx's mock
transports.
"""

from __future__ import annotations

import asyncio
import time
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, Protocol

import aiohttp
import httpx
import orjson

from router.config import ModelEntry
from router.providers.base import CallMeter, CallResult, CompletionRequest, ProviderError, StreamItem, Usage
from router.providers.pricing import Prices, priced_call
from router.providers.upstream_errors import error_for_status, reported_error

DEFAULT_OPENAI_BASE = "https://api.openai.com/v1"


class UpstreamSession:
    """The one keep-alive pool for every OpenAI-compatible upstream, with the router's own cap on the calls in
    flight through it. The cap is kept here rather than by aiohttp's connector so that a call that waited for
    a free connection until its deadline is told apart from an upstream that did not answer: one hanging
    model, holding every connection, must not get the breakers of the models queued behind it opened."""

    def __init__(self, max_connections: int) -> None:
        # Not trust_env: aiohttp would then look for a proxy and a .netrc in a worker thread on every request.
        # Proxies from the environment are looked up once per upstream instead (env_proxy).
        if max_connections < 1:
            raise ValueError(f"the upstream pool needs at least one connection, not {max_connections}")
        self.http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=300), trust_env=False)
        self.slots = asyncio.Semaphore(max_connections)

    async def close(self) -> None:
        await self.http.close()


UpstreamClient = UpstreamSession | aiohttp.ClientSession | httpx.AsyncClient


DEFAULT_MAX_IN_FLIGHT = 512  # the default of `limits.max_upstream_in_flight`


def make_upstream_session(max_connections: int = DEFAULT_MAX_IN_FLIGHT) -> UpstreamSession:
    """The one keep-alive pool for every OpenAI-compatible upstream, with at most `max_connections` calls in
    flight (the service passes `limits.max_upstream_in_flight`). Make it at startup, inside the running
    event loop, and close it at shutdown."""
    return UpstreamSession(max_connections)


def env_proxy(url: str) -> str | None:
    """The proxy that HTTP_PROXY / HTTPS_PROXY / ALL_PROXY name for `url`, unless NO_PROXY exempts it."""
    parts = urllib.parse.urlsplit(url)
    if parts.hostname is None or urllib.request.proxy_bypass(parts.hostname):
        return None
    proxies = urllib.request.getproxies_environment()
    return proxies.get(parts.scheme) or proxies.get("all")


def request_body(upstream_model: str, request: CompletionRequest, stream: bool) -> dict[str, Any]:
    body: dict[str, Any] = {"model": upstream_model, "messages": list(request.messages), **request.params}
    if request.max_tokens is not None:
        body["max_tokens"] = request.max_tokens
    if request.temperature is not None:
        body["temperature"] = request.temperature
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return body


class _Reply(Protocol):
    """An upstream answer whose status and headers have arrived; the body is read from it."""

    @property
    def status(self) -> int: ...

    def header(self, name: str) -> str | None: ...

    async def read(self) -> bytes: ...

    def chunks(self) -> AsyncIterator[bytes]: ...


class _AiohttpReply:
    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response

    @property
    def status(self) -> int:
        return self._response.status

    def header(self, name: str) -> str | None:
        return self._response.headers.get(name)

    async def read(self) -> bytes:
        return await self._response.read()

    def chunks(self) -> AsyncIterator[bytes]:
        return self._response.content.iter_any()


class _HttpxReply:
    def __init__(self, response: httpx.Response) -> None:
        self._response = response

    @property
    def status(self) -> int:
        return self._response.status_code

    def header(self, name: str) -> str | None:
        value: str | None = self._response.headers.get(name)
        return value

    async def read(self) -> bytes:
        return await self._response.aread()

    def chunks(self) -> AsyncIterator[bytes]:
        return self._response.aiter_bytes()


def _unsent(model: str) -> ProviderError:
    return ProviderError(model, "timeout", "no free upstream connection before the deadline", reached_upstream=False)


async def _take_slot(slots: asyncio.Semaphore, model: str, timeout_s: float) -> float:
    """Takes a slot of the pool, waiting up to `timeout_s` for one; returns the seconds it waited."""
    if not slots.locked():
        await slots.acquire()  # free: taken without waiting
        return 0.0
    began = time.perf_counter()
    try:
        async with asyncio.timeout(timeout_s):
            await slots.acquire()
    except TimeoutError as exc:
        raise _unsent(model) from exc
    return time.perf_counter() - began


@asynccontextmanager
async def _exchange(
    client: UpstreamClient,
    model: str,
    url: str,
    content: bytes,
    headers: dict[str, str],
    timeout_s: float,
    proxy: str | None,
    meter: CallMeter | None = None,
) -> AsyncIterator[_Reply]:
    """POSTs `content`; transport failures while sending or reading become ProviderErrors of `model`. The
    `meter` is told once the call has its slot of the pool (CallMeter.sent): it no longer waits to be sent."""
    if isinstance(client, UpstreamSession):
        waited = await _take_slot(client.slots, model, timeout_s)
        try:
            left = max(0.001, timeout_s - waited)
            async with _exchange(client.http, model, url, content, headers, left, proxy, meter) as reply:
                yield reply
        finally:
            client.slots.release()
        return
    if meter is not None:  # a bare client (tests hand one in) may queue in its own pool: only httpx tells so
        meter.sent = True
    try:
        if isinstance(client, aiohttp.ClientSession):
            timeout = aiohttp.ClientTimeout(total=timeout_s)
            async with client.post(url, data=content, headers=headers, timeout=timeout, proxy=proxy) as response:
                yield _AiohttpReply(response)
        else:
            async with client.stream("POST", url, content=content, headers=headers, timeout=timeout_s) as reply:
                yield _HttpxReply(reply)
    except httpx.PoolTimeout as exc:
        raise _unsent(model) from exc
    except (TimeoutError, httpx.TimeoutException) as exc:  # aiohttp's timeouts are TimeoutErrors
        raise ProviderError(model, "timeout", type(exc).__name__) from exc
    except (aiohttp.ClientError, httpx.HTTPError) as exc:
        raise ProviderError(model, "connection", type(exc).__name__) from exc


async def _sse_data(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """The payload of each `data:` line of a server-sent event stream, as the bytes arrive."""
    pending = b""
    async for chunk in chunks:
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            if line.startswith(b"data:"):
                yield line[5:].strip()
    if pending.startswith(b"data:"):
        yield pending[5:].strip()


def _error_for_status(model: str, reply: _Reply, body: bytes) -> ProviderError:
    return error_for_status(model, reply.status, reply.header, body[:300].decode("utf-8", "replace"))


def _text_of(content: Any) -> str:
    """The text of a message's or a delta's content: a string or, from some OpenAI-compatible servers, a list
    of parts, whose text parts count (never the list's repr). Anything else raises TypeError (malformed)."""
    if content is None or isinstance(content, str):
        return content or ""
    if isinstance(content, list):
        return "".join(
            part["text"]
            for part in content
            if isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str)
        )
    raise TypeError(f"content of type {type(content).__name__} is not text")


def _usage_from(payload: Mapping[str, Any] | None) -> Usage | None:
    if not isinstance(payload, dict):
        return None
    return Usage.reported(payload.get("prompt_tokens"), payload.get("completion_tokens"))


class OpenAICompatibleProvider:
    def __init__(self, entry: ModelEntry, prices: Prices, client: UpstreamClient) -> None:
        self._entry = entry
        self._prices = prices
        self._client = client
        self._upstream_model = entry.model.split("/", 1)[1]
        self._url = (entry.api_base or DEFAULT_OPENAI_BASE).rstrip("/") + "/chat/completions"
        self._proxy = env_proxy(self._url)  # httpx clients find their proxy themselves

    @property
    def entry(self) -> ModelEntry:
        return self._entry

    @property
    def name(self) -> str:
        return self._entry.model

    def _headers(self) -> dict[str, str]:
        headers = {"content-type": "application/json"}
        key = self._entry.resolved_api_key()
        if key:
            headers["authorization"] = f"Bearer {key}"
        return headers

    def _timeout(self, request: CompletionRequest) -> float:
        if request.timeout_s is None:
            return self._entry.timeout_s
        return max(0.001, min(self._entry.timeout_s, request.timeout_s))

    def _post(
        self, request: CompletionRequest, stream: bool, meter: CallMeter | None
    ) -> AbstractAsyncContextManager[_Reply]:
        content = orjson.dumps(request_body(self._upstream_model, request, stream))
        timeout = self._timeout(request)
        return _exchange(self._client, self.name, self._url, content, self._headers(), timeout, self._proxy, meter)

    async def complete(self, request: CompletionRequest, meter: CallMeter | None = None) -> CallResult:
        if meter is not None:
            meter.start(self._entry, request)
        started = time.perf_counter()
        async with self._post(request, stream=False, meter=meter) as reply:
            body = await reply.read()
        if reply.status != 200:
            raise _error_for_status(self.name, reply, body)
        try:
            payload = orjson.loads(body)
            if isinstance(payload, dict) and payload.get("error") is not None:
                raise reported_error(self.name, payload["error"])
            choice = payload["choices"][0]
            text = _text_of(choice["message"].get("content"))
            finish = choice.get("finish_reason") or "stop"
        except (orjson.JSONDecodeError, KeyError, IndexError, TypeError, AttributeError) as exc:
            raise ProviderError(self.name, "malformed", "response is not a chat completion") from exc
        return priced_call(
            self.name, self._prices, request, text, _usage_from(payload.get("usage")), str(finish), started
        )

    async def stream(self, request: CompletionRequest, meter: CallMeter | None = None) -> AsyncIterator[StreamItem]:
        if meter is not None:
            meter.start(self._entry, request)
        started = time.perf_counter()
        parts: list[str] = []
        usage: Usage | None = None
        finish = "stop"
        try:
            async with self._post(request, stream=True, meter=meter) as reply:
                if reply.status != 200:
                    raise _error_for_status(self.name, reply, await reply.read())
                try:
                    async for data in _sse_data(reply.chunks()):
                        if data == b"[DONE]":
                            break
                        chunk = orjson.loads(data)
                        if chunk.get("error") is not None:  # failed after it began: not an answer cut short
                            raise reported_error(self.name, chunk["error"])
                        usage = _usage_from(chunk.get("usage")) or usage
                        for choice in chunk.get("choices") or ():
                            delta = _text_of((choice.get("delta") or {}).get("content"))
                            if delta:
                                parts.append(delta)
                                yield delta
                            if choice.get("finish_reason"):
                                finish = choice["finish_reason"]
                    else:
                        # The body ended without [DONE]: the stream was cut off, not finished.
                        raise ProviderError(self.name, "connection", "stream ended before [DONE]")
                except (orjson.JSONDecodeError, AttributeError, TypeError) as exc:
                    raise ProviderError(self.name, "malformed", "stream chunk is not valid JSON") from exc
        except ProviderError as exc:
            # However it ended after text was sent (cut off, a bad chunk, or a timeout or connection error
            # that _exchange raises as the body is read), the upstream billed the prompt and that text.
            if parts:
                exc.partial = priced_call(self.name, self._prices, request, "".join(parts), usage, "error", started)
            raise
        yield priced_call(self.name, self._prices, request, "".join(parts), usage, finish, started)
