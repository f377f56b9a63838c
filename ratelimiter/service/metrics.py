"""What the service tells its operators: Prometheus metrics (served on ``/metrics``) and
the log lines of the store going down and coming back.

``Outcomes`` counts each answer under its outcome and plan; ``StoreWatch`` counts each
failed Redis call and logs only the transitions (``ratelimiter.redis_failed`` when the
store starts failing, ``ratelimiter.redis_recovered`` when it answers again), not one
line per request.
"""

from __future__ import annotations

from typing import Any

import structlog
from prometheus_client import Counter, Histogram

DECISIONS = Counter(
    "ratelimiter_decisions_total",
    "Answers of /v1/check and /v1/auth by outcome (allowed, refused, failed_open, "
    "failed_closed, unauthorized) and plan",
    ["outcome", "plan"],
)
LATENCY = Histogram(
    "ratelimiter_request_seconds",
    "Time from a parsed request to its answer, by endpoint",
    ["endpoint"],
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0),
)
REDIS_ERRORS = Counter(
    "ratelimiter_redis_errors_total",
    "Redis calls that failed or timed out, by operation (decide, key_lookup, ping)",
    ["operation"],
)

log = structlog.get_logger("ratelimiter.service")


class Outcomes:
    """``ratelimiter_decisions_total``, its children looked up once per (outcome, plan):
    ``labels()`` costs more than the count itself."""

    def __init__(self) -> None:
        self._counters: dict[tuple[str, str | None], Any] = {}
        self.latency = {endpoint: LATENCY.labels(endpoint) for endpoint in ("check", "auth")}

    def count(self, outcome: str, plan: str | None) -> None:
        counter = self._counters.get((outcome, plan))
        if counter is None:
            counter = self._counters[(outcome, plan)] = DECISIONS.labels(outcome, plan or "none")
        counter.inc()


class StoreWatch:
    """Whether Redis last answered; failures counted, transitions logged."""

    def __init__(self, failure_mode: str) -> None:
        self._failure_mode = failure_mode
        self.ok = True

    def failed(self, operation: str, reason: str) -> None:
        REDIS_ERRORS.labels(operation).inc()
        if self.ok:
            self.ok = False
            log.warning("ratelimiter.redis_failed", operation=operation, reason=reason,
                        failure_mode=self._failure_mode)  # fmt: skip

    def answered(self) -> None:
        if not self.ok:
            self.ok = True
            log.info("ratelimiter.redis_recovered")
