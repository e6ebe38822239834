"""Small asyncio helpers the long-running tasks share."""

from __future__ import annotations

import asyncio


async def wait_event(event: asyncio.Event, timeout: float | None) -> bool:
    """Wait until ``event`` is set or ``timeout`` seconds pass; True if it was set.

    Not ``asyncio.wait_for``: on Python 3.11 a task cancelled in the same loop step as the event is set
    comes out of ``wait_for`` normally and the cancellation is lost, so a worker told to stop goes on
    running (a stop then hangs). ``asyncio.timeout`` tells its own timeout from a cancellation."""
    try:
        async with asyncio.timeout(timeout):
            await event.wait()
    except TimeoutError:
        return False
    return True
