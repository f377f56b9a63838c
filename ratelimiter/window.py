"""Sliding-window arithmetic: when a hit fits, what remains, when a limit resets.

Pure integer functions over milliseconds, so the memory store and the Lua script agree
to the millisecond (``lua/decide.lua`` takes the same steps, each marked with the name
of its function here). Nothing here reads a clock: ``now_ms`` is always passed in.

Sliding-window counter (the default). Time is cut into fixed windows of ``W`` ms; a
limit keeps the count of the current window ``c`` and of the previous one ``p``. At
``e`` ms into the current window the estimate of the last ``W`` ms is
``p * (W - e) / W + c``: the previous window's hits are assumed spread evenly. A hit of
``cost`` fits while ``estimate + cost <= amount``, compared as integers
(``p * (W - e) <= (amount - c - cost) * W``) so nothing is lost to rounding.

Worst-case error of the counter: the estimate is exact when hits are spread evenly and
wrong when they bunch up. Since ``c <= amount`` always holds and any ``W``-long span
covers at most two fixed windows, no span of ``W`` ms ever admits ``2 * amount`` units
or more; the bound is approached when a full window's worth arrives just before a
window boundary and more keeps arriving after it (the estimate discounts hits that are
really still inside the span). The other way round, hits bunched at the start of the
previous window are still weighted after they have left the span, so the counter can
refuse early. ``tests/unit/ratelimiter/test_limiter_counter_error.py`` measures both.
Limits where this matters use the sliding log.

Sliding log (``exact=True``). Every admitted unit is a timestamp; a unit counts while
``now - W < t``. Exact, and it costs memory in proportion to the amount.
"""

from __future__ import annotations

from collections.abc import Sequence

CounterWindow = tuple[int, int, int, int]
"""``(index, current, previous, elapsed_ms)`` of a counter at some instant."""


def counter_at(stored: CounterWindow | None, now_ms: int, window_ms: int) -> CounterWindow:
    """Roll a stored counter forward to the window holding ``now_ms`` (its stored
    ``elapsed_ms`` is ignored).

    A stored window later than ``now_ms`` (a clock that went back) is kept as it is and
    its previous window weighted in full, which errs on the side of refusing.
    """
    index = now_ms // window_ms
    elapsed = now_ms - index * window_ms
    if stored is None:
        return index, 0, 0, elapsed
    stored_index, current, previous, _ = stored
    if stored_index == index:
        return index, current, previous, elapsed
    if stored_index == index - 1:
        return index, 0, current, elapsed
    if stored_index > index:
        return stored_index, current, previous, 0
    return index, 0, 0, elapsed


def counter_retry_ms(window: CounterWindow, amount: int, window_ms: int, cost: int) -> int:
    """0 when a hit of ``cost`` fits now, else the milliseconds until it would.

    A cost above the amount never fits; one window is returned as a hint.
    """
    _, current, previous, elapsed = window
    room = amount - current - cost
    if room >= 0 and previous * (window_ms - elapsed) <= room * window_ms:
        return 0
    if cost > amount:
        return window_ms
    if room >= 0:
        # It fits later in this window, once the previous window's weight has decayed.
        return window_ms - elapsed - (room * window_ms) // previous
    # It fits only in the next window, once this window's count has decayed in turn.
    return 2 * window_ms - elapsed - ((amount - cost) * window_ms) // current


def counter_remaining(window: CounterWindow, amount: int, window_ms: int) -> int:
    """Whole units that still fit: ``floor(amount - estimate)``, never negative."""
    _, current, previous, elapsed = window
    weighted = -(-previous * (window_ms - elapsed) // window_ms)
    return max(amount - current - weighted, 0)


def counter_reset_ms(window: CounterWindow, now_ms: int, window_ms: int) -> int:
    """When every counted hit has aged out and the full amount is available again."""
    index, current, previous, _ = window
    if current:
        return (index + 2) * window_ms
    if previous:
        return (index + 1) * window_ms
    return now_ms


def counter_add(window: CounterWindow, cost: int) -> CounterWindow:
    index, current, previous, elapsed = window
    return index, current + cost, previous, elapsed


def log_cutoff_ms(now_ms: int, window_ms: int) -> int:
    """Units stamped at or before this instant have left the window."""
    return now_ms - window_ms


def log_retry_ms(units: Sequence[int], amount: int, window_ms: int, now_ms: int, cost: int) -> int:
    """0 when a hit of ``cost`` fits now, else the milliseconds until enough units leave.

    ``units`` are the timestamps inside the window, oldest first.
    """
    excess = len(units) + cost - amount
    if excess <= 0:
        return 0
    if cost > amount:
        return window_ms
    return units[excess - 1] + window_ms - now_ms


def log_remaining(count: int, amount: int) -> int:
    return max(amount - count, 0)


def log_reset_ms(newest_ms: int | None, now_ms: int, window_ms: int) -> int:
    """When the newest unit leaves the window and the full amount is available again."""
    return now_ms if newest_ms is None else newest_ms + window_ms
