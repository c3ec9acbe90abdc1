"""argparse types shared by the subcommands (argparse names the option when one rejects a value)."""

from __future__ import annotations

import argparse


def int_within(text: str, low: int, high: int) -> int:
    """`text` as an integer low..high, or an argparse error that says so."""
    try:
        value = int(text)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise argparse.ArgumentTypeError(f"expected a whole number from {low} to {high}, got {text!r}")
    return value


def port_number(text: str) -> int:
    """A TCP port to listen on."""
    return int_within(text, 1, 65535)
