"""The delivery path in one place: a batch of deliveries from intake or the scheduler
is judged, each goes into its endpoint's lane, is sent, and its outcome goes to the
recorder::

    judge -> dispatch -> Lanes (per endpoint) -> Sender.send -> outcome_writes -> Recorder
      \\ over a quota, endpoint paused:  \\ lane full: deferred      \\ retry: Wakeup.at(due)
         deferred (or dead-lettered)      to the retry set

``judge`` is where a batch meets the vendors' quotas (``webhookd.quotas``: one hit per
vendor, coalesced) and paused endpoints; with quotas off and no endpoint paused it
returns at once, and the batch pays nothing. A deferred delivery waits in the retry set
without using an attempt, and its record says why.

A delivery due to a disabled endpoint is held (``model.hold_writes``), never dropped:
at dispatch, or when its endpoint was disabled while it waited in its lane.

The side effects of an outcome beyond its writes live here too: a 410 disables the
endpoint (here at once, in Redis if it still can), a 429 or 503 with Retry-After
pauses it (capped by ``delivery.max_pause``), and every attempt counts towards its
endpoint's health (``webhookd.endpoint_health``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import structlog

from webhookd.clock import EpochClock
from webhookd.endpoint_health import EndpointHealth
from webhookd.endpoints import Endpoint
from webhookd.errors import StoreError, WebhookdError
from webhookd.events import format_timestamp
from webhookd.lanes import Lanes
from webhookd.metrics import (
    DEAD_LETTERS,
    DEFERRED,
    ENDPOINTS_DISABLED,
    ENDPOINTS_PAUSED,
    HELD,
    QUOTA_DEFERRED,
)
from webhookd.model import (
    Delivery,
    RecordAttempt,
    ScheduleRetry,
    Write,
    deferral_writes,
    hold_writes,
    outcome_writes,
    refusal_writes,
)
from webhookd.quota import Defer, Refuse, Verdict, pause_until
from webhookd.quotas import Quotas
from webhookd.recorder import Recorder
from webhookd.registry import EndpointTable, Registry
from webhookd.retry import Gone, RetryAt
from webhookd.scheduler import Wakeup
from webhookd.sender import Attempted, Sender

log = structlog.get_logger("webhookd.pipeline")

DEFER_S = 1.0  # how long a delivery to a saturated endpoint waits in the retry set
LANE_QUEUE_FACTOR = 4  # deliveries one endpoint may have queued: its concurrency times this


@dataclass(frozen=True, slots=True)
class Busy:
    """Its endpoint's lane is full: back to the retry set for ``DEFER_S``, not counted."""


BUSY = Busy()
Judged = Verdict | Busy


