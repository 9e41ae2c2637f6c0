"""A keyed, deduplicating work queue for level-triggered reconcilers (client-go's shape).

Why this shape: a burst of watch events for one Service must cause one reconcile, not
fifty; a key is never processed by two workers at once; a key that changes while being
processed is processed again afterwards; a failing key is retried with per-key backoff
without delaying the others. Every method except ``get`` is sync-coloured, so no other
task can observe a half-applied update.
"""

from __future__ import annotations

import heapq
import math
import random
from collections import deque
from collections.abc import Hashable
from typing import Generic, TypeVar

import trio

from purelb.controllers.supervisor import Backoff

K = TypeVar("K", bound=Hashable)

#: retry schedule for keys whose reconcile failed transiently (409 storms, 5xx, timeouts)
RETRY_BACKOFF = Backoff(initial_s=0.05, factor=2.0, cap_s=30.0, reset_after_s=300.0)


class ShutDown(Exception):
    """``get`` was called on (or was waiting in) a queue that has been shut down."""


class WorkQueue(Generic[K]):
    def __init__(
        self, *, backoff: Backoff = RETRY_BACKOFF, rng: random.Random | None = None
    ) -> None:
        self._queue: deque[K] = deque()
        self._queued: set[K] = set()  # in _queue, not yet handed out
        self._processing: set[K] = set()
        self._dirty: set[K] = set()  # changed while processing: requeue on done()
        self._delayed: list[tuple[float, int, K]] = []  # heap of (due time, seq, key)
        self._seq = 0
        self._failures: dict[K, int] = {}
        self._backoff = backoff
        self._rng = rng or random.Random()
        self._waiting = trio.lowlevel.ParkingLot()  # workers in get() with nothing to take
        self._shut_down = False

    def __len__(self) -> int:
        return len(self._queue)

    def add(self, key: K) -> None:
        """Make sure ``key`` is processed (once) after now."""
        if self._shut_down:
            return
        if key in self._processing:
            self._dirty.add(key)
        elif key not in self._queued:
            self._queued.add(key)
            self._queue.append(key)
            self._waiting.unpark(count=1)  # one key, one worker

    def add_after(self, key: K, delay_s: float) -> None:
        """Add ``key`` once ``delay_s`` seconds have passed."""
        if delay_s <= 0:
            self.add(key)
            return
        self._seq += 1
        heapq.heappush(self._delayed, (trio.current_time() + delay_s, self._seq, key))
        # every waiting worker re-parks with the new earliest deadline, so whichever is
        # left waiting promotes the key on time (retries are rare: the herd is cheap)
        self._waiting.unpark_all()

    def retry(self, key: K) -> float:
        """Re-add a key whose processing failed, after its per-key backoff; returns the delay."""
        failures = self._failures.get(key, 0) + 1
        self._failures[key] = failures
        delay = self._backoff.delay(failures, self._rng)
        self.add_after(key, delay)
        return delay

    def forget(self, key: K) -> None:
        """The key succeeded: its next failure starts the backoff from the beginning."""
        self._failures.pop(key, None)

    def failures(self, key: K) -> int:
        return self._failures.get(key, 0)

    async def get(self) -> K:
        """Wait for the next key; the caller must call ``done(key)`` when finished."""
        while True:
            if self._shut_down:
                raise ShutDown("the work queue was shut down")
            self._promote_due()
            if self._queue:
                key = self._queue.popleft()
                self._queued.discard(key)
                self._processing.add(key)
                return key
            with trio.move_on_at(self._delayed[0][0] if self._delayed else math.inf):
                await self._waiting.park()

    def done(self, key: K) -> None:
        """Processing of ``key`` ended; if it changed meanwhile, queue it again."""
        self._processing.discard(key)
        if key in self._dirty:
            self._dirty.discard(key)
            self.add(key)

    def shut_down(self) -> None:
        """Wake every waiting ``get`` with ``ShutDown``; later adds are ignored."""
        self._shut_down = True
        self._waiting.unpark_all()

    def _promote_due(self) -> None:
        now = trio.current_time()
        while self._delayed and self._delayed[0][0] <= now:
            _, _, key = heapq.heappop(self._delayed)
            self.add(key)
