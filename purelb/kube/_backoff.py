"""Named retry schedules: exponential backoff with a cap and full jitter.

The schedule is a frozen settings object plus a pure function; :class:`Backoff` only
remembers the attempt number. Randomness is injected so tests are deterministic.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from purelb.errors import ConfigError


@dataclass(frozen=True, slots=True, kw_only=True)
class BackoffSettings:
    """An exponential backoff schedule: ``min(cap_s, initial_s * factor**attempt)``, jittered."""

    initial_s: float = 0.5
    """First delay. 0.5 s gives a restarted API server time to bind without a thundering herd."""
    factor: float = 2.0
    """Growth per failed attempt; doubling reaches the cap in a few steps."""
    cap_s: float = 30.0
    """Longest delay. 30 s bounds how stale a cache stays after the API returns
    (client-go caps reflector backoff at 30 s)."""
    jitter: float = 0.5
    """Fraction of each delay that is random: delay * (1 - jitter + jitter * U[0,1)).
    Spreads reconnects of many agents after an API outage."""

    def __post_init__(self) -> None:
        if not self.initial_s > 0:
            raise ConfigError(f"backoff initial_s must be > 0, got {self.initial_s}",
                              path="initial_s", value=self.initial_s)
        if not self.factor >= 1:
            raise ConfigError(f"backoff factor must be >= 1, got {self.factor}",
                              path="factor", value=self.factor)
        if not self.cap_s >= self.initial_s:
            raise ConfigError(
                f"backoff cap_s ({self.cap_s}) must be >= initial_s ({self.initial_s})",
                path="cap_s", value=self.cap_s,
            )
        if not 0 <= self.jitter <= 1:
            raise ConfigError(f"backoff jitter must be in [0, 1], got {self.jitter}",
                              path="jitter", value=self.jitter)


DEFAULT_BACKOFF = BackoffSettings()


def backoff_delay(settings: BackoffSettings, attempt: int, unit_random: float) -> float:
    """Delay before retry number ``attempt`` (0-based); ``unit_random`` is in [0, 1)."""
    if attempt < 0:
        raise ValueError(f"attempt must be >= 0, got {attempt}")
    # Cap the exponent so huge attempt counts cannot overflow a float.
    raw = settings.initial_s * settings.factor ** min(attempt, 64)
    base = min(settings.cap_s, raw)
    return base * (1.0 - settings.jitter + settings.jitter * unit_random)


class Backoff:
    """Stateful walk through a :class:`BackoffSettings` schedule."""

    def __init__(self, settings: BackoffSettings = DEFAULT_BACKOFF, *,
                 rng: random.Random | None = None) -> None:
        self.settings = settings
        self.attempt = 0
        self._rng = rng if rng is not None else random.Random()

    def next_delay(self) -> float:
        """Return the next delay and advance the attempt counter."""
        delay = backoff_delay(self.settings, self.attempt, self._rng.random())
        self.attempt += 1
        return delay

    def reset(self) -> None:
        """Start again from ``initial_s`` (call after a success)."""
        self.attempt = 0

    def __repr__(self) -> str:
        return f"Backoff(attempt={self.attempt}, {self.settings!r})"
