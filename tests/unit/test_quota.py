"""The quota core: a vendor's limits, what becomes of refused deliveries, endpoint pauses."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ratelimiter import Limit
from webhookd.quota import (
    DAY_S,
    Defer,
    Refusal,
    Refuse,
    VendorQuota,
    pause_until,
    refused_verdicts,
    vendor_quota,
)

DAILY = {"basic": 100, "growth": 1000, "closed": 0, "api_only": None}


def quota(
    own: str | None, default: str | None = "basic", rate: str | None = "1000/minute"
) -> VendorQuota:
    return vendor_quota("v_1", own, default_plan=default, daily_by_plan=DAILY, vendor_rate=rate)


def test_the_vendors_own_plan_gives_the_daily_quota() -> None:
    found = quota("growth")
    assert (found.plan, found.defaulted) == ("growth", False)
    assert found.daily is not None and (found.daily.amount, found.daily.window_s) == (1000, DAY_S)
    assert found.rate is not None and (found.rate.amount, found.rate.window_s) == (1000, 60)
    assert found.limits == (found.rate, found.daily)
    assert found.largest_hit == 1000
    assert found.key == "webhooks:v_1"


def test_a_vendor_without_a_known_plan_gets_the_default() -> None:
    assert (quota(None).plan, quota(None).defaulted) == ("basic", True)
    assert (quota("retired").plan, quota("retired").defaulted) == ("basic", True)
    assert quota(None).largest_hit == 100


def test_nothing_set_means_no_limits() -> None:
    found = quota(None, default=None, rate=None)
    assert found.limits == () and not found.closed


def test_a_plan_without_webhooks_per_day_has_no_daily_quota() -> None:
    found = quota("api_only", rate=None)
    assert found.limits == () and found.plan == "api_only"


def test_a_plan_of_zero_webhooks_a_day_is_closed() -> None:
    assert quota("closed").closed


def test_the_webhook_key_is_apart_from_the_limiter_services_vendor_key() -> None:
    assert quota(None).key != "vendor:v_1"


def rate_refusal(found: VendorQuota, retry_after_s: float = 30.0, cost: int = 1) -> Refusal:
    return Refusal(found.rate, retry_after_s, cost)


def test_refused_deliveries_are_spread_at_the_limits_pace() -> None:
    found = quota(None, rate="60/minute")  # one a second
    verdicts, horizon = refused_verdicts(
        found, rate_refusal(found, 30.0), 3, now_s=1000.0, horizon_s=0.0, dead_letter_daily=True
    )
    assert verdicts == [Defer(1030.0 + i, "over the vendor's webhook rate (60/minute)")
                        for i in range(3)]  # fmt: skip
    assert horizon == 1033.0


def test_later_refusals_queue_after_the_earlier_ones() -> None:
    found = quota(None, rate="60/minute")
    verdicts, horizon = refused_verdicts(
        found, rate_refusal(found, 30.0), 2, now_s=1000.0, horizon_s=1050.0, dead_letter_daily=False
    )
    assert [v.due_s for v in verdicts if isinstance(v, Defer)] == [1050.0, 1051.0]
    assert horizon == 1052.0


def test_a_refusal_of_many_units_is_brought_back_to_the_first_one() -> None:
    found = quota(None, rate="60/minute")
    verdicts, _ = refused_verdicts(
        found, rate_refusal(found, 40.0, cost=10), 1, now_s=0.0, horizon_s=0.0,
        dead_letter_daily=False,
    )  # fmt: skip
    assert verdicts == [Defer(31.0, "over the vendor's webhook rate (60/minute)")]


def test_over_the_daily_quota_defers_or_dead_letters_as_configured() -> None:
    found = quota(None)
    refusal = Refusal(found.daily, 3600.0, 1)
    deferred, _ = refused_verdicts(found, refusal, 2, now_s=0.0, horizon_s=0.0,
                                   dead_letter_daily=False)  # fmt: skip
    reason = "over the daily webhook quota of plan basic (100/day)"
    assert deferred == [Defer(3600.0, reason), Defer(3600.0 + 864.0, reason)]
    refused, horizon = refused_verdicts(found, refusal, 2, now_s=0.0, horizon_s=7.0,
                                        dead_letter_daily=True)  # fmt: skip
    assert refused == [Refuse(reason), Refuse(reason)] and horizon == 7.0


def test_over_the_rate_always_defers_even_under_dead_letter() -> None:
    found = quota(None)
    verdicts, _ = refused_verdicts(found, rate_refusal(found), 1, now_s=0.0, horizon_s=0.0,
                                   dead_letter_daily=True)  # fmt: skip
    assert isinstance(verdicts[0], Defer)


@given(
    amount=st.integers(1, 10_000),
    window_s=st.sampled_from([1, 60, 3600, DAY_S]),
    retry_after_s=st.floats(0, 2 * DAY_S),
    cost=st.integers(1, 100),
    count=st.integers(0, 300),
    now_s=st.floats(0, 2e9),
    horizon_s=st.floats(0, 2e9),
)
def test_deferrals_never_come_due_early_and_never_together(
    amount: int, window_s: int, retry_after_s: float, cost: int, count: int,
    now_s: float, horizon_s: float,
) -> None:  # fmt: skip
    found = VendorQuota("v_1", None, True, Limit(amount, window_s), None)
    verdicts, horizon = refused_verdicts(
        found, Refusal(found.rate, retry_after_s, cost), count,
        now_s=now_s, horizon_s=horizon_s, dead_letter_daily=True,
    )  # fmt: skip
    dues = [v.due_s for v in verdicts if isinstance(v, Defer)]
    assert len(dues) == count
    step = window_s / amount
    assert all(due >= max(now_s + step, horizon_s) for due in dues)
    gaps = [later - earlier for earlier, later in itertools.pairwise(dues)]
    assert all(gap == pytest.approx(step, abs=1e-5) for gap in gaps)
    assert horizon >= (dues[-1] if dues else horizon_s)


@pytest.mark.parametrize(
    ("status", "retry_after", "max_pause", "expected"),
    [
        (429, 30.0, 3600.0, 1030.0),
        (503, 30.0, 3600.0, 1030.0),
        (429, 86400.0, 600.0, 1600.0),
        (429, 30.0, 0.0, None),
        (500, 30.0, 3600.0, None),
        (429, None, 3600.0, None),
        (429, 0.0, 3600.0, None),
    ],
)
def test_pause_until(
    status: int, retry_after: float | None, max_pause: float, expected: float | None
) -> None:
    assert pause_until(status, retry_after, 1000.0, max_pause) == expected
