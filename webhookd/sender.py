"""Sending one delivery: sign, POST, classify, decide what comes next.

The sender holds no shared state and writes nothing: it turns a delivery and its
endpoint into an ``Attempted`` value (the attempt's record and its outcome) that the
caller makes durable. The per-attempt log event ``delivery.attempt`` is the canonical
record of what happened, bound with the event, endpoint and attempt number.
"""

from __future__ import annotations

import dataclasses
import logging
import random

import structlog
import trio

from webhookd import __version__
from webhookd.clock import EpochClock
from webhookd.endpoints import Endpoint
from webhookd.errors import EndpointError, TransportError
from webhookd.events import Event
from webhookd.http1 import Response
from webhookd.metrics import ATTEMPT_SECONDS, ATTEMPTS_BY_OUTCOME, DEAD_LETTERS
from webhookd.model import AttemptRecord, Delivery, EntryRef, state_name
from webhookd.retry import (
    RETRY_AFTER_STATUSES,
    AttemptResult,
    DeadLetter,
    Gone,
    Outcome,
    RetryPolicy,
    decide,
    parse_retry_after,
)
from webhookd.signing import signature_headers
from webhookd.tls import TlsContexts
from webhookd.transport import Transport
from webhookd.values import value_type

log = structlog.get_logger("webhookd.delivery")

USER_AGENT = f"webhookd/{__version__}"
STATIC_HEADERS = (("Content-Type", "application/json"), ("User-Agent", USER_AGENT))
Headers = tuple[tuple[str, str], ...]


def request_headers(event: Event, endpoint: Endpoint, now_s: float) -> list[tuple[str, str]]:
    """The headers that change with every attempt (the static ones are the endpoint's),
    signed by every key of the endpoint live at ``now_s``."""
    return [
        ("X-Event-Type", event.type),
        ("X-Event-ID", event.id),
        *signature_headers(
            endpoint.keys_at(now_s), event.id, int(now_s), event.body, endpoint.signers_at(now_s)
        ),
    ]


@value_type
class Attempted:
    delivery: Delivery  # as it was attempted (attempts_made not yet counting this one)
    record: AttemptRecord
    outcome: Outcome


class Sender:
    """Sends with each endpoint's own options (``webhookd.options``), the global ones
    where it has none."""

    def __init__(
        self,
        *,
        transport: Transport,
        policy: RetryPolicy,
        clock: EpochClock,
        rng: random.Random,
        timeout_s: float,
        concurrency: int,
    ) -> None:
        self._transport = transport
        self._policy = policy
        self._clock = clock
        self._rng = rng
        # Logging is configured before anything sends; asking each time costs a lookup
        # through structlog's proxy, and the attempt line's fields cost more.
        self._log_attempts = log.is_enabled_for(logging.INFO)
        self._timeout_s = timeout_s
        self.concurrency = concurrency
        self._tls = TlsContexts()
        # per endpoint: its headers (by identity) and what they make, built once
        self._heads: dict[str, tuple[Headers, Headers]] = {}
        self._policies: dict[tuple[float, ...], RetryPolicy] = {}

    def concurrency_of(self, endpoint: Endpoint | None) -> int:
        if endpoint is None or endpoint.options.concurrency is None:
            return self.concurrency
        return endpoint.options.concurrency

    def policy_of(self, endpoint: Endpoint) -> RetryPolicy:
        schedule = endpoint.options.retry_schedule
        if schedule is None:
            return self._policy
        policy = self._policies.get(schedule)
        if policy is None:
            policy = dataclasses.replace(self._policy, schedule_s=schedule)
            self._policies[schedule] = policy
        return policy

    def _static_headers(self, endpoint: Endpoint) -> Headers:
        """The constant headers: ours, then the endpoint's (the same tuple each time, so
        the transport renders them once)."""
        extra = endpoint.options.headers
        if not extra:
            return STATIC_HEADERS
        known = self._heads.get(endpoint.id)
        if known is None or known[0] is not extra:
            known = self._heads[endpoint.id] = (extra, STATIC_HEADERS + extra)
        return known[1]

    async def send(self, delivery: Delivery, endpoint: Endpoint | None) -> Attempted:
        """One attempt, start to outcome; never raises for the receiver's faults."""
        if endpoint is None or not endpoint.enabled:
            return self._not_attempted(delivery, endpoint)
        record, ended_s = await self._post(delivery, endpoint)
        outcome = decide(self.policy_of(endpoint), record.result, record.number, ended_s,
                         self._rng.random())  # fmt: skip
        return self._logged(Attempted(delivery, record, outcome))

    async def probe(self, event: Event, endpoint: Endpoint) -> AttemptRecord:
        """One signed POST of ``event`` outside any delivery (``endpoint test``): sent
        whether or not the endpoint is enabled, nothing decided or recorded."""
        record, _ = await self._post(Delivery(event, endpoint.id, EntryRef("", "")), endpoint)
        return record

    async def _post(self, delivery: Delivery, endpoint: Endpoint) -> tuple[AttemptRecord, float]:
        """The attempt's record, and the epoch time it ended (one reading of the clock for
        the attempt's start and one for its end)."""
        event = delivery.event
        started = trio.current_time()
        started_s = self._clock.at(started)
        response: Response | None = None
        error = ""
        try:
            if endpoint.locked:
                raise EndpointError(f"not sent: {endpoint.locked}")
            response = await self._transport.post(
                endpoint.id,
                endpoint.url,
                request_headers(event, endpoint, started_s),
                event.body,
                static_headers=self._static_headers(endpoint),
                size=self.concurrency_of(endpoint),
                timeout_s=endpoint.options.timeout_s or self._timeout_s,
                ssl_context=self._tls.context_for(endpoint),
            )
        except (TransportError, EndpointError) as exc:
            error = str(exc)
        ended = trio.current_time()
        ended_s, duration = self._clock.at(ended), ended - started
        ATTEMPT_SECONDS.observe(duration)
        number = delivery.attempts_made + 1
        if response is None:
            result = AttemptResult(status=None, error=error)
            return AttemptRecord(number, started_s, duration, result, ""), ended_s
        retry_after = None
        if response.status in RETRY_AFTER_STATUSES:
            value = response.header("retry-after")
            retry_after = parse_retry_after(response.status, value, ended_s)
        result = AttemptResult(status=response.status, error=None, retry_after_s=retry_after)
        excerpt = response.body.decode("utf-8", "replace")
        return AttemptRecord(number, started_s, duration, result, excerpt), ended_s

    def _not_attempted(self, delivery: Delivery, endpoint: Endpoint | None) -> Attempted:
        """A delivery whose endpoint was removed or disabled meanwhile: dead-letter it untried."""
        why = "endpoint removed" if endpoint is None else "endpoint disabled"
        result = AttemptResult(status=None, error=f"not attempted: {why}")
        record = AttemptRecord(delivery.attempts_made, self._clock.now_s(), 0.0, result, "")
        return self._logged(Attempted(delivery, record, DeadLetter(why)))

    def _logged(self, attempted: Attempted) -> Attempted:
        delivery, record, outcome = attempted.delivery, attempted.record, attempted.outcome
        state = state_name(outcome)
        ATTEMPTS_BY_OUTCOME[state].inc()
        if isinstance(outcome, DeadLetter | Gone):
            DEAD_LETTERS.inc()
        if not self._log_attempts:
            return attempted
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
        return attempted
