"""The in-process store (``memory://``): thread-safe, and bounded by live windows.

Each key holds its counters ``(index, current, previous, elapsed)``, its sliding logs
(deques of unit timestamps) and the instant at which all of them will have expired. Expired keys
are evicted in sweeps that run once the table has doubled since the last one, so the
cost of eviction is spread over the inserts that made it necessary.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

from ratelimiter.backend import Check, Outcome
from ratelimiter.decision import LimitState
from ratelimiter.window import (
    CounterWindow,
    counter_add,
    counter_at,
    counter_remaining,
    counter_reset_ms,
    counter_retry_ms,
    log_cutoff_ms,
    log_remaining,
    log_reset_ms,
    log_retry_ms,
)

_MIN_SWEEP = 1024


class _Entry:
    """What one key holds; mutated only under the store's lock."""

    __slots__ = ("counters", "expires_ms", "logs")

    def __init__(self) -> None:
        self.counters: dict[str, CounterWindow] = {}
        self.logs: dict[str, deque[int]] = {}
        self.expires_ms = 0


class MemoryBackend:
    """Keeps every window in a dict under one lock; ``clock`` is read when no time is given."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: dict[str, _Entry] = {}
        self._sweep_at = _MIN_SWEEP

    def __len__(self) -> int:
        """Keys held, expired ones not yet swept included."""
        return len(self._entries)

    def decide(self, check: Check) -> Outcome:
        with self._lock:
            return self._decide(check)

    def reset(self, key: str) -> None:
        with self._lock:
            self._entries.pop(key, None)

    def close(self) -> None:
        with self._lock:
            self._entries.clear()

    def _decide(self, check: Check) -> Outcome:
        now_ms = round(self._clock() * 1000) if check.now_ms is None else check.now_ms
        key, limits, cost = check.key, check.limits, check.cost
        entry = self._entries.get(key)
        if entry is not None and entry.expires_ms <= now_ms:
            del self._entries[key]
            entry = None
        views: list[CounterWindow | deque[int]] = []
        retries: list[int] = []
        allowed = True
        for limit in limits:
            if limit.exact:
                units = _log(entry, limit.storage_id, now_ms, limit.window_ms)
                views.append(units)
                retry_ms = log_retry_ms(units, limit.amount, limit.window_ms, now_ms, cost)
            else:
                stored = None if entry is None else entry.counters.get(limit.storage_id)
                counter = counter_at(stored, now_ms, limit.window_ms)
                views.append(counter)
                retry_ms = counter_retry_ms(counter, limit.amount, limit.window_ms, cost)
            retries.append(retry_ms)
            if retry_ms:
                allowed = False
        counting = allowed and check.consume
        if counting:
            entry = self._entry(key, entry, now_ms)
        states: list[LimitState] = []
        for limit, view, retry_ms in zip(limits, views, retries, strict=True):
            if isinstance(view, deque):
                if counting:
                    assert entry is not None
                    entry.logs.setdefault(limit.storage_id, view).extend([now_ms] * cost)
                reset_ms = log_reset_ms(view[-1] if view else None, now_ms, limit.window_ms)
                remaining = log_remaining(len(view), limit.amount)
            else:
                if counting:
                    assert entry is not None
                    view = entry.counters[limit.storage_id] = counter_add(view, cost)
                reset_ms = counter_reset_ms(view, now_ms, limit.window_ms)
                remaining = counter_remaining(view, limit.amount, limit.window_ms)
            if counting:
                assert entry is not None
                if reset_ms > entry.expires_ms:
                    entry.expires_ms = reset_ms
            states.append((remaining, reset_ms, retry_ms))
        return Outcome(now_ms, allowed, tuple(states))

    def _entry(self, key: str, entry: _Entry | None, now_ms: int) -> _Entry:
        if entry is not None:
            return entry
        if len(self._entries) >= self._sweep_at:
            self._sweep(now_ms)
        entry = self._entries[key] = _Entry()
        return entry

    def _sweep(self, now_ms: int) -> None:
        """Drop every expired key; the next sweep waits until the table has doubled."""
        expired = [key for key, entry in self._entries.items() if entry.expires_ms <= now_ms]
        for key in expired:
            del self._entries[key]
        self._sweep_at = max(_MIN_SWEEP, 2 * len(self._entries))


def _log(entry: _Entry | None, storage_id: str, now_ms: int, window_ms: int) -> deque[int]:
    """The units still inside the window (the stored deque, pruned), or an empty one."""
    units = None if entry is None else entry.logs.get(storage_id)
    if units is None:
        return deque()
    cutoff = log_cutoff_ms(now_ms, window_ms)
    while units and units[0] <= cutoff:
        units.popleft()
    return units
