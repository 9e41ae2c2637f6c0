"""Fault injection for tests: off by default, switched on per test through the fixture.

Faults are what a real cluster does to its clients now and then: watch streams that end,
410 Gone for a resourceVersion that was compacted, 409/429/500 replies (429 with
Retry-After), and slow replies. A client that survives these here survives them there.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import trio


@dataclass(slots=True)
class _Rule:
    status: int
    method: str | None
    path_regex: re.Pattern[str] | None
    remaining: int
    retry_after: int | None

    def matches(self, method: str, target: str) -> bool:
        if self.method is not None and self.method.upper() != method.upper():
            return False
        return self.path_regex is None or self.path_regex.search(target) is not None


@dataclass(slots=True)
class Injected:
    """A canned error reply chosen by a rule."""

    status: int
    retry_after: int | None


class FaultInjector:
    """The switches (see module docstring); all methods are sync and take effect at once."""

    def __init__(self) -> None:
        self._rules: list[_Rule] = []
        self._latency: list[tuple[float, re.Pattern[str] | None]] = []
        self._expire_next = 0
        self._watch_scopes: set[trio.CancelScope] = set()
        self._watch_opened = trio.Event()
        self.dropped_watches = 0

    def __repr__(self) -> str:
        return (f"FaultInjector(rules={len(self._rules)}, latency={len(self._latency)}, "
                f"expire_next={self._expire_next}, open_watches={len(self._watch_scopes)})")

    # ---- switches --------------------------------------------------------------------
    def drop_watches(self) -> int:
        """End every open watch stream now, cleanly (a terminated chunked body)."""
        n = len(self._watch_scopes)
        for scope in list(self._watch_scopes):
            scope.cancel()
        self.dropped_watches += n
        return n

    def expire_next_watch(self, count: int = 1) -> None:
        """The next ``count`` watch requests get a 410 Gone ERROR event, then the stream ends."""
        if count < 0:
            raise ValueError(f"count must be >= 0, got {count}")
        self._expire_next += count

    def respond(
        self,
        status: int,
        *,
        method: str | None = None,
        path_regex: str | None = None,
        count: int = 1,
        retry_after: int | None = None,
    ) -> None:
        """Answer the next ``count`` matching requests with a Status of code ``status``.

        ``method`` matches the HTTP method (any when None); ``path_regex`` is searched
        (``re.search``) in the raw request target, path *and* query string, so
        ``r"watch=true"`` or ``r"/services/web$"`` both work. Rules are tried in the order
        they were added; the first match is used up.
        """
        if not 400 <= status <= 599:
            raise ValueError(f"status must be an HTTP error code (400-599), got {status}")
        if count < 1:
            raise ValueError(f"count must be >= 1, got {count}")
        rx = re.compile(path_regex) if path_regex is not None else None
        self._rules.append(_Rule(status, method, rx, count, retry_after))

    def latency(self, seconds: float, *, path_regex: str | None = None) -> None:
        """Delay every matching request by ``seconds`` before handling it."""
        if seconds < 0:
            raise ValueError(f"seconds must be >= 0, got {seconds}")
        rx = re.compile(path_regex) if path_regex is not None else None
        self._latency.append((seconds, rx))

    def clear(self) -> None:
        """Switch every fault off (open watches stay open)."""
        self._rules.clear()
        self._latency.clear()
        self._expire_next = 0

    # ---- hooks the server calls ------------------------------------------------------
    def delay_for(self, target: str) -> float:
        return sum(s for s, rx in self._latency if rx is None or rx.search(target))

    def injected(self, method: str, target: str) -> Injected | None:
        for rule in self._rules:
            if rule.matches(method, target):
                rule.remaining -= 1
                if rule.remaining <= 0:
                    self._rules.remove(rule)
                return Injected(rule.status, rule.retry_after)
        return None

    def take_expire(self) -> bool:
        if self._expire_next > 0:
            self._expire_next -= 1
            return True
        return False

    def register_watch(self, scope: trio.CancelScope) -> None:
        self._watch_scopes.add(scope)
        self._watches_changed()

    def _watches_changed(self) -> None:
        self._watch_opened.set()
        self._watch_opened = trio.Event()

    async def wait_open_watches(self, count: int = 1) -> None:
        """Return once at least ``count`` watch streams are open (for test ordering)."""
        while len(self._watch_scopes) < count:
            await self._watch_opened.wait()

    async def wait_watches_at_most(self, count: int = 0) -> None:
        """Return once at most ``count`` watch streams are open (e.g. all were released)."""
        while len(self._watch_scopes) > count:
            await self._watch_opened.wait()

    def unregister_watch(self, scope: trio.CancelScope) -> None:
        self._watch_scopes.discard(scope)
        self._watches_changed()

    @property
    def open_watches(self) -> int:
        return len(self._watch_scopes)
