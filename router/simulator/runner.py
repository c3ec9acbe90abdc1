"""Run the simulator in-process, on loopback, in a background thread with its own event loop."""

from __future__ import annotations

import contextlib

from router.background_server import BackgroundServer
from router.simulator.fleet import FleetConfig
from router.simulator.server import create_simulator_app, quiet_deliberate_drops
from router.simulator.state import SimulatorState


class SimulatorServer(BackgroundServer):
    """A simulated provider fleet served over real HTTP for the demo, tests and benchmarks.

    >>> with SimulatorServer(fleet) as sim:
    ...     client = openai.OpenAI(base_url=sim.base_url, api_key="x")  # http://127.0.0.1:PORT/v1

    `state` belongs to the server's event loop: read it for assertions only; change behaviour
    through the HTTP control endpoints (`/_sim/models/{name}`, `/_sim/reset`).
    """

    def __init__(self, fleet: FleetConfig, host: str = "127.0.0.1", port: int = 0) -> None:
        self.fleet = fleet
        app = create_simulator_app(fleet)
        super().__init__(app, host, port, lifespan="off", graceful_s=2)
        self.state: SimulatorState = app.state.sim

    @property
    def root_url(self) -> str:
        """`http://host:port`, where the /_sim control endpoints live."""
        return self.url

    @property
    def base_url(self) -> str:
        """The OpenAI base URL, `http://host:port/v1`."""
        return f"{self.url}/v1"

    def start(self) -> str:
        """Start serving (port 0 picks a free port) and return the OpenAI base URL once ready."""
        quiet_deliberate_drops()
        self.state.hangs_released.clear()
        super().start()
        return self.base_url

    def stop(self) -> None:
        """Stop serving: hanging calls are released, open streams finish, the thread ends."""
        if self.loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop already ended: nothing hangs
                self.loop.call_soon_threadsafe(self.state.hangs_released.set)
        super().stop()
