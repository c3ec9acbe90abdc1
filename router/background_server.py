"""Serve an ASGI app with uvicorn on loopback in a background thread with its own event loop.

Used for the in-process simulator of the demo, and by tests and benchmarks to run the real service
over real HTTP.
"""

from __future__ import annotations

import asyncio
import threading
import time
from types import TracebackType
from typing import Any, Literal, Self

_READY_TIMEOUT_S = 30.0
_STOP_TIMEOUT_S = 30.0


class BackgroundServer:
    def __init__(
        self,
        app: Any,
        host: str = "127.0.0.1",
        port: int = 0,
        lifespan: Literal["on", "off"] = "on",
        graceful_s: float = 5.0,
    ) -> None:
        self.app = app
        self.host = host
        self.port = port
        self._requested_port = port
        self._lifespan = lifespan
        self._graceful_s = graceful_s
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self._failure: BaseException | None = None

    @property
    def url(self) -> str:
        """`http://host:port` while serving."""
        if self._server is None:
            raise RuntimeError("the server is not running")
        return f"http://{self.host}:{self.port}"

    def start(self) -> str:
        import uvicorn

        if self._thread is not None:
            raise RuntimeError("the server is already running")
        config = uvicorn.Config(
            self.app,
            host=self.host,
            port=self._requested_port,
            lifespan=self._lifespan,
            access_log=False,
            log_config=None,
            log_level="warning",
            timeout_graceful_shutdown=int(self._graceful_s) or 1,
        )
        self._server = uvicorn.Server(config)
        self._failure = None
        self._thread = threading.Thread(target=self._run, args=(config,), name="moa-background-server", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + _READY_TIMEOUT_S
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self._thread.join(timeout=_STOP_TIMEOUT_S)
                self._thread, self._server = None, None
                raise RuntimeError(f"server did not start on {self.host}") from self._failure
            time.sleep(0.002)
        self.port = self._server.servers[0].sockets[0].getsockname()[1]
        return self.url

    def _run(self, config: Any) -> None:
        try:
            with asyncio.Runner(loop_factory=config.get_loop_factory()) as runner:
                runner.run(self._serve())
        except BaseException as exc:  # reported by start(); a thread has no one else to tell
            self._failure = exc

    async def _serve(self) -> None:
        self.loop = asyncio.get_running_loop()
        await self._server.serve()

    def stop(self) -> None:
        """A normal shutdown: stop accepting, let in-flight requests finish, run the app's shutdown."""
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        server.should_exit = True
        thread.join(timeout=_STOP_TIMEOUT_S)
        if thread.is_alive():
            server.force_exit = True
            thread.join(timeout=_STOP_TIMEOUT_S)
        self._server, self._thread, self.loop = None, None, None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
