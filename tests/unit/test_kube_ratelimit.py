"""Client-side token bucket, on trio's MockClock."""

from __future__ import annotations

import pytest
import trio

from purelb.errors import ConfigError
from purelb.kube import RateLimiter, RateLimitSettings
from purelb.kube._ratelimit import reserve


async def test_rate_limiter_allows_a_burst_then_paces_at_qps(autojump_clock):
    limiter = RateLimiter(RateLimitSettings(qps=10.0, burst=5))
    start = trio.current_time()
    times = []
    for _ in range(15):
        await limiter.acquire()
        times.append(trio.current_time() - start)
    assert times[:5] == [0.0] * 5
    # then one every 0.1 s
    assert times[5:] == pytest.approx([0.1 * i for i in range(1, 11)])
    assert limiter.waits == 10


async def test_rate_limiter_refills_while_idle(autojump_clock):
    limiter = RateLimiter(RateLimitSettings(qps=2.0, burst=2))
    for _ in range(2):
        await limiter.acquire()
    await trio.sleep(10)  # idle: refills to burst, not beyond
    start = trio.current_time()
    for _ in range(3):
        await limiter.acquire()
    assert trio.current_time() - start == pytest.approx(0.5)


async def test_rate_limiter_serves_concurrent_callers_at_qps(autojump_clock):
    limiter = RateLimiter(RateLimitSettings(qps=4.0, burst=1))
    done = []

    async def caller(i):
        await limiter.acquire()
        done.append(trio.current_time())

    async with trio.open_nursery() as n:
        for i in range(5):
            n.start_soon(caller, i)
    assert sorted(done) == pytest.approx([0.0, 0.25, 0.5, 0.75, 1.0])


async def test_cancelled_waiter_returns_its_token(autojump_clock):
    limiter = RateLimiter(RateLimitSettings(qps=1.0, burst=1))
    await limiter.acquire()
    with trio.move_on_after(0.1):
        await limiter.acquire()  # would wait 1 s
    start = trio.current_time()
    await limiter.acquire()
    assert trio.current_time() - start == pytest.approx(0.9)


def test_reserve_is_pure_bucket_math():
    s = RateLimitSettings(qps=10.0, burst=3)
    assert reserve(3.0, 0.0, 0.0, s) == (2.0, 0.0)
    tokens, wait = reserve(0.0, 0.0, 0.0, s)
    assert tokens == -1.0 and wait == pytest.approx(0.1)
    assert reserve(0.0, 0.0, 100.0, s)[0] == 2.0  # capped at burst


@pytest.mark.parametrize(("kw", "field"), [({"qps": 0}, "qps"), ({"burst": 0}, "burst")])
def test_rate_limit_settings_validate(kw, field):
    with pytest.raises(ConfigError, match=field):
        RateLimitSettings(**kw)
