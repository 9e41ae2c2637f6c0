import random

import pytest
import trio

from purelb.controllers.supervisor import Backoff, supervise
from purelb.errors import ConfigError


def test_backoff_grows_to_cap_with_jitter():
    b = Backoff(initial_s=1, factor=2, cap_s=5)
    rng = random.Random(1)
    bounds = [1, 2, 4, 5, 5]
    for n, bound in enumerate(bounds, start=1):
        for _ in range(50):
            assert 0 <= b.delay(n, rng) <= bound


def test_backoff_rejects_nonsense():
    with pytest.raises(ConfigError, match="initial_s"):
        Backoff(initial_s=0)


async def test_restarts_after_failure_and_reports_ready_once(autojump_clock):
    runs = []

    async def job(*, task_status):
        runs.append(trio.current_time())
        task_status.started(len(runs))
        if len(runs) < 3:
            raise RuntimeError("watch dropped")
        await trio.sleep_forever()

    async with trio.open_nursery() as nursery:
        value = await nursery.start(supervise, "job", job)
        assert value == 1
        await trio.sleep(100)
        assert len(runs) == 3
        nursery.cancel_scope.cancel()


async def test_failure_before_ready_is_retried_until_ready(autojump_clock):
    attempts = 0

    async def job(*, task_status):
        nonlocal attempts
        attempts += 1
        if attempts < 4:
            raise OSError("api server unreachable")
        task_status.started("up")

    async with trio.open_nursery() as nursery:
        assert await nursery.start(supervise, "job", job) == "up"
    assert attempts == 4


async def test_cancellation_is_not_swallowed(autojump_clock):
    async def job(*, task_status):
        task_status.started()
        await trio.sleep_forever()

    with trio.move_on_after(5) as scope:
        async with trio.open_nursery() as nursery:
            await nursery.start(supervise, "job", job)
    assert scope.cancelled_caught
