"""A worker told to stop stops, even when it is woken in the same moment."""

from __future__ import annotations

import asyncio

import pytest

from bot.aio import wait_event


async def worker(event: asyncio.Event) -> None:
    while True:  # like the outbox: wait for a wake-up or the idle poll, then look again
        await wait_event(event, 60)
        event.clear()


@pytest.mark.parametrize("steps_between", range(6))
async def test_a_worker_cancelled_as_it_is_woken_stops(steps_between: int) -> None:
    event = asyncio.Event()
    task = asyncio.create_task(worker(event))
    await asyncio.sleep(0)  # the worker is waiting
    event.set()
    for _ in range(steps_between):  # the cancel lands at each point of the wake-up
        await asyncio.sleep(0)
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=2)
    assert done, "the worker went on after being cancelled"
    assert task.cancelled()


async def test_wait_event_says_whether_the_event_came() -> None:
    event = asyncio.Event()
    assert await wait_event(event, 0.01) is False
    event.set()
    assert await wait_event(event, 0.01) is True
