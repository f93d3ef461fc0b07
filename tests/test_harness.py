"""The test harness's own background-task helper: CI once hung for two minutes on a query
loop whose cancel dnspython's `wait_for` swallowed (Python 3.11)."""

from __future__ import annotations

import asyncio

import pytest

from tests.daemon_harness import background, stop_task


async def test_background_ends_a_loop_that_swallows_its_cancel():
    rounds = 0

    async def stubborn(stop: asyncio.Event) -> None:
        nonlocal rounds
        while not stop.is_set():
            rounds += 1
            try:
                await asyncio.sleep(0.01)
            except asyncio.CancelledError:
                pass  # what a lost cancel looks like from the loop's side

    async with asyncio.timeout(10):
        async with background(stubborn):
            while rounds < 3:
                await asyncio.sleep(0.01)
    assert rounds >= 3


async def test_background_raises_the_loops_error():
    async def broken(stop: asyncio.Event) -> None:
        raise ValueError("the loop's own failure")

    with pytest.raises(ValueError, match="own failure"):
        async with background(broken):
            await asyncio.sleep(0)


async def test_stop_task_does_not_swallow_a_cancel_of_its_caller():
    done, refused_twice = asyncio.Event(), asyncio.Event()
    refused = 0

    async def deaf() -> None:
        nonlocal refused
        while not done.is_set():
            try:
                await asyncio.sleep(0.01)
            except asyncio.CancelledError:
                refused += 1  # deaf to cancels until `done`
                if refused == 2:
                    refused_twice.set()

    inner = asyncio.create_task(deaf())
    outer = asyncio.create_task(stop_task(inner))
    await refused_twice.wait()  # stop_task has cancelled again after a lost cancel
    assert not outer.done()  # still trying to stop the deaf task
    outer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await outer
    done.set()
    await inner
