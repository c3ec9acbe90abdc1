"""Stopping background tasks at shutdown so that they really stop."""

from __future__ import annotations

import asyncio
from typing import Any

# How often a task that swallowed its cancellation is cancelled again.
_RECANCEL_S = 0.1


async def cancel_and_wait(*tasks: asyncio.Task[Any]) -> None:
    """Cancel the tasks and wait until each has ended, whatever it raised.

    One cancel is not always enough on Python 3.11: asyncio.wait_for, which redis-py uses for socket
    timeouts, swallows a cancellation that lands as its operation completes (CPython gh-86296, fixed in
    3.12), and a polling loop then goes on for ever, hanging the app's shutdown before the outcome log
    is flushed. So a task still running is cancelled again until it ends.
    """
    pending = {task for task in tasks if not task.done()}
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=_RECANCEL_S)
    await asyncio.gather(*tasks, return_exceptions=True)  # collects their exceptions (none is raised here)
