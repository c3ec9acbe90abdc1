"""Run the simulator in-process, on loopback, in a background thread with its own event loop."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from types import TracebackType
from typing import TYPE_CHECKING

from router.simulator.fleet import FleetConfig
from router.simulator.server import create_simulator_app, quiet_deliberate_drops
from router.simulator.state import SimulatorState

if TYPE_CHECKING:
    import uvicorn
    from starlette.applications import Starlette

_READY_TIMEOUT_S = 10.0
_STOP_TIMEOUT_S = 10.0


class SimulatorServer:
    """A simulated provider fleet served over real HTTP for the demo, tests and benchmarks.

    >>> with SimulatorServer(fleet) as sim:
    ...     client = openai.OpenAI(base_url=sim.base_url, api_key="x")  # http://127.0.0.1:PORT/v1

    `state` belongs to the server's event loop: read it for assertions only; change behaviour
    through the HTTP control endpoints (`/_sim/models/{name}`, `/_sim/reset`).
    """

    def __init__(self, fleet: FleetConfig, host: str = "127.0.0.1", port: int = 0) -> None:
        self.fleet = fleet
        self.host = host
        self.port = port
        self._requested_port = port
        self.app: Starlette = create_simulator_app(fleet)
        self.state: SimulatorState = self.app.state.sim
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._failure: BaseException | None = None

    @property
    def root_url(self) -> str:
        """`http://host:port`, where the /_sim control endpoints live."""
        if self._server is None:
            raise RuntimeError("the simulator is not running")
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """The OpenAI base URL, `http://host:port/v1`."""
        return f"{self.root_url}/v1"

    def start(self) -> str:
        """Start serving (port 0 picks a free port) and return the OpenAI base URL once ready."""
        import uvicorn

        if self._thread is not None:
            raise RuntimeError("the simulator is already running")
        config = uvicorn.Config(
            self.app,
            host=self.host,
            port=self._requested_port,
            lifespan="off",
            access_log=False,
            log_config=None,
            log_level="warning",
            timeout_graceful_shutdown=2,
        )
        quiet_deliberate_drops()
        self.state.hangs_released.clear()
        self._server = uvicorn.Server(config)
        self._failure = None
        self._thread = threading.Thread(target=self._run, args=(config,), name="moa-router-simulator", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + _READY_TIMEOUT_S
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self._thread.join(timeout=_STOP_TIMEOUT_S)
                self._thread, self._server = None, None
                raise RuntimeError(f"the simulator did not start on {self.host}:{self.port}") from self._failure
            time.sleep(0.002)
        self.port = self._server.servers[0].sockets[0].getsockname()[1]
        return self.base_url

    def _run(self, config: uvicorn.Config) -> None:
        try:
            with asyncio.Runner(loop_factory=config.get_loop_factory()) as runner:
                runner.run(self._serve())
        except BaseException as exc:  # reported by start(); a thread has no one else to tell
            self._failure = exc

    async def _serve(self) -> None:
        assert self._server is not None
        self._loop = asyncio.get_running_loop()
        await self._server.serve()

    def stop(self) -> None:
        """Stop serving: hanging calls are released, open streams finish, the thread ends."""
        server, thread, loop = self._server, self._thread, self._loop
        if server is None or thread is None:
            return
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop already ended: nothing hangs
                loop.call_soon_threadsafe(self.state.hangs_released.set)
        server.should_exit = True
        thread.join(timeout=_STOP_TIMEOUT_S)
        if thread.is_alive():
            server.force_exit = True
            thread.join(timeout=_STOP_TIMEOUT_S)
        self._server, self._thread, self._loop = None, None, None

    def __enter__(self) -> SimulatorServer:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
