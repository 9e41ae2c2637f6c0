"""A client-side token bucket (QPS with a burst), driven by trio's clock.

Like client-go's default limiter, it protects the API server from a purelb bug or a
storm of reconciles. Callers reserve a token and sleep until it is theirs, so waiting
callers are served in arrival order without a lock.
"""

from __future__ import annotations

from dataclasses import dataclass

import trio

from purelb.errors import ConfigError


@dataclass(frozen=True, slots=True, kw_only=True)
class RateLimitSettings:
    """Token bucket parameters."""

    qps: float = 50.0
    """Sustained requests per second. 50 is client-go's default for controllers since
    Kubernetes 1.27; purelb's steady state is far below it."""
    burst: int = 100
    """Requests allowed at once after an idle period (client-go default 100), so a startup
    list of every resource is not throttled."""

    def __post_init__(self) -> None:
        if not self.qps > 0:
            raise ConfigError(f"rate limit qps must be > 0, got {self.qps}", path="qps",
                              value=self.qps)
        if not isinstance(self.burst, int) or self.burst < 1:
            raise ConfigError(f"rate limit burst must be an int >= 1, got {self.burst!r}",
                              path="burst", value=self.burst)


DEFAULT_RATE_LIMIT = RateLimitSettings()


def reserve(
    tokens: float, last: float, now: float, settings: RateLimitSettings
) -> tuple[float, float]:
    """Pure bucket step: refill since ``last``, take one token.

    Returns ``(tokens_after, wait_seconds)``. ``tokens_after`` may be negative: that debt
    is what later callers wait for.
    """
    tokens = min(float(settings.burst), tokens + (now - last) * settings.qps)
    tokens -= 1.0
    wait = 0.0 if tokens >= 0 else -tokens / settings.qps
    return tokens, wait


class RateLimiter:
    """``await limiter.acquire()`` before each request."""

    def __init__(self, settings: RateLimitSettings = DEFAULT_RATE_LIMIT) -> None:
        self.settings = settings
        self._tokens = float(settings.burst)
        self._last: float | None = None
        self.waits = 0
        """How many acquisitions had to sleep (for metrics and tests)."""

    async def acquire(self) -> None:
        now = trio.current_time()
        if self._last is None:
            self._last = now
        self._tokens, wait = reserve(self._tokens, self._last, now, self.settings)
        self._last = now
        if wait > 0:
            self.waits += 1
            try:
                await trio.sleep(wait)
            except BaseException:
                self._tokens += 1.0  # give the reserved token back, then propagate
                raise
        else:
            await trio.lowlevel.checkpoint()

    def __repr__(self) -> str:
        return f"RateLimiter(qps={self.settings.qps}, burst={self.settings.burst})"
