"""Runs `moa-router` with every outgoing socket connection recorded to the file named by
MOA_TEST_CONNECTIONS_LOG, to show that startup reaches nothing but configured upstreams and Redis."""

from __future__ import annotations

import os
import socket
import sys
from typing import Any

_log_path = os.environ["MOA_TEST_CONNECTIONS_LOG"]
_original_connect = socket.socket.connect
_original_connect_ex = socket.socket.connect_ex


def _record(address: Any) -> None:
    with open(_log_path, "a", encoding="utf-8") as log:
        log.write(f"{address!r}\n")


def _connect(self: socket.socket, address: Any) -> None:
    _record(address)
    _original_connect(self, address)


def _connect_ex(self: socket.socket, address: Any) -> int:
    _record(address)
    return _original_connect_ex(self, address)


socket.socket.connect = _connect  # type: ignore[method-assign]
socket.socket.connect_ex = _connect_ex  # type: ignore[method-assign]

from router.cli import main  # noqa: E402

sys.exit(main(sys.argv[1:]))
