"""The switch of the optional C extensions (setup.py): they are used when built, unless the environment
says MOA_ROUTER_NATIVE=0. Both compute exactly what the Python implementations compute, so the switch
is for measuring them side by side and for ruling them out when investigating."""

from __future__ import annotations

import os

_OFF = {"0", "false", "no", "off"}


def native_requested() -> bool:
    """False when MOA_ROUTER_NATIVE is 0 / false / no / off."""
    return os.environ.get("MOA_ROUTER_NATIVE", "1").strip().lower() not in _OFF
