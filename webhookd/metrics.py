"""Prometheus metrics of the daemon (served on ``/metrics`` by the admin API)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

EVENTS_READ = Counter("webhookd_events_read_total", "Stream entries read", ["source"])
EVENTS_MALFORMED = Counter("webhookd_events_malformed_total", "Entries dead-lettered as malformed")
ATTEMPTS = Counter("webhookd_attempts_total", "Delivery attempts by outcome", ["outcome"])
# Label children looked up once: every attempt counts one.
ATTEMPTS_BY_OUTCOME = {
    outcome: ATTEMPTS.labels(outcome) for outcome in ("delivered", "scheduled", "dead", "gone")
}
DEAD_LETTERS = Counter("webhookd_dead_letters_total", "Deliveries dead-lettered")
ENDPOINTS_DISABLED = Counter(
    "webhookd_endpoints_disabled_total",
    "Endpoints webhookd disabled: after a 410 (gone) or failing for health.disable_after",
    ["reason"],
)
HELD = Counter("webhookd_deliveries_held_total", "Deliveries held for a disabled endpoint")
RECOVERED = Counter("webhookd_deliveries_recovered_total", "Held deliveries sent on recovery")
IN_FLIGHT = Gauge(
    "webhookd_deliveries_in_flight", "Deliveries queued in their endpoint's lane or being sent"
)
ATTEMPT_SECONDS = Histogram(
    "webhookd_attempt_seconds",
    "Duration of delivery attempts",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
REDIS_ERRORS = Counter("webhookd_redis_errors_total", "Redis calls that failed", ["operation"])
DEFERRED = Counter(
    "webhookd_deliveries_deferred_total",
    "Deliveries put back in the retry set because their endpoint's queue was full",
)
EVENTS_DUPLICATE = Counter(
    "webhookd_events_duplicate_total",
    "Entries acknowledged without delivery: their event id was already taken by the same event",
)
EVENTS_ID_CONFLICT = Counter(
    "webhookd_events_id_conflict_total",
    "Entries dead-lettered: their event id was already taken by a different event",
)
GROUPS_RECREATED = Counter(
    "webhookd_consumer_groups_recreated_total", "Consumer groups recreated after NOGROUP"
)
RETRY_BACKLOG = Gauge(
    "webhookd_retry_backlog",
    "Deliveries in the retry sets, waiting or leased (all daemons: each reports the same "
    "figure, sampled by its scheduler every few seconds)",
)
DISABLED_ENDPOINTS = Gauge(
    "webhookd_disabled_endpoints",
    "Endpoints disabled now: by an operator, a 410 or failing (counted at scrape time)",
)
RECORD_POISONED = Counter(
    "webhookd_record_units_dead_lettered_total",
    "Delivery outcomes Redis kept refusing, dead-lettered with the reason",
)
QUOTA_EXCEEDED = Counter(
    "webhookd_quota_exceeded_total",
    "Vendors over a webhook quota, once per vendor and window across all daemons",
    ["quota"],
)
QUOTA_DEFERRED = Counter(
    "webhookd_deliveries_quota_deferred_total",
    "Deliveries that waited without an attempt: over a quota, or their endpoint paused",
    ["reason"],
)
ENDPOINTS_PAUSED = Counter(
    "webhookd_endpoints_paused_total", "Endpoints paused by a 429 or 503 with Retry-After"
)
# Per partition (label: its stream name, so as many series as stream.partitions), sampled
# with the retry backlog from Store.partition_stats.
CONSUMER_LAG = Gauge(
    "webhookd_consumer_lag",
    "Entries in the partition's stream not yet read by the consumer group",
    ["partition"],
)
CONSUMER_PENDING = Gauge(
    "webhookd_consumer_pending",
    "Entries read by the consumer group and not yet acknowledged",
    ["partition"],
)
HELD_DELIVERIES = Gauge(
    "webhookd_held_deliveries",
    "Deliveries held while their endpoint is disabled",
    ["partition"],
)
DEFERRED_DELIVERIES = Gauge(
    "webhookd_deferred_deliveries",
    "Deliveries waiting without an attempt: over a quota, or their endpoint paused",
    ["partition"],
)
