import random

import pytest
import trio

from purelb.controllers.supervisor import Backoff
from purelb.controllers.workqueue import ShutDown, WorkQueue


async def test_burst_of_adds_is_processed_once():
    q: WorkQueue[str] = WorkQueue()
    for _ in range(50):
        q.add("ns/web")
    q.add("ns/db")
    assert len(q) == 2
    assert await q.get() == "ns/web"
    assert await q.get() == "ns/db"
    assert len(q) == 0


async def test_change_during_processing_requeues_after_done():
    q: WorkQueue[str] = WorkQueue()
    q.add("a")
    key = await q.get()
    q.add("a")  # changed while a worker holds it: not handed to a second worker
    assert len(q) == 0
    q.done(key)
    assert len(q) == 1 and await q.get() == "a"


async def test_delayed_and_retried_keys_come_back_in_time(autojump_clock):
    q: WorkQueue[str] = WorkQueue(
        backoff=Backoff(initial_s=1, factor=2, cap_s=8), rng=random.Random(0)
    )
    q.add_after("late", 5)
    q.add("now")
    assert await q.get() == "now"
    q.done("now")
    start = trio.current_time()
    assert await q.get() == "late"
    assert trio.current_time() - start == pytest.approx(5)
    delays = [q.retry("late") for _ in range(5)]
    assert all(0 <= d <= cap for d, cap in zip(delays, [1, 2, 4, 8, 8], strict=True))
    assert q.failures("late") == 5
    q.forget("late")
    assert q.failures("late") == 0


async def test_shutdown_wakes_waiters():
    q: WorkQueue[str] = WorkQueue()
    async with trio.open_nursery() as nursery:

        async def waiter():
            with pytest.raises(ShutDown):
                await q.get()

        nursery.start_soon(waiter)
        await trio.testing.wait_all_tasks_blocked()
        q.shut_down()
