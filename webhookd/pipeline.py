"""The delivery path in one place: a delivery from intake or the scheduler goes into its
endpoint's lane, is sent, and its outcome goes to the recorder::

    dispatch -> Lanes (per endpoint) -> Sender.send -> outcome_writes -> Recorder
                   \\ lane full: deferred to the retry set      \\ retry: Wakeup.at(due)

The side effects of an outcome beyond its writes live here too: a 410 disables the
endpoint (here at once, in Redis if it still can).
"""

from __future__ import annotations

import dataclasses

import structlog

from webhookd.clock import EpochClock
from webhookd.errors import StoreError, WebhookdError
from webhookd.lanes import Lanes
from webhookd.metrics import DEFERRED, ENDPOINTS_GONE
from webhookd.model import Delivery, RecordAttempt, ScheduleRetry, Write, outcome_writes
from webhookd.recorder import Recorder
from webhookd.registry import EndpointTable, Registry
from webhookd.retry import Gone, RetryAt
from webhookd.scheduler import Wakeup
from webhookd.sender import Sender

log = structlog.get_logger("webhookd.pipeline")

DEFER_S = 1.0  # how long a delivery to a saturated endpoint waits in the retry set
LANE_QUEUE_FACTOR = 4  # deliveries one endpoint may have queued: its concurrency times this


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
        concurrency: int,
    ) -> None:
        self._sender = sender
        self._recorder = recorder
        self._registry = registry
        self._table = table
        self._clock = clock
        self._wakeup = wakeup
        self._concurrency = concurrency
        self.lanes = Lanes(self._deliver, max_in_flight=max_in_flight,
                           queue_factor=LANE_QUEUE_FACTOR)  # fmt: skip

    async def dispatch(self, delivery: Delivery) -> None:
        """Queue a delivery on its endpoint's lane (waiting for room in the process), or,
        when that lane is full, defer it to the retry set so one slow endpoint cannot take
        every slot."""
        await self.lanes.admit()
        if self.lanes.offer(delivery, self._concurrency):
            return
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

    async def _deliver(self, delivery: Delivery) -> None:
        endpoint = self._table.get(delivery.endpoint_id)
        attempted = await self._sender.send(delivery, endpoint)
        outcome = attempted.outcome
        self._recorder.settled(delivery, outcome_writes(delivery, outcome, attempted.record))
        if isinstance(outcome, RetryAt):
            self._wakeup.at(outcome.due_s)
        elif isinstance(outcome, Gone) and endpoint is not None:
            ENDPOINTS_GONE.inc()
            await self._disable(delivery.endpoint_id)

    async def _disable(self, endpoint_id: str) -> None:
        """The delivery is already dead-lettered; a failure here (the endpoint removed
        meanwhile, Redis unreachable) is logged and must not take the daemon down."""
        reason = "answered 410 Gone"
        endpoint = self._table.get(endpoint_id)
        if endpoint is not None:
            self._table.update(endpoint.disabled(reason))
        try:
            await self._registry.set_enabled(endpoint_id, False, reason)
        except (WebhookdError, StoreError) as exc:
            log.warning("endpoint.disable_failed", endpoint_id=endpoint_id, error=str(exc))
