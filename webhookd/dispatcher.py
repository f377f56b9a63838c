"""Attempting one delivery: sign, POST, decide what comes next, hand the outcome on.

The per-attempt log event ``delivery.attempt`` is the canonical record of what
happened, bound with the event, endpoint and attempt number.
"""

from __future__ import annotations

import random

import coredis
import structlog
import trio

from webhookd.clock import EpochClock
from webhookd.config import DeliverySettings
from webhookd.delivery import AttemptRecord, Delivery, record_ops, request_headers, state_name
from webhookd.endpoints import Endpoint
from webhookd.errors import EndpointError, TransportError, WebhookdError
from webhookd.metrics import ATTEMPT_SECONDS, ATTEMPTS, DEAD_LETTERS, ENDPOINTS_GONE, IN_FLIGHT
from webhookd.recorder import Recorder
from webhookd.registry import EndpointTable, Registry
from webhookd.retry import (
    AttemptResult,
    DeadLetter,
    Gone,
    Outcome,
    RetryAt,
    RetryPolicy,
    decide,
    parse_retry_after,
)
from webhookd.tls import TlsContexts
from webhookd.transport import Transport

log = structlog.get_logger("webhookd.delivery")


class Dispatcher:
    def __init__(
        self,
        *,
        settings: DeliverySettings,
        policy: RetryPolicy,
        transport: Transport,
        recorder: Recorder,
        registry: Registry,
        table: EndpointTable,
        clock: EpochClock,
        dead_stream: str,
        rng: random.Random,
    ) -> None:
        self._settings = settings
        self._policy = policy
        self._transport = transport
        self._recorder = recorder
        self._registry = registry
        self._table = table
        self._clock = clock
        self._dead_stream = dead_stream
        self._rng = rng
        self._tls = TlsContexts()
        self.retry_scheduled = trio.Event()
        self.earliest_retry_s = float("inf")

    async def attempt(self, delivery: Delivery, endpoint: Endpoint | None) -> None:
        """One attempt, start to durable outcome; never raises for the receiver's faults."""
        IN_FLIGHT.inc()
        try:
            if endpoint is None or not endpoint.enabled:
                self._give_up(delivery, endpoint)
                return
            record = await self._send(delivery, endpoint)
        finally:
            IN_FLIGHT.dec()
        number = delivery.attempts_made + 1
        outcome = decide(
            self._policy, record.result, number, self._clock.now_s(), self._rng.random()
        )
        self._recorder.settled(
            delivery.entry, record_ops(delivery, outcome, record, self._dead_stream)
        )
        self._account(delivery, endpoint, record, outcome)
        if isinstance(outcome, Gone):
            await self._disable(endpoint)

    async def _disable(self, endpoint: Endpoint) -> None:
        """Disable an endpoint that answered 410: here at once, in Redis if it still can.

        The delivery is already dead-lettered; a failure here (the endpoint removed
        meanwhile, Redis unreachable) is logged and must not take the daemon down."""
        reason = "answered 410 Gone"
        self._table.update(endpoint.disabled(reason))
        try:
            await self._registry.set_enabled(endpoint.id, False, reason)
        except (WebhookdError, coredis.exceptions.RedisError, OSError) as exc:
            log.warning("endpoint.disable_failed", endpoint_id=endpoint.id, error=str(exc))

    async def _send(self, delivery: Delivery, endpoint: Endpoint) -> AttemptRecord:
        event = delivery.event
        started_s = self._clock.now_s()
        started = trio.current_time()
        excerpt = ""
        try:
            if endpoint.locked:
                raise EndpointError(f"not sent: {endpoint.locked}")
            headers = request_headers(
                event, endpoint.keys_at(started_s), int(started_s), endpoint.signers_at(started_s)
            )
            response = await self._transport.post(
                endpoint.id,
                endpoint.url,
                headers,
                event.body,
                size=self._settings.endpoint_concurrency,
                timeout_s=self._settings.timeout_s,
                ssl_context=self._tls.context_for(endpoint),
            )
        except (TransportError, EndpointError) as exc:
            result = AttemptResult(status=None, error=str(exc))
        else:
            retry_after = parse_retry_after(
                response.status, response.header("retry-after"), self._clock.now_s()
            )
            result = AttemptResult(status=response.status, error=None, retry_after_s=retry_after)
            excerpt = response.body.decode("utf-8", "replace")
        duration = trio.current_time() - started
        ATTEMPT_SECONDS.observe(duration)
        return AttemptRecord(delivery.attempts_made + 1, started_s, duration, result, excerpt)

    def _give_up(self, delivery: Delivery, endpoint: Endpoint | None) -> None:
        """A retry whose endpoint was removed or disabled meanwhile: dead-letter it untried."""
        why = "endpoint removed" if endpoint is None else "endpoint disabled"
        result = AttemptResult(status=None, error=f"not attempted: {why}")
        record = AttemptRecord(delivery.attempts_made, self._clock.now_s(), 0.0, result, "")
        outcome = DeadLetter(why)
        self._recorder.settled(
            delivery.entry, record_ops(delivery, outcome, record, self._dead_stream)
        )
        self._account(delivery, endpoint, record, outcome)

    def _account(
        self, delivery: Delivery, endpoint: Endpoint | None, record: AttemptRecord, outcome: Outcome
    ) -> None:
        state = state_name(outcome)
        ATTEMPTS.labels(state).inc()
        if isinstance(outcome, DeadLetter | Gone):
            DEAD_LETTERS.inc()
        if isinstance(outcome, Gone):
            ENDPOINTS_GONE.inc()
        if isinstance(outcome, RetryAt) and outcome.due_s < self.earliest_retry_s:
            self.earliest_retry_s = outcome.due_s
            self.retry_scheduled.set()
        log.info(
            "delivery.attempt",
            event_id=delivery.event.id,
            event_type=delivery.event.type,
            endpoint_id=delivery.endpoint_id,
            vendor=delivery.event.vendor,
            attempt=record.number,
            status=record.result.status,
            error=record.result.error,
            duration_ms=round(record.duration_s * 1000, 2),
            outcome=state,
        )
