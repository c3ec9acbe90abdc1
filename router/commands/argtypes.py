"""argparse types shared by the subcommands (argparse names the option when one rejects a value)."""

from __future__ import annotations


def port_number(text: str) -> int:
    """A TCP port to listen on: an integer 1..65535."""
    port = int(text)
    if not 1 <= port <= 65535:
        raise ValueError(text)
    return port
