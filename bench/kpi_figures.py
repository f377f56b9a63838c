"""The platform's promises and the arithmetic that checks them, for bench/kpi.py.

Pure: what was published (event id -> XADD time) and what the receivers logged (event
id -> first 200) go in, figures and verdicts come out. The promises: 99.5 % of webhooks
delivered within the 5 retries, p95 event-to-vendor latency under 2 s, and 50,000
webhooks a minute sustained.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from workload import percentile

TARGET_SHARE = 0.995
TARGET_P95_MS = 2000.0
TARGET_PER_MIN = 50_000.0
KEPT_UP = 0.99  # offered >= this share of the rate asked, delivered >= of the offered
MAX_BATCH = 50  # events per pipelined XADD batch, at most
RATE_STEP_PER_MIN = 100.0  # the headroom ladder's rates are rounded to this


def due_by(rate_per_s: float, elapsed_s: float) -> int:
    """Events a steady publisher has sent ``elapsed_s`` into its run."""
    return math.floor(rate_per_s * elapsed_s)


def next_batch(rate_per_s: float, elapsed_s: float, sent: int, max_batch: int = MAX_BATCH) -> int:
    """How many events to publish now to keep to ``rate_per_s`` after ``elapsed_s``.

    The schedule is absolute (``due_by``), so a late tick catches up instead of lowering
    the rate; a batch never exceeds ``max_batch``, and a publisher further behind sends
    full batches back to back.
    """
    return max(0, min(max_batch, due_by(rate_per_s, elapsed_s) - sent))


def rate_ladder(start_per_min: float, factor: float, steps: int) -> list[float]:
    """The headroom run's rates: ``start``, then each about ``factor`` times the last."""
    rates = [start_per_min]
    while len(rates) < steps:
        rates.append(max(rates[-1] + RATE_STEP_PER_MIN, _rounded(rates[-1] * factor)))
    return rates


def _rounded(rate_per_min: float) -> float:
    return round(rate_per_min / RATE_STEP_PER_MIN) * RATE_STEP_PER_MIN


def latencies_ms(
    published_ms: Mapping[str, float], first_ok_ms: Mapping[str, float]
) -> list[float]:
    """Event-to-vendor latency of every delivered event, sorted: first 200 minus XADD."""
    return sorted(first_ok_ms[i] - at for i, at in published_ms.items() if i in first_ok_ms)


def delivered_share(published: int, delivered: int) -> float:
    """Events with a 200 over events published; nothing published delivers nothing."""
    return delivered / published if published else 0.0


def per_minute(times_ms: Iterable[float], start_ms: float, end_ms: float) -> float:
    """How many of ``times_ms`` fall in ``[start_ms, end_ms)``, per minute of that window."""
    if end_ms <= start_ms:
        return 0.0
    inside = sum(1 for at in times_ms if start_ms <= at < end_ms)
    return inside * 60_000 / (end_ms - start_ms)


@dataclass(frozen=True, slots=True)
class Promise:
    what: str
    measured: float
    shown: str  # measured, with its unit
    goal: str
    met: bool


@dataclass(frozen=True, slots=True)
class Delivery:
    """One load phase: what was offered and how it was delivered."""

    offered_per_min: float  # events published per minute of the publishing window
    published: int
    delivered: int  # of those, events that got a 200 before the drain ended
    share: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    delivered_per_min: float  # first 200s (any event) per minute of the publishing window
    duplicates: int  # 200s beyond the first for an event (delivery is at-least-once)
    failed_answers: int  # 500s the receivers answered
    answers: int  # every answer the receivers gave

    @property
    def failed_share(self) -> float:
        return self.failed_answers / self.answers if self.answers else 0.0

    def offered_all(self, asked_per_min: float) -> bool:
        """The publisher kept to the rate asked (on a busy machine it may not)."""
        return self.offered_per_min >= KEPT_UP * asked_per_min

    @property
    def kept_up(self) -> bool:
        return self.delivered_per_min >= KEPT_UP * self.offered_per_min

    @property
    def passes(self) -> bool:
        """Within the delivery promises: share and p95 (what the headroom ladder checks)."""
        return self.share >= TARGET_SHARE and self.p95_ms < TARGET_P95_MS


def delivery(
    published_ms: Mapping[str, float],
    first_ok_ms: Mapping[str, float],
    window_ms: tuple[float, float],
    duplicates: int,
    failed_answers: int,
) -> Delivery:
    """The figures of one phase.

    ``published_ms`` holds the phase's events, ``first_ok_ms`` every event's first 200
    (earlier phases' too: their retries land in this window as this phase's own land
    after it, so the count over the window is the rate delivered in steady state).
    """
    start_ms, end_ms = window_ms
    latencies = latencies_ms(published_ms, first_ok_ms)
    minutes = (end_ms - start_ms) / 60_000
    return Delivery(
        offered_per_min=len(published_ms) / minutes if minutes > 0 else 0.0,
        published=len(published_ms),
        delivered=len(latencies),
        share=delivered_share(len(published_ms), len(latencies)),
        p50_ms=percentile(latencies, 0.50),
        p95_ms=percentile(latencies, 0.95),
        p99_ms=percentile(latencies, 0.99),
        max_ms=percentile(latencies, 1.0),
        delivered_per_min=per_minute(first_ok_ms.values(), start_ms, end_ms),
        duplicates=duplicates,
        failed_answers=failed_answers,
        answers=len(first_ok_ms) + duplicates + failed_answers,
    )


def targets(figures: Delivery, asked_per_min: float) -> list[Promise]:
    """Each promise, measured and met or not.

    Throughput counts as sustained when the rate asked was at least the promise, the
    publisher offered it and the deliveries kept up with what was offered: a count over
    a window moves by a few events either way, so "at least 50,000 counted" would fail
    a run at exactly the promised rate half of the time.
    """
    sustained = (
        asked_per_min >= TARGET_PER_MIN and figures.offered_all(asked_per_min) and figures.kept_up
    )
    return [
        Promise(
            "delivered within the 5 retries",
            figures.share,
            f"{figures.share:.3%}",
            f">= {TARGET_SHARE:.1%}",
            figures.share >= TARGET_SHARE,
        ),
        Promise(
            "p95 event-to-vendor latency",
            figures.p95_ms,
            f"{figures.p95_ms:,.0f} ms",
            f"< {TARGET_P95_MS:,.0f} ms",
            figures.p95_ms < TARGET_P95_MS,
        ),
        Promise(
            "deliveries/minute sustained",
            figures.delivered_per_min,
            f"{figures.delivered_per_min:,.0f}/min of {figures.offered_per_min:,.0f} offered",
            f">= {TARGET_PER_MIN:,.0f}/min asked, {KEPT_UP:.0%} offered and delivered",
            sustained,
        ),
    ]


def last_passing(steps: Sequence[tuple[float, Delivery]]) -> float | None:
    """The highest rate asked before the ladder's first miss (None: the first missed).

    A step the publisher could not offer in full is a miss too: that rate was not tried.
    """
    best = None
    for rate, figures in steps:
        if not (figures.passes and figures.offered_all(rate)):
            break
        best = rate
    return best
