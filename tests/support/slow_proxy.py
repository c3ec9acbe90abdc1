"""A TCP proxy in front of a real Redis that stalls one reply: a write Redis applied whose reply reaches
the client after its socket timeout."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress


class SlowProxy:
    """A TCP proxy in front of a real Redis that can hold Redis's next reply back (commands go through at
    once): Redis applies a write, but its reply reaches the client after the client's socket timeout."""

    def __init__(self, upstream_url: str) -> None:
        host_port = upstream_url.removeprefix("redis://").split("/", 1)[0]
        self._host, port = host_port.split(":")
        self._port = int(port)
        self._hold_s = 0.0
        self.url = ""
        self._tasks: set[asyncio.Task[None]] = set()

    def hold_next_reply(self, seconds: float) -> None:
        self._hold_s = seconds

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, replies: bool) -> None:
        with suppress(OSError):
            while data := await reader.read(65536):
                if replies and self._hold_s:
                    hold, self._hold_s = self._hold_s, 0.0  # one reply only: a stall, not an outage
                    await asyncio.sleep(hold)
                writer.write(data)
                await writer.drain()
        writer.close()

    async def _serve(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        reader, writer = await asyncio.open_connection(self._host, self._port)
        for task in (
            asyncio.create_task(self._pump(client_reader, writer, replies=False)),
            asyncio.create_task(self._pump(reader, client_writer, replies=True)),
        ):
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    @asynccontextmanager
    async def running(self) -> AsyncIterator[SlowProxy]:
        server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.url = f"redis://127.0.0.1:{server.sockets[0].getsockname()[1]}/0"
        try:
            yield self
        finally:
            server.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await server.wait_closed()
