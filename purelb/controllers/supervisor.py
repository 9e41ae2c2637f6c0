"""Restart a long-lived task when it fails, with jittered exponential backoff.

A daemon is one nursery; each job (a reflector, the reconcile worker, the gossip member)
runs under ``supervise`` so one failing watch does not take the process down. Only
``Exception`` is caught: cancellation and ``KeyboardInterrupt`` propagate, so SIGTERM
still ends the daemon cleanly. A task that returns normally is done and not restarted.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import trio

from purelb.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class Backoff:
    """Exponential backoff with full jitter: delay = uniform(0, min(cap, initial * factor**n))."""

    initial_s: float = 0.2
    """First delay bound. Short, because most failures (a dropped watch) heal at once."""
    factor: float = 2.0
    """Growth per consecutive failure."""
    cap_s: float = 30.0
    """Longest delay bound: an API server outage is retried at least twice a minute."""
    reset_after_s: float = 60.0
    """A run that lasted this long counts as healthy: the next failure starts from ``initial_s``."""

    def __post_init__(self) -> None:
        if self.initial_s <= 0 or self.cap_s < self.initial_s or self.factor < 1:
            raise ConfigError(
                f"backoff needs 0 < initial_s <= cap_s and factor >= 1, got {self}", path="backoff"
            )

    def delay(self, failures: int, rng: random.Random) -> float:
        """Delay before retry number ``failures`` (1-based)."""
        bound = min(self.cap_s, self.initial_s * self.factor ** max(0, failures - 1))
        return rng.uniform(0, bound)


DEFAULT_BACKOFF = Backoff()


async def supervise(
    name: str,
    fn: Callable[..., Awaitable[Any]],
    *args: Any,
    backoff: Backoff = DEFAULT_BACKOFF,
    rng: random.Random | None = None,
    task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run ``fn(*args, task_status=...)`` until it returns, restarting it after failures.

    ``nursery.start(supervise, ...)`` returns once the first run called ``task_status.started``;
    later restarts are silent to the caller (their readiness is the task's own business).
    """
    rng = rng or random.Random()
    status = _ForwardOnce(task_status)
    failures = 0
    while True:
        began = trio.current_time()
        try:
            await fn(*args, task_status=status)
            return
        except Exception as exc:
            if trio.current_time() - began >= backoff.reset_after_s:
                failures = 0
            failures += 1
            delay = backoff.delay(failures, rng)
            log.warning(
                "task %s failed (%s: %s); restarting in %.2fs",
                name,
                type(exc).__name__,
                exc,
                delay,
                extra={"event": "task_restart", "task": name, "failures": failures},
                exc_info=log.isEnabledFor(logging.DEBUG),
            )
            await trio.sleep(delay)


class _ForwardOnce:
    """A task status that reports readiness to the caller on the first run only."""

    def __init__(self, outer: trio.TaskStatus[Any]) -> None:
        self._outer = outer
        self.done = False

    def started(self, value: Any = None) -> None:
        if not self.done:
            self.done = True
            self._outer.started(value)
