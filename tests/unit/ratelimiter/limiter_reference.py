"""A naive, obviously-right model of one limit, to check the real algorithms against.

It keeps every admitted hit forever and answers each question by brute force: counts
by summing, the estimate with exact fractions, and "when will it fit" by searching the
(monotone) future rather than by formula.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction


@dataclass
class Reference:
    amount: int
    window_ms: int
    exact: bool
    hits: list[tuple[int, int]] = field(default_factory=list)

    def load(self, at_ms: int) -> Fraction:
        """Units counted at ``at_ms``, assuming no hit after ``now``."""
        if self.exact:
            return Fraction(sum(c for t, c in self.hits if at_ms - self.window_ms < t <= at_ms))
        start = at_ms // self.window_ms * self.window_ms
        current = sum(c for t, c in self.hits if start <= t <= at_ms)
        previous = sum(c for t, c in self.hits if start - self.window_ms <= t < start)
        elapsed = at_ms - start
        return Fraction(previous * (self.window_ms - elapsed), self.window_ms) + current

    def fits(self, at_ms: int, cost: int) -> bool:
        return self.load(at_ms) + cost <= self.amount

    def remaining(self, now_ms: int) -> int:
        return max(math.floor(self.amount - self.load(now_ms)), 0)

    def retry_ms(self, now_ms: int, cost: int) -> int:
        if self.fits(now_ms, cost):
            return 0
        if cost > self.amount:
            return self.window_ms
        return self._first(now_ms, lambda at: self.fits(at, cost)) - now_ms

    def reset_ms(self, now_ms: int) -> int:
        return self._first(now_ms, lambda at: self.load(at) == 0)

    def add(self, now_ms: int, cost: int) -> None:
        self.hits.append((now_ms, cost))

    def _first(self, now_ms: int, ok: Callable[[int], bool]) -> int:
        """The first instant from ``now_ms`` on where ``ok`` holds (it stays true after)."""
        low, high = now_ms, now_ms + 2 * self.window_ms
        assert ok(high)
        while low < high:
            middle = (low + high) // 2
            if ok(middle):
                high = middle
            else:
                low = middle + 1
        return low
