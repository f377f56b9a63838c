"""The sliding-window counter's worst-case error, measured (see ratelimiter/window.py).

Admitting: no span of one window ever holds ``2 * amount`` units or more, and a burst
just before a window boundary followed by steady traffic gets close to that bound.
Refusing: hits bunched at the start of a window are still weighted after they have
left the span, so the counter can refuse while the span is far from full.
"""

from __future__ import annotations

from collections import deque

from hypothesis import given, settings
from hypothesis import strategies as st

from ratelimiter import Limit, MemoryBackend
from ratelimiter.backend import Check

WINDOW_MS = 60_000
BOUNDARY_MS = 1_700_000_040_000  # a multiple of the window


def busiest_span(admitted: list[int], window_ms: int) -> int:
    """Most units admitted within any span ``(t - window, t]``."""
    span: deque[int] = deque()
    most = 0
    for at in sorted(admitted):
        span.append(at)
        while span[0] <= at - window_ms:
            span.popleft()
        most = max(most, len(span))
    return most


def run(limit: Limit, times_ms: list[int]) -> list[int]:
    """Hit once at each instant; the instants of the admitted hits."""
    store = MemoryBackend()
    return [at for at in times_ms if store.decide(Check("k", (limit,), 1, True, at)).allowed]


def test_a_burst_before_a_boundary_then_steady_traffic_nearly_doubles_the_amount() -> None:
    limit = Limit(100, WINDOW_MS // 1000)
    burst = [BOUNDARY_MS - 1] * 100
    steady = list(range(BOUNDARY_MS, BOUNDARY_MS + WINDOW_MS, 10))
    admitted = run(limit, burst + steady)
    worst = busiest_span(admitted, WINDOW_MS)
    assert 1.95 * limit.amount <= worst < 2 * limit.amount
    # The exact sliding log admits no more than the amount from the same traffic.
    exact = Limit(100, WINDOW_MS // 1000, exact=True)
    assert busiest_span(run(exact, burst + steady), WINDOW_MS) == limit.amount


def test_hits_at_the_start_of_the_previous_window_are_weighted_after_they_left() -> None:
    limit = Limit(100, WINDOW_MS // 1000)
    store = MemoryBackend()
    for _ in range(100):
        assert store.decide(Check("k", (limit,), 1, True, BOUNDARY_MS)).allowed
    # Half a window into the next window the span (t - W, t] holds nothing, yet the
    # estimate still counts half of the burst: only half the amount is available.
    at = BOUNDARY_MS + WINDOW_MS + WINDOW_MS // 2
    outcome = store.decide(Check("k", (limit,), 1, False, at))
    assert outcome.states[0][0] == 50


@settings(max_examples=60, deadline=None)
@given(
    amount=st.integers(1, 30),
    gaps=st.lists(st.integers(0, 3000), min_size=1, max_size=200),
)
def test_no_span_of_one_window_ever_holds_twice_the_amount(amount: int, gaps: list[int]) -> None:
    window_s = 2
    times, at = [], BOUNDARY_MS
    for gap in gaps:
        at += gap
        times.append(at)
    counter = run(Limit(amount, window_s), times)
    assert busiest_span(counter, window_s * 1000) < 2 * amount
    exact = run(Limit(amount, window_s, exact=True), times)
    assert busiest_span(exact, window_s * 1000) <= amount
