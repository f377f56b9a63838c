"""Per-vendor webhook quotas: which limits apply to a vendor, and what becomes of the
deliveries a limit refuses.

Pure: the limiter's answers, the clock reading and the vendor's plan come in; limits
and verdicts go out (``webhookd.quotas`` is the Redis edge that asks the limiter).

A vendor's webhooks count under the limiter key ``webhooks:<vendor>``, apart from the
API calls its keys make (``vendor:<vendor>``), against up to two limits checked and
counted together in one hit: ``quotas.vendor_rate`` and the daily quota, its plan's
``webhooks_per_day``. Both are the limiter's sliding-window counters: no fixed window
(a clock minute, a UTC day) ever admits more than the amount, and memory stays constant
however large the quota.

A read batch is counted with one hit per vendor of a cost of its deliveries there;
when that is refused, the hit is tried again with the cost the refusal says still fits
(``remaining``, which only shrinks), so the first deliveries of the batch go and the
rest are refused. Refused deliveries wait in the retry set, spread at the refusing
limit's pace (one every window/amount seconds) from when the first one fits, after any
this process deferred before: they come back about as fast as the limit lets them
through, not all at once to be refused again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ratelimiter import Limit, parse_limit
from webhookd.values import value_type

DAY_S = 86400
RATE_NAME = "webhooks-rate"


@dataclass(frozen=True, slots=True)
class VendorQuota:
    """The limits a vendor's webhooks count against; no limits means none apply."""

    vendor: str
    plan: str | None
    defaulted: bool  # the plan is quotas.default_plan: the vendor has none of its own
    rate: Limit | None
    daily: Limit | None
    closed: bool = False  # the plan allows no webhooks at all (webhooks_per_day = 0)

    @property
    def key(self) -> str:
        """The limiter key, apart from the limiter service's ``vendor:<vendor>``."""
        return f"webhooks:{self.vendor}"

    @property
    def limits(self) -> tuple[Limit, ...]:
        return tuple(limit for limit in (self.rate, self.daily) if limit is not None)

    @property
    def largest_hit(self) -> int:
        """The most units one hit can ever be granted: the smallest amount."""
        return min(limit.amount for limit in self.limits)

    def is_daily(self, limit: Limit | None) -> bool:
        return limit is not None and self.daily is not None and limit == self.daily


def vendor_quota(
    vendor: str,
    own_plan: str | None,
    *,
    default_plan: str | None,
    daily_by_plan: Mapping[str, int | None],
    vendor_rate: str | None,
) -> VendorQuota:
    """A vendor's limits: its own plan if the plans file knows it, else the default."""
    plan, defaulted = own_plan, False
    if plan is None or plan not in daily_by_plan:
        plan, defaulted = default_plan, True
    per_day = None if plan is None else daily_by_plan.get(plan)
    rate = None
    if vendor_rate is not None:
        parsed = parse_limit(vendor_rate)
        rate = Limit(parsed.amount, parsed.window_s, name=RATE_NAME)
    daily = None
    if per_day:
        daily = Limit(per_day, DAY_S, name=f"{plan}-webhooks-day")
    return VendorQuota(vendor, plan, defaulted, rate, daily, closed=per_day == 0)


@value_type
class Defer:
    """Wait in the retry set until ``due_s`` (epoch), no attempt used."""

    due_s: float
    reason: str


@value_type
class Refuse:
    """Dead-letter with the reason (over the daily quota, ``quotas.exceeded = "dead_letter"``)."""

    reason: str


Verdict = Defer | Refuse | None  # None: go ahead


def reason(quota: VendorQuota, limit: Limit | None) -> str:
    """Why a refused delivery waits, as its record and dead letter show it."""
    if quota.closed or quota.is_daily(limit):
        amount = 0 if limit is None else limit.amount
        return f"over the daily webhook quota of plan {quota.plan} ({amount}/day)"
    shown = "" if limit is None else f" ({limit.amount}/{limit.unit})"
    return f"over the vendor's webhook rate{shown}"


@dataclass(frozen=True, slots=True)
class Refusal:
    """What the limiter said when it last refused a hit: the figures of ``Decision``."""

    limit: Limit | None  # the binding limit
    retry_after_s: float
    cost: int  # the units that hit asked for


def refused_verdicts(
    quota: VendorQuota,
    refusal: Refusal,
    count: int,
    *,
    now_s: float,
    horizon_s: float,
    dead_letter_daily: bool,
) -> tuple[list[Verdict], float]:
    """Verdicts for the ``count`` deliveries a refusal left out, and the new horizon
    (when this process's deferrals for the vendor end; see the module docstring)."""
    why = reason(quota, refusal.limit)
    daily = quota.closed or quota.is_daily(refusal.limit)
    if daily and dead_letter_daily:
        return [Refuse(why)] * count, horizon_s
    limit = refusal.limit
    step_s = DAY_S if limit is None else limit.window_s / limit.amount
    # the refusal was for ``cost`` units: a single one fits about (cost - 1) steps sooner
    first_s = max(refusal.retry_after_s - (refusal.cost - 1) * step_s, step_s)
    start_s = max(now_s + first_s, horizon_s)
    verdicts: list[Verdict] = [Defer(start_s + index * step_s, why) for index in range(count)]
    return verdicts, start_s + count * step_s


def pause_until(status: int | None, retry_after_s: float | None, now_s: float,
                max_pause_s: float) -> float | None:  # fmt: skip
    """When an endpoint that answered 429 or 503 with Retry-After may be sent to again;
    None when the answer asks for no pause (or pausing is off)."""
    if status not in (429, 503) or retry_after_s is None or max_pause_s <= 0:
        return None
    wait_s = min(retry_after_s, max_pause_s)
    return now_s + wait_s if wait_s > 0 else None
