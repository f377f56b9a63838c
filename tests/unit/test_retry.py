"""Retry policy: jittered delays, the outcome of each attempt, and Retry-After."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import format_datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from webhookd.retry import (
    RETRY_AFTER_CAP_S,
    AttemptResult,
    DeadLetter,
    Delivered,
    Gone,
    RetryAt,
    RetryPolicy,
    decide,
    parse_retry_after,
)

DEFAULT = RetryPolicy(schedule_s=(1.0, 2.0, 4.0, 8.0, 16.0), jitter=0.1)
SLOW_TIER = RetryPolicy(schedule_s=(300.0, 1800.0, 7200.0, 18000.0, 36000.0), jitter=0.1)
NOW_S = 1_714_559_696.0
PROPERTY = settings(max_examples=80, deadline=None)

delays = st.floats(min_value=0.001, max_value=40_000.0)
schedules = st.lists(delays, min_size=1, max_size=10).map(tuple)
jitters = st.floats(min_value=0.0, max_value=1.0)
draws = st.floats(min_value=0.0, max_value=1.0, exclude_max=True)
failing_statuses = st.none() | st.integers(100, 599).filter(
    lambda status: not 200 <= status < 300 and status != 410
)


def failure(status: int | None, retry_after_s: float | None = None) -> AttemptResult:
    error = "connection refused" if status is None else None
    return AttemptResult(status=status, error=error, retry_after_s=retry_after_s)


def within(value: float, low: float, high: float) -> bool:
    slack = 1e-12 * max(1.0, abs(high))
    return low - slack <= value <= high + slack


# --- jitter ----------------------------------------------------------------------------


@PROPERTY
@given(schedule=schedules, jitter=jitters, draw=draws, data=st.data())
def test_delay_stays_within_base_and_base_plus_jitter(
    schedule: tuple[float, ...], jitter: float, draw: float, data: st.DataObject
) -> None:
    policy = RetryPolicy(schedule, jitter)
    attempts_made = data.draw(st.integers(1, len(schedule)))
    base = schedule[attempts_made - 1]

    delay = policy.delay_s(attempts_made, draw)

    assert within(delay, base, base * (1 + jitter))
    outcome = decide(policy, failure(500), attempts_made, NOW_S, draw)
    assert outcome == RetryAt(due_s=NOW_S + delay, delay_s=delay)


def test_no_jitter_and_a_zero_draw_give_the_schedule_exactly() -> None:
    policy = RetryPolicy((1.0, 2.5), jitter=0.0)
    assert [policy.delay_s(n, 0.99) for n in (1, 2)] == [1.0, 2.5]
    assert [DEFAULT.delay_s(n, 0.0) for n in range(1, 6)] == [1.0, 2.0, 4.0, 8.0, 16.0]


def test_full_jitter_almost_doubles() -> None:
    policy = RetryPolicy((10.0,), jitter=1.0)
    assert 19.9 < policy.delay_s(1, 0.999) < 20.0


# --- outcomes --------------------------------------------------------------------------


@PROPERTY
@given(
    status=st.integers(200, 299),
    attempts_made=st.integers(1, 20),
    policy=st.builds(RetryPolicy, schedules, jitters),
    draw=draws,
)
def test_2xx_is_delivered_on_any_attempt(
    status: int, attempts_made: int, policy: RetryPolicy, draw: float
) -> None:
    assert decide(policy, AttemptResult(status, None), attempts_made, NOW_S, draw) == Delivered(
        status
    )


@pytest.mark.parametrize("attempts_made", [1, 3, 6, 10])
def test_410_is_gone_on_any_attempt(attempts_made: int) -> None:
    assert decide(DEFAULT, AttemptResult(410, None), attempts_made, NOW_S, 0.5) == Gone()


@PROPERTY
@given(
    status=failing_statuses,
    policy=st.builds(RetryPolicy, schedules, jitters),
    draw=draws,
)
def test_failures_retry_until_the_schedule_is_spent_then_dead_letter(
    status: int | None, policy: RetryPolicy, draw: float
) -> None:
    result = failure(status)
    assert policy.max_attempts == len(policy.schedule_s) + 1
    for attempts_made in range(1, policy.max_attempts):
        assert isinstance(decide(policy, result, attempts_made, NOW_S, draw), RetryAt)
    for attempts_made in (policy.max_attempts, policy.max_attempts + 1):
        outcome = decide(policy, result, attempts_made, NOW_S, draw)
        assert isinstance(outcome, DeadLetter)
        assert str(attempts_made) in outcome.reason
        expected = "connection refused" if status is None else f"HTTP {status}"
        assert expected in outcome.reason


def test_default_schedule_is_five_retries_over_31_seconds() -> None:
    result = failure(503)
    due = [decide(DEFAULT, result, n, NOW_S, 0.0) for n in range(1, 6)]
    assert [outcome.delay_s for outcome in due if isinstance(outcome, RetryAt)] == [
        1.0,
        2.0,
        4.0,
        8.0,
        16.0,
    ]
    assert sum(outcome.delay_s for outcome in due if isinstance(outcome, RetryAt)) == 31.0
    assert isinstance(decide(DEFAULT, result, 6, NOW_S, 0.0), DeadLetter)


def test_a_slow_tier_schedule_works() -> None:
    result = failure(None)
    delays_s = []
    for attempts_made in range(1, 6):
        outcome = decide(SLOW_TIER, result, attempts_made, NOW_S, 0.5)
        assert isinstance(outcome, RetryAt)
        assert outcome.due_s == NOW_S + outcome.delay_s
        delays_s.append(outcome.delay_s)
    assert delays_s == [base * 1.05 for base in SLOW_TIER.schedule_s]
    assert isinstance(decide(SLOW_TIER, result, 6, NOW_S, 0.5), DeadLetter)


def test_fast_then_slow_tier_in_one_schedule() -> None:
    policy = RetryPolicy((1.0, 2.0, 4.0, 8.0, 16.0, 300.0, 1800.0, 7200.0), jitter=0.0)
    outcomes = [decide(policy, failure(500), n, NOW_S, 0.0) for n in range(1, 10)]
    assert [o.delay_s for o in outcomes if isinstance(o, RetryAt)] == list(policy.schedule_s)
    assert isinstance(outcomes[-1], DeadLetter)


# --- Retry-After -----------------------------------------------------------------------


@PROPERTY
@given(
    policy=st.builds(RetryPolicy, schedules, jitters),
    retry_after_s=st.floats(min_value=0.0, max_value=1e9),
    draw=draws,
    data=st.data(),
)
def test_retry_after_is_honoured_when_longer_never_shortens_and_is_capped(
    policy: RetryPolicy, retry_after_s: float, draw: float, data: st.DataObject
) -> None:
    attempts_made = data.draw(st.integers(1, len(policy.schedule_s)))
    scheduled = policy.delay_s(attempts_made, draw)

    outcome = decide(policy, failure(429, retry_after_s), attempts_made, NOW_S, draw)

    assert isinstance(outcome, RetryAt)
    assert outcome.delay_s >= scheduled
    assert outcome.delay_s <= max(scheduled, RETRY_AFTER_CAP_S)
    if retry_after_s > scheduled:
        assert outcome.delay_s == min(retry_after_s, RETRY_AFTER_CAP_S)
    else:
        assert outcome.delay_s == scheduled
    assert outcome.due_s == NOW_S + outcome.delay_s


def test_retry_after_longer_than_the_cap_is_capped() -> None:
    outcome = decide(DEFAULT, failure(503, 10.0**9), 1, NOW_S, 0.0)
    assert outcome == RetryAt(due_s=NOW_S + RETRY_AFTER_CAP_S, delay_s=RETRY_AFTER_CAP_S)


def test_retry_after_shorter_than_the_schedule_is_ignored() -> None:
    assert decide(SLOW_TIER, failure(429, 5.0), 1, NOW_S, 0.0).delay_s == 300.0


def test_retry_after_never_shortens_a_scheduled_delay_longer_than_the_cap() -> None:
    policy = RetryPolicy((100_000.0,), jitter=0.0)  # a schedule may hold delays over a day
    outcome = decide(policy, failure(429, 200_000.0), 1, NOW_S, 0.0)
    assert isinstance(outcome, RetryAt)
    assert outcome.delay_s >= 100_000.0


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_delta_seconds(status: int) -> None:
    assert parse_retry_after(status, "120", NOW_S) == 120.0
    assert parse_retry_after(status, " 7 ", NOW_S) == 7.0
    assert parse_retry_after(status, "0", NOW_S) == 0.0


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_http_date(status: int) -> None:
    later = format_datetime(datetime.fromtimestamp(NOW_S + 90, UTC), usegmt=True)
    earlier = format_datetime(datetime.fromtimestamp(NOW_S - 90, UTC), usegmt=True)
    assert parse_retry_after(status, later, NOW_S) == pytest.approx(90.0)
    assert parse_retry_after(status, earlier, NOW_S) == 0.0


def test_retry_after_imf_fixdate_literal() -> None:
    now_s = datetime(2015, 10, 21, 7, 27, 0, tzinfo=UTC).timestamp()
    assert parse_retry_after(503, "Wed, 21 Oct 2015 07:28:00 GMT", now_s) == 60.0


@pytest.mark.parametrize("status", [200, 301, 400, 404, 413, 500, 502, 504])
def test_retry_after_only_counts_on_429_and_503(status: int) -> None:
    assert parse_retry_after(status, "120", NOW_S) is None


@pytest.mark.parametrize("value", [None, "", "   ", "soon", "-5", "1.5", "12abc", "Wed, 99 Foo"])
def test_unreadable_retry_after_is_none(value: str | None) -> None:
    assert parse_retry_after(429, value, NOW_S) is None


@PROPERTY
@given(status=st.sampled_from([429, 503]), value=st.text(max_size=60))
def test_parse_retry_after_never_raises(status: int, value: str) -> None:
    seconds = parse_retry_after(status, value, NOW_S)
    assert seconds is None or seconds >= 0.0


# Header values arrive as latin-1 text, so any byte a receiver sends can show up here.
@pytest.mark.parametrize(
    "value",
    [
        pytest.param("\xb2", id="superscript two (byte 0xb2)"),
        pytest.param("1\xb9", id="digit and superscript one"),
        pytest.param("Mon, 01 Jan 99999999999999999999 00:00:00 GMT", id="huge year"),
        pytest.param("Mon, 01 Jan 2024 99999999999999999999:00:00 GMT", id="huge hour"),
    ],
)
def test_hostile_retry_after_is_none(value: str) -> None:
    assert parse_retry_after(429, value, NOW_S) is None


@PROPERTY
@given(seconds=st.integers(0, 10**7))
def test_delta_seconds_round_trip(seconds: int) -> None:
    assert parse_retry_after(429, str(seconds), NOW_S) == float(seconds)
