"""Lifeguard suspicion timer math: a timeout that shrinks with independent confirmations.

A suspicion starts at ``max_s`` and, as k independent members confirm it, decays
logarithmically to ``min_s`` (memberlist's ``remainingSuspicionTime``): one accuser alone
(perhaps the slow one) waits long, a chorus of accusers converges fast.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


def suspicion_timeout(confirmations: int, wanted: int, min_s: float, max_s: float) -> float:
    """Total timeout after ``confirmations`` of the ``wanted`` confirmations arrived."""
    if wanted < 1:
        return min_s
    fraction = math.log(confirmations + 1) / math.log(wanted + 1)
    return max(min_s, max_s - fraction * (max_s - min_s))


@dataclass(slots=True)
class Suspicion:
    """One live suspicion: when it started, its bounds and who confirmed it."""

    incarnation: int
    start: float
    wanted: int
    min_s: float
    max_s: float
    accuser: str
    confirmers: set[str] = field(default_factory=set)

    @property
    def deadline(self) -> float:
        timeout = suspicion_timeout(len(self.confirmers), self.wanted, self.min_s, self.max_s)
        return self.start + timeout

    def confirm(self, source: str) -> bool:
        """Count an independent confirmation; False if ``source`` already counted or is
        the original accuser, or enough confirmations arrived already."""
        if source == self.accuser or source in self.confirmers:
            return False
        if len(self.confirmers) >= self.wanted:
            return False
        self.confirmers.add(source)
        return True
