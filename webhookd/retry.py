"""What happens after an attempt: delivered, retried later, or dead-lettered.

Pure: the attempt's result, the clock reading and a random draw come in; a value
goes out. The schedule is any list of delays, so a slow tier can follow the fast one.
"""

from __future__ import annotations

from dataclasses import dataclass
from email.utils import parsedate_to_datetime

from webhookd.values import value_type

RETRY_AFTER_STATUSES = frozenset({429, 503})
RETRY_AFTER_CAP_S = 24 * 3600.0


@value_type
class AttemptResult:
    """What one attempt got: a status (None when no response came) and an error text."""

    status: int | None
    error: str | None
    retry_after_s: float | None = None


@value_type
class Delivered:
    status: int


@value_type
class RetryAt:
    due_s: float
    delay_s: float


@value_type
class DeadLetter:
    reason: str


@value_type
class Gone:
    """The endpoint answered 410: disable it and stop retrying."""


Outcome = Delivered | RetryAt | DeadLetter | Gone


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    schedule_s: tuple[float, ...]
    jitter: float
    retry_after_cap_s: float = RETRY_AFTER_CAP_S  # the longest Retry-After honoured

    @property
    def max_attempts(self) -> int:
        return len(self.schedule_s) + 1

    def delay_s(self, attempts_made: int, draw: float) -> float:
        """The wait before retry number ``attempts_made``; ``draw`` is uniform in [0, 1)."""
        base = self.schedule_s[attempts_made - 1]
        return base + base * self.jitter * draw


def decide(
    policy: RetryPolicy, result: AttemptResult, attempts_made: int, now_s: float, draw: float
) -> Outcome:
    """The next step for a delivery that has now been attempted ``attempts_made`` times."""
    if result.status is not None and 200 <= result.status < 300:
        return Delivered(result.status)
    if result.status == 410:
        return Gone()
    if attempts_made >= policy.max_attempts:
        return DeadLetter(f"gave up after {attempts_made} attempts: {describe(result)}")
    delay = policy.delay_s(attempts_made, draw)
    if result.retry_after_s is not None:
        delay = max(delay, min(result.retry_after_s, policy.retry_after_cap_s))
    return RetryAt(due_s=now_s + delay, delay_s=delay)


def describe(result: AttemptResult) -> str:
    if result.error:
        return result.error
    return f"HTTP {result.status}"


def parse_retry_after(status: int, value: str | None, now_s: float) -> float | None:
    """Seconds a 429/503 asked us to wait (delta-seconds or HTTP-date), else None."""
    if status not in RETRY_AFTER_STATUSES or not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        moment = parsedate_to_datetime(value)
        if moment.tzinfo is None:
            return None
        return max(0.0, moment.timestamp() - now_s)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
