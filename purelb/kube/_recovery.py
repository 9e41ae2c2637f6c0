"""What a reflector does after each watch outcome: the retry policy, without I/O.

The reflector reports outcomes (a watch ended, the version expired, a request failed, a
relist succeeded); :class:`WatchRecovery` answers with a :class:`Step` — how long to wait
and whether the next attempt must be a relist. Kept apart so every branch is
table-tested without a server or a clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ._backoff import Backoff
from ._errors import Gone, KubeApiError, TooManyRequests


@dataclass(frozen=True, slots=True)
class Step:
    """The next move: sleep ``delay_s``, then relist (``relist``) or watch again."""

    delay_s: float
    relist: bool


def version_too_large(exc: KubeApiError) -> bool:
    """Whether the server said our resourceVersion is ahead of it (504 with cause
    ``ResourceVersionTooLarge``): only a relist can fix that."""
    status: dict[str, Any] = exc.status or {}
    details = status.get("details")
    causes = details.get("causes") if isinstance(details, dict) else None
    return isinstance(causes, list) and any(
        isinstance(c, dict) and c.get("reason") == "ResourceVersionTooLarge" for c in causes)


class WatchRecovery:
    """Retry state of one reflector.

    Rules:
    * a healthy watch end resets everything and re-watches at once;
    * a watch that ended at once with no events counts as a failure (no spinning);
    * 410 Gone relists — at once the first time, with backoff if it repeats;
    * other failures back off (at least ``Retry-After`` for 429) and retry the watch from
      the same version, until ``relist_after`` failures in a row or a
      "version too large" answer, which relist;
    * a failed relist stays a relist.
    """

    def __init__(self, backoff: Backoff, *, relist_after: int, retry_after_cap_s: float) -> None:
        self._backoff = backoff
        self._relist_after = relist_after
        self._retry_after_cap_s = retry_after_cap_s
        self.failures = 0
        """Failures since the last healthy watch or successful relist."""
        self.gone_in_a_row = 0
        self.need_relist = False

    def __repr__(self) -> str:
        return (f"WatchRecovery(failures={self.failures}, gone_in_a_row={self.gone_in_a_row}, "
                f"need_relist={self.need_relist})")

    def relisted(self) -> None:
        """A relist succeeded: the version is fresh again."""
        self.need_relist = False
        self.failures = 0

    def watch_ended(self, *, healthy: bool) -> Step:
        """The server ended a watch normally (timeout, dropped connection, deadline)."""
        self.gone_in_a_row = 0
        if healthy:
            self.failures = 0
            self._backoff.reset()
            return Step(0.0, self.need_relist)
        self.failures += 1
        return Step(self._backoff.next_delay(), self._decide_relist(None))

    def failed(self, exc: KubeApiError) -> Step:
        """A list or watch request failed with ``exc``."""
        if isinstance(exc, Gone):
            self.gone_in_a_row += 1
            self.need_relist = True
            delay = 0.0 if self.gone_in_a_row == 1 else self._backoff.next_delay()
            return Step(delay, True)
        self.failures += 1
        delay = self._backoff.next_delay()
        if isinstance(exc, TooManyRequests) and exc.retry_after_s is not None:
            delay = max(delay, min(exc.retry_after_s, self._retry_after_cap_s))
        return Step(delay, self._decide_relist(exc))

    def _decide_relist(self, exc: KubeApiError | None) -> bool:
        if not self.need_relist and (
                (exc is not None and version_too_large(exc))
                or self.failures >= self._relist_after):
            self.need_relist = True
        return self.need_relist
