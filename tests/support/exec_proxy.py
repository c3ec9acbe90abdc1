"""A TCP proxy in front of a real Redis that stalls or drops the reply to the next transaction (MULTI/EXEC),
letting through at once whatever the client asks before it (such as redis-py's SCRIPT EXISTS before a
pipeline that runs a registered script): Redis applies the transaction, the client never hears so."""

from __future__ import annotations

import asyncio
from contextlib import suppress

from tests.support.slow_proxy import SlowProxy


class ExecReplyProxy(SlowProxy):
    """`hold_reply_to_next_exec(s)`: the reply comes after `s` seconds (past the client's socket timeout);
    `drop_reply_to_next_exec()`: the connection closes instead (redis-py then retries on a new one)."""

    def __init__(self, upstream_url: str) -> None:
        super().__init__(upstream_url)
        self._exec_hold_s = 0.0
        self._drop_after_exec = False
        self._dropping = False

    def hold_reply_to_next_exec(self, seconds: float) -> None:
        self._exec_hold_s = seconds

    def drop_reply_to_next_exec(self) -> None:
        self._drop_after_exec = True

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, replies: bool) -> None:
        if replies:
            await self._pump_replies(reader, writer)
            return
        with suppress(OSError):
            while data := await reader.read(65536):
                if b"EXEC\r\n" in data:
                    # Armed before the commands go on, so the first reply read after them is the one held.
                    if self._exec_hold_s:
                        self.hold_next_reply(self._exec_hold_s)
                        self._exec_hold_s = 0.0
                    if self._drop_after_exec:
                        self._dropping, self._drop_after_exec = True, False
                writer.write(data)
                await writer.drain()
        writer.close()

    async def _pump_replies(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with suppress(OSError):
            while True:
                data = await reader.read(65536)
                if self._dropping:
                    self._dropping = False
                    break  # the reply is lost with the connection
                if not data:
                    break
                if self._hold_s:
                    hold, self._hold_s = self._hold_s, 0.0
                    await asyncio.sleep(hold)
                writer.write(data)
                await writer.drain()
        writer.close()
