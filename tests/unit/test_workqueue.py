import random

import pytest
import trio
import trio.testing

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


async def test_every_idle_worker_takes_a_key():
    """Workers that all went idle on an empty queue must each be woken for a new key.

    (Regression: waiters once shared one replaceable Event, so every worker but the last
    to wait was orphaned and a 16-worker allocator reconciled one Service at a time.)"""
    q: WorkQueue[int] = WorkQueue()
    workers = 8
    holding = 0
    most = 0
    release = trio.Event()
    all_holding = trio.Event()

    async def worker() -> None:
        nonlocal holding, most
        key = await q.get()
        holding += 1
        most = max(most, holding)
        if holding == workers:
            all_holding.set()
        await release.wait()
        q.done(key)

    async with trio.open_nursery() as nursery:
        for _ in range(workers):
            nursery.start_soon(worker)
        await trio.testing.wait_all_tasks_blocked()  # all parked on the empty queue
        for key in range(workers):
            q.add(key)
        with trio.move_on_after(5):
            await all_holding.wait()
        release.set()
    assert most == workers


async def test_delayed_key_is_promoted_while_other_workers_are_busy(autojump_clock):
    q: WorkQueue[str] = WorkQueue()
    got: list[tuple[str, float]] = []

    async def worker() -> None:
        while True:
            key = await q.get()
            got.append((key, trio.current_time()))
            q.done(key)

    async with trio.open_nursery() as nursery:
        for _ in range(3):
            nursery.start_soon(worker)
        await trio.testing.wait_all_tasks_blocked()
        q.add_after("later", 2.0)
        q.add_after("sooner", 1.0)
        q.add("now")
        await trio.sleep(3)
        nursery.cancel_scope.cancel()
    assert [k for k, _ in got] == ["now", "sooner", "later"]
    assert [round(t) for _, t in got] == [0, 1, 2]
