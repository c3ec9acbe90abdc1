"""A simulated, OpenAI-compatible provider fleet served over loopback HTTP.

The demo, the tests and the benchmarks call it through the same code path as real providers.
"""

from router.simulator.fleet import FleetConfig, SimModel, default_fleet, demo_model_entries, load_fleet
from router.simulator.runner import SimulatorServer
from router.simulator.server import create_simulator_app

__all__ = [
    "FleetConfig",
    "SimModel",
    "SimulatorServer",
    "create_simulator_app",
    "default_fleet",
    "demo_model_entries",
    "load_fleet",
]