class Pipeline:
    def __init__(
        self,
        *,
        sender: Sender,
        recorder: Recorder,
        registry: Registry,
        table: EndpointTable,
        clock: EpochClock,
        wakeup: Wakeup,
        max_in_flight: int,
        quotas: Quotas | None = None,
        max_pause_s: float = 0.0,
        health: EndpointHealth | None = None,
    ) -> None:
        self._sender = sender
        self._recorder = recorder
        self._registry = registry
        self._table = table
        self._clock = clock
        self._wakeup = wakeup
        self._quotas = quotas
        self._max_pause_s = max_pause_s
        self._health = health
        self.lanes = Lanes(self._deliver, max_in_flight=max_in_flight,
                           queue_factor=LANE_QUEUE_FACTOR)  # fmt: skip

    async def judge(self, deliveries: Sequence[Delivery]) -> list[Judged] | None:
        """What each delivery of a batch may do now: go (None), wait, or be dead-lettered;
        None for the whole batch when nothing limits it. Deliveries that will not be
        attempted now (their lane is full, their endpoint gone or disabled) are not counted
        against a quota. Raises StoreError."""
        table, quotas = self._table, self._quotas
        if quotas is None and not table.paused:
            return None
        now_s = self._clock.now_s()
        verdicts: list[Judged] = [None] * len(deliveries)
        counted: list[int] = []
        queued: dict[str, int] = {}
        for index, delivery in enumerate(deliveries):
            endpoint_id = delivery.endpoint_id
            until = table.paused_until(endpoint_id, now_s) if table.paused else None
            if until is not None:
                verdicts[index] = Defer(until, paused_reason(until))
            elif quotas is not None:
                endpoint = table.get(endpoint_id)
                if endpoint is None or not endpoint.enabled:
                    continue  # not attempted (the sender dead-letters it), so not counted
                room = self._sender.concurrency_of(endpoint) * LANE_QUEUE_FACTOR
                ahead = queued.get(endpoint_id, self.lanes.queued(endpoint_id))
                if ahead >= room:
                    verdicts[index] = BUSY
                else:
                    queued[endpoint_id] = ahead + 1
                    counted.append(index)
        if quotas is not None and counted:
            judged = await quotas.judge([deliveries[index] for index in counted])
            for index, verdict in zip(counted, judged, strict=True):
                verdicts[index] = verdict
        return verdicts

    async def dispatch_all(
        self, deliveries: Sequence[Delivery], verdicts: Sequence[Judged] | None
    ) -> None:
        """Act on ``judge``'s verdicts: queue, defer or dead-letter each delivery."""
        if verdicts is None:
            for delivery in deliveries:
                await self.dispatch(delivery)
            return
        counted = self._quotas is not None
        for delivery, verdict in zip(deliveries, verdicts, strict=True):
            match verdict:
                case None:
                    await self.dispatch(delivery, counted=counted)
                case Busy():
                    self._busy(delivery)
                case Defer(due_s=due_s, reason=reason):
                    self._defer(delivery, due_s, reason)
                case Refuse(reason=reason):
                    DEAD_LETTERS.inc()
                    log.info("delivery.refused", event_id=delivery.event.id,
                             endpoint_id=delivery.endpoint_id, reason=reason)  # fmt: skip
                    self._recorder.settled(delivery, refusal_writes(delivery, reason))

    async def dispatch(self, delivery: Delivery, *, counted: bool = False) -> None:
        """Queue a delivery on its endpoint's lane (waiting for room in the process), or,
        when that lane is full, defer it to the retry set so one slow endpoint cannot take
        every slot. One ``counted`` against a quota is queued even then: ``judge`` kept
        the lane's bound for its batch, and others may have filled it since."""
        endpoint = self._table.get(delivery.endpoint_id)
        if endpoint is not None and not endpoint.enabled:
            self._hold(delivery, endpoint)
            return
        await self.lanes.admit()
        concurrency = self._sender.concurrency_of(endpoint)
        if not self.lanes.offer(delivery, concurrency, force=counted):
            self._busy(delivery)

    def _busy(self, delivery: Delivery) -> None:
        DEFERRED.inc()
        due_s = self._clock.now_s() + DEFER_S
        deferred = dataclasses.replace(delivery, scheduled=True)
        writes: list[Write] = [ScheduleRetry(deferred, due_s)]
        if delivery.acks is not None:
            # A first attempt has no record yet: write one, or intake, reclaiming the
            # entry before its ack lands, would see it untaken and send it a second time.
            writes.insert(0, RecordAttempt(delivery, "scheduled", None, due_s))
        self._recorder.settled(delivery, writes)
        self._wakeup.at(due_s)

    def _hold(self, delivery: Delivery, endpoint: Endpoint) -> None:
        HELD.inc()
        reason = f"endpoint disabled: {endpoint.disabled_reason or 'disabled'}"
        self._recorder.settled(delivery, hold_writes(delivery, self._clock.now_s(), reason))

    def _defer(self, delivery: Delivery, due_s: float, reason: str) -> None:
        QUOTA_DEFERRED.labels("paused" if reason.startswith(PAUSED) else "quota").inc()
        self._recorder.settled(delivery, deferral_writes(delivery, due_s, reason))
        self._wakeup.at(due_s)

    async def _deliver(self, delivery: Delivery) -> None:
        endpoint = self._table.get(delivery.endpoint_id)
        if endpoint is not None and not endpoint.enabled:  # disabled while it waited
            self._hold(delivery, endpoint)
            return
        if self._table.paused:  # paused while the delivery waited in its lane
            until = self._table.paused_until(delivery.endpoint_id, self._clock.now_s())
            if until is not None:
                self._defer(delivery, until, paused_reason(until))
                return
        attempted = await self._sender.send(delivery, endpoint)
        outcome = attempted.outcome
        self._recorder.settled(delivery, outcome_writes(delivery, outcome, attempted.record))
        if isinstance(outcome, RetryAt):
            self._wakeup.at(outcome.due_s)
        elif isinstance(outcome, Gone) and endpoint is not None:
            ENDPOINTS_DISABLED.labels("gone").inc()
            await self._disable(delivery.endpoint_id)
        if attempted.record.result.retry_after_s is not None:
            await self._pause(attempted)
        if self._health is not None and endpoint is not None:
            await self._health.observe(delivery.endpoint_id, attempted.record, outcome)

    async def _pause(self, attempted: Attempted) -> None:
        """Hold the endpoint's other deliveries for as long as its answer asked, here at
        once and in Redis for every daemon; a failure to store it is only logged."""
        result, endpoint_id = attempted.record.result, attempted.delivery.endpoint_id
        now_s = self._clock.now_s()
        until = pause_until(result.status, result.retry_after_s, now_s, self._max_pause_s)
        if until is None or until <= (self._table.paused.get(endpoint_id) or 0.0):
            return
        ENDPOINTS_PAUSED.inc()
        self._table.pause(endpoint_id, until)
        reason = f"HTTP {result.status} with Retry-After"
        log.info("endpoint.paused", endpoint_id=endpoint_id, until=format_timestamp(until),
                 reason=reason)  # fmt: skip
        try:
            await self._registry.pause(endpoint_id, until, reason)
        except StoreError as exc:
            log.warning("endpoint.pause_failed", endpoint_id=endpoint_id, error=str(exc))

    async def _disable(self, endpoint_id: str) -> None:
        """The delivery is already dead-lettered; a failure here (the endpoint removed
        meanwhile, Redis unreachable) is logged and must not take the daemon down."""
        reason, error = "answered 410 Gone", "HTTP 410"
        endpoint = self._table.get(endpoint_id)
        if endpoint is not None:
            self._table.update(endpoint.disabled(reason, by="gone", last_status=410,
                                                 last_error=error))  # fmt: skip
        try:
            await self._registry.set_enabled(endpoint_id, False, reason, by="gone",
                                             last_status=410, last_error=error)  # fmt: skip
        except (WebhookdError, StoreError) as exc:
            log.warning("endpoint.disable_failed", endpoint_id=endpoint_id, error=str(exc))


PAUSED = "endpoint paused"


def paused_reason(until_s: float) -> str:
    return f"{PAUSED} until {format_timestamp(until_s)}: it answered 429 or 503 with Retry-After"
