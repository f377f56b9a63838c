"""Prometheus metrics of the limiter service (served on its ``/metrics``)."""

from __future__ import annotations

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
