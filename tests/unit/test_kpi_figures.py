"""bench/kpi.py's arithmetic: pacing, percentiles, the delivered share, the verdicts,
the headroom ladder, and the receivers' answering rule."""

from __future__ import annotations

import math
import random
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

# The benchmarks import their sibling modules by bare name; appended, so nothing of
# tests/ (which has a processes.py of its own) is shadowed.
sys.path.append(str(Path(__file__).resolve().parents[2] / "bench"))

import kpi_figures
from kpi_figures import (
    Delivery,
    delivery,
    last_passing,
    latencies_ms,
    next_batch,
    per_minute,
    rate_ladder,
    targets,
)
from kpi_receiver import Rules
from workload import percentile


@given(
    rate_per_s=st.floats(min_value=1, max_value=5000),
    ticks=st.lists(st.floats(min_value=0.001, max_value=0.05), min_size=1, max_size=200),
)
def test_paced_publisher_keeps_to_the_rate_whatever_its_ticks(
    rate_per_s: float, ticks: list[float]
) -> None:
    sent, elapsed = 0, 0.0
    for tick in ticks:
        elapsed += tick
        batch = next_batch(rate_per_s, elapsed, sent)
        assert 0 <= batch <= kpi_figures.MAX_BATCH
        sent += batch
        while batch == kpi_figures.MAX_BATCH:  # behind: full batches back to back
            batch = next_batch(rate_per_s, elapsed, sent)
            sent += batch
        assert sent == math.floor(rate_per_s * elapsed)  # never ahead, never behind


def test_a_late_tick_catches_up_in_small_batches() -> None:
    assert next_batch(834, 0.01, 0) == 8
    assert next_batch(834, 1.0, 0) == kpi_figures.MAX_BATCH  # 834 owed, one batch at a time
    assert next_batch(834, 1.0, 834) == 0
    assert next_batch(834, 1.0, 900) == 0  # ahead (never happens): nothing, not negative


def test_percentiles_are_nearest_rank() -> None:
    ordered = [float(ms) for ms in range(1, 101)]  # 1..100 ms
    assert percentile(ordered, 0.50) == 50
    assert percentile(ordered, 0.95) == 95
    assert percentile(ordered, 0.99) == 99
    assert percentile(ordered, 1.0) == 100
    assert percentile([7.0], 0.95) == 7
    assert math.isnan(percentile([], 0.95))


def test_latency_is_first_200_minus_publish_time_for_delivered_events_only() -> None:
    published = {"evt_1000-0": 1000.0, "evt_1000-1": 1000.0, "evt_2000-0": 2000.0}
    first_ok = {"evt_1000-0": 1012.0, "evt_2000-0": 3100.0, "evt_500-0": 600.0}
    assert latencies_ms(published, first_ok) == [12.0, 1100.0]


def figures(
    published: int, delivered: int, latency_ms: float = 10.0, window_s: float = 60.0
) -> Delivery:
    """A phase of ``published`` events over ``window_s``, the first ``delivered`` of them
    delivered ``latency_ms`` after their XADD."""
    step_ms = window_s * 1000 / published
    sent = {f"evt_{i}": i * step_ms for i in range(published)}
    first_ok = {event_id: at + latency_ms for event_id, at in list(sent.items())[:delivered]}
    return delivery(sent, first_ok, (0.0, window_s * 1000), duplicates=0, failed_answers=0)


def test_share_counts_events_with_a_200_over_events_published() -> None:
    assert figures(1000, 995).share == 0.995
    assert figures(1000, 994).share == 0.994
    assert delivery({}, {}, (0.0, 1.0), 0, 0).share == 0.0  # nothing published


def test_share_and_p95_targets_pass_at_the_promises_and_miss_just_beside_them() -> None:
    def met(phase: Delivery) -> dict[str, bool]:
        return {t.what: t.met for t in targets(phase, 50_000)}

    at_promise = met(figures(50_000, 49_750, latency_ms=1999))
    assert at_promise["delivered within the 5 retries"]
    assert at_promise["p95 event-to-vendor latency"]
    beside = met(figures(50_000, 49_749, latency_ms=2000))
    assert not beside["delivered within the 5 retries"]
    assert not beside["p95 event-to-vendor latency"]


def test_throughput_needs_the_promised_rate_asked_offered_and_delivered() -> None:
    def sustained(phase: Delivery, asked: float) -> bool:
        return next(t.met for t in targets(phase, asked) if t.what.startswith("deliveries"))

    assert sustained(figures(50_000, 50_000), 50_000)
    assert sustained(figures(49_600, 49_600), 50_000)  # a count a few events short
    assert not sustained(figures(12_000, 12_000), 12_000)  # below the promise
    assert not sustained(figures(45_000, 45_000), 50_000)  # the publisher fell short
    assert not sustained(figures(50_000, 48_000), 50_000)  # deliveries fell behind


def test_deliveries_per_minute_count_first_200s_inside_the_window() -> None:
    times = [0.0, 10_000.0, 59_999.0, 60_000.0, -1.0]
    assert per_minute(times, 0.0, 60_000.0) == 3
    assert per_minute(times, 0.0, 30_000.0) == 4  # 2 in half a minute
    assert per_minute(times, 5.0, 5.0) == 0.0


def test_the_ladder_grows_by_the_factor_in_round_steps() -> None:
    assert rate_ladder(50_000, 1.3, 4) == [50_000, 65_000, 84_500, 109_800]
    assert rate_ladder(1_000, 1.01, 3) == [1_000, 1_100, 1_200]  # at least one step up
    assert rate_ladder(50_000, 1.3, 1) == [50_000]


def test_the_highest_passing_rate_is_the_last_before_the_first_miss() -> None:
    def good(rate: int) -> tuple[float, Delivery]:
        return rate, figures(rate, rate)  # a minute at the rate, every event in 10 ms

    late = (1700.0, figures(1700, 1700, latency_ms=2500))
    assert last_passing([good(1000), good(1300), late, good(2200)]) == 1300
    assert last_passing([late, good(2200)]) is None
    assert last_passing([good(1000), good(1300)]) == 1300
    short = (2000.0, figures(1000, 1000))  # 1,000/min offered when 2,000 were asked
    assert last_passing([good(1000), short]) == 1000


def test_receivers_fail_the_share_asked_and_hold_only_slow_endpoints() -> None:
    rules = Rules(0.05, frozenset({"v0", "v1", "v2"}), (0.3, 0.8))
    rng = random.Random(7)
    fast = [rules.answer("/sustain/v10", rng) for _ in range(20_000)]
    slow = [rules.answer("/sustain/v1", rng) for _ in range(2_000)]
    failed = sum(status == 500 for status, _ in fast) / len(fast)
    assert 0.045 < failed < 0.055
    assert {status for status, _ in fast + slow} == {200, 500}
    assert all(hold == 0.0 for _, hold in fast)
    assert all(0.3 <= hold <= 0.8 for _, hold in slow)
    assert not any(rules.answer("/sustain/v10", rng)[1] for _ in range(100))


@pytest.mark.parametrize("share", [0.0, 1.0])
def test_receivers_never_or_always_fail_at_the_extremes(share: float) -> None:
    rules = Rules(share, frozenset(), (0.3, 0.8))
    rng = random.Random(1)
    statuses = {rules.answer("/kpi/v0", rng)[0] for _ in range(500)}
    assert statuses == ({500} if share else {200})
