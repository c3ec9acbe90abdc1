"""Background tasks stop at shutdown even when one swallows its cancellation."""

from __future__ import annotations

import asyncio

from router.tasks import cancel_and_wait


async def test_a_task_that_swallows_a_cancellation_is_cancelled_again() -> None:
    swallowed = 0

    async def poll_forever() -> None:
        nonlocal swallowed
        while True:
            try:
                await asyncio.sleep(0.01)
            except asyncio.CancelledError:
                if swallowed:
                    raise
                swallowed += 1  # as Python 3.11's asyncio.wait_for can when its operation just finished

    task = asyncio.create_task(poll_forever())
    await asyncio.sleep(0.02)
    await asyncio.wait_for(cancel_and_wait(task), 5)  # one cancel and a plain await would never return
    assert task.cancelled() and swallowed == 1


async def test_finished_and_failed_tasks_are_collected_without_raising() -> None:
    async def fail() -> None:
        raise ValueError("boom")

    done = asyncio.create_task(asyncio.sleep(0))
    failed = asyncio.create_task(fail())
    await asyncio.sleep(0.01)
    await cancel_and_wait(done, failed, asyncio.create_task(asyncio.sleep(10)))
    assert done.done() and failed.done()
