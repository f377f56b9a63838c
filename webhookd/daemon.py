"""The daemon's task tree: intake, reclaim and retry loops feeding deliveries, and shutdown.

::

    run
    ├── admin API           /v1/…, /metrics, /healthz (stops last)
    ├── recorder            writes outcomes and acks, in batches
    └── deliveries          one task per attempt, at most delivery.max_in_flight
        └── intake          cancelled first on shutdown
            ├── read loop       XREADGROUP new entries
            ├── reclaim loop    XAUTOCLAIM entries dead consumers left pending;
            │                   trim what is past stream.retention
            └── retry loop      claim due retries from the retry set

Shutdown (:meth:`Daemon.stop`): intake stops; in-flight deliveries get
``delivery.shutdown_grace`` seconds to finish and be recorded; whatever is cut short
stays pending in Redis (unacked entry, leased retry) and is taken up again later.
"""

from __future__ import annotations

import os
import random
import secrets
import socket
from collections import Counter
from collections.abc import Sequence
from functools import partial

import coredis
import structlog
import trio

from httpserve import serve
from webhookd.admin import AdminApi
from webhookd.catalog import event_rules
from webhookd.clock import EpochClock
from webhookd.config import Settings
from webhookd.delivery import Delivery, EntryRef, corrupt_retry_ops, malformed_ops, schedule_ops
from webhookd.dispatcher import Dispatcher
from webhookd.egress import delivery_transport
from webhookd.errors import InvalidEventError
from webhookd.events import parse_entry
from webhookd.metrics import DEFERRED, EVENTS_MALFORMED, EVENTS_READ, REDIS_ERRORS
from webhookd.queue import Entry, Queue
from webhookd.recorder import Recorder
from webhookd.registry import EndpointTable, registry_for
from webhookd.retry import RetryPolicy
from webhookd.transport import Transport

log = structlog.get_logger("webhookd.daemon")

RETRY_POLL_S = 1.0
RETRY_CLAIM_LIMIT = 500
REDIS_BACKOFF_S = (0.1, 0.5, 1.0, 2.0, 5.0)
RECORDER_FLUSH_S = 10.0
ENDPOINT_QUEUE_FACTOR = 4  # deliveries one endpoint may have started: its pool size times this
DEFER_S = 1.0  # how long a delivery to a saturated endpoint waits in the retry set


def consumer_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


class Daemon:
    def __init__(
        self,
        settings: Settings,
        client: coredis.Redis[bytes],
        *,
        transport: Transport | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self._settings = settings
        self._client = client
        self._transport = transport or delivery_transport(settings.delivery)
        self._event_rules = event_rules(settings)
        self._rng = rng or random.Random()
        self.consumer = settings.stream.consumer or consumer_name()
        self.queue = Queue(
            client, settings.stream, settings.redis.key_prefix, settings.delivery.record_ttl_s
        )
        self.registry = registry_for(client, settings)
        self._table = EndpointTable(self.registry)
        self._recorder = Recorder(self.queue)
        self._slots = trio.Semaphore(settings.delivery.max_in_flight)
        self._queued: Counter[str] = Counter()  # deliveries started, by endpoint, not yet done
        self._queue_cap = settings.delivery.endpoint_concurrency * ENDPOINT_QUEUE_FACTOR
        self._intake = trio.CancelScope()
        self._everything = trio.CancelScope()
        self.admin_port = 0

    def stop(self) -> None:
        """Stop taking work; in-flight deliveries finish within the shutdown grace."""
        self._intake.cancel()

    def abort(self) -> None:
        """Stop now; whatever was in flight is taken up again after restart."""
        self._everything.cancel()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        clock = EpochClock()
        settings = self._settings
        await self.queue.ensure_group()
        await self._table.refresh()
        self._dispatcher = Dispatcher(
            settings=settings.delivery,
            policy=RetryPolicy(settings.retry.schedule_s, settings.retry.jitter),
            transport=self._transport,
            recorder=self._recorder,
            registry=self.registry,
            table=self._table,
            clock=clock,
            dead_stream=self.queue.dead_stream,
            rng=self._rng,
        )
        self._clock = clock
        log.info("daemon.started", consumer=self.consumer, streams=self.queue.streams,
                 group=settings.stream.group)  # fmt: skip
        admin = AdminApi(token=settings.admin.token, registry=self.registry, queue=self.queue,
                         client=self._client, clock=clock)  # fmt: skip
        host, port = settings.admin.address
        with self._everything:
            async with trio.open_nursery() as services:
                self.admin_port = await services.start(
                    partial(serve, server_name="webhookd"), admin.handle, host, port
                )
                log.info("admin.listening", host=host, port=self.admin_port)
                async with trio.open_nursery() as outer:
                    outer.start_soon(self._recorder.run)
                    async with trio.open_nursery() as deliveries:
                        self._deliveries = deliveries
                        with self._intake:
                            async with trio.open_nursery() as intake:
                                intake.start_soon(self._supervise, "read", self._read_loop)
                                intake.start_soon(self._supervise, "reclaim", self._reclaim_loop)
                                intake.start_soon(self._supervise, "retry", self._retry_loop)
                                task_status.started()
                        log.info("daemon.draining", grace_s=settings.delivery.shutdown_grace_s)
                        deliveries.cancel_scope.deadline = (
                            trio.current_time() + settings.delivery.shutdown_grace_s
                        )
                    self._recorder.close()
                    outer.cancel_scope.deadline = trio.current_time() + RECORDER_FLUSH_S
                services.cancel_scope.cancel()
        await self._transport.aclose()
        log.info("daemon.stopped", consumer=self.consumer)

    async def _supervise(self, name: str, loop: object) -> None:
        """Keep a loop alive through Redis outages: log, back off, go again."""
        failures = 0
        while True:
            try:
                await loop()  # type: ignore[operator]
                return
            except (coredis.exceptions.RedisError, OSError) as exc:
                REDIS_ERRORS.labels(name).inc()
                delay = REDIS_BACKOFF_S[min(failures, len(REDIS_BACKOFF_S) - 1)]
                log.warning("daemon.redis_error", loop=name, error=str(exc), retry_in_s=delay)
                failures += 1
                await trio.sleep(delay)

    async def _read_loop(self) -> None:
        stream = self._settings.stream
        block_ms = max(1, int(stream.block_s * 1000))
        while True:
            entries = await self.queue.read_new(self.consumer, stream.batch_size, block_ms)
            if entries:
                EVENTS_READ.labels("new").inc(len(entries))
                await self._take(entries)

    async def _reclaim_loop(self) -> None:
        stream = self._settings.stream
        min_idle_ms = int(stream.reclaim_idle_s * 1000)
        while True:
            entries = await self.queue.reclaim(self.consumer, min_idle_ms, stream.batch_size)
            if entries:
                EVENTS_READ.labels("reclaimed").inc(len(entries))
                log.info("daemon.reclaimed", entries=len(entries))
                await self._take(entries)
            else:
                trimmed = await self.queue.trim(self._clock.now_s(), stream.retention_s)
                if trimmed:
                    log.info("stream.trimmed", entries=trimmed)
                await trio.sleep(stream.reclaim_idle_s / 2)

    async def _take(self, entries: Sequence[Entry]) -> None:
        """Fan entries out into deliveries; reclaimed ones skip deliveries already recorded."""
        await self._table.refresh()
        now_s = self._clock.now_s()
        reclaimed_ids = []
        events = []
        for entry in entries:
            ref = EntryRef(entry.stream, entry.entry_id)
            if self._recorder.is_pending(ref):
                continue
            try:
                event = parse_entry(entry.entry_id, entry.fields, now_s, self._event_rules)
            except InvalidEventError as exc:
                self._dead_letter_malformed(ref, entry, str(exc))
                continue
            events.append((ref, event))
            if entry.reclaimed:
                reclaimed_ids.append(event.id)
        recorded = await self.queue.states(reclaimed_ids)
        for ref, event in events:
            done = recorded.get(event.id, {})
            targets = [
                e for e in self._table.for_event(event.vendor, event.type) if e.id not in done
            ]
            self._recorder.expect(ref, len(targets))
            for endpoint in targets:
                await self._dispatch(Delivery(event, endpoint.id, entry=ref, origin=ref))

    async def _dispatch(self, delivery: Delivery) -> None:
        """Start an attempt, or, when its endpoint already has a full queue in this process,
        defer it to the retry set so one slow endpoint cannot take every slot."""
        endpoint_id = delivery.endpoint_id
        if self._queued[endpoint_id] >= self._queue_cap:
            DEFERRED.inc()
            due_s = self._clock.now_s() + DEFER_S
            self._recorder.settled(
                delivery.entry, schedule_ops(delivery, due_s, delivery.attempts_made)
            )
            return
        await self._slots.acquire()
        self._queued[endpoint_id] += 1
        self._deliveries.start_soon(self._attempt, delivery)

    def _dead_letter_malformed(self, ref: EntryRef, entry: Entry, reason: str) -> None:
        EVENTS_MALFORMED.inc()
        raw = {k.decode("utf-8", "replace"): v.decode("utf-8", "replace")
               for k, v in entry.fields.items()}  # fmt: skip
        log.warning("event.malformed", stream=ref.stream, entry_id=ref.entry_id, reason=reason)
        self._recorder.write(malformed_ops(ref, raw, reason, self.queue.dead_stream))

    async def _attempt(self, delivery: Delivery) -> None:
        endpoint_id = delivery.endpoint_id
        try:
            await self._dispatcher.attempt(delivery, self._table.get(endpoint_id))
        finally:
            self._slots.release()
            self._queued[endpoint_id] -= 1
            if not self._queued[endpoint_id]:
                del self._queued[endpoint_id]

    async def _retry_loop(self) -> None:
        dispatcher = self._dispatcher
        lease_ms = int((self._settings.delivery.timeout_s * 2 + 30) * 1000)
        while True:
            now_s = self._clock.now_s()
            limit = max(1, min(RETRY_CLAIM_LIMIT, self._slots.value))
            due = await self.queue.claim_due(int(now_s * 1000), lease_ms, limit)
            if due:
                await self._table.refresh()
            for item in due:
                try:
                    delivery = Delivery.from_payload(item.payload)
                except (ValueError, KeyError, TypeError) as exc:
                    log.error("retry.corrupt", member=item.member, error=str(exc))
                    self._recorder.write(
                        corrupt_retry_ops(
                            item.member, item.payload, str(exc), self.queue.dead_stream
                        )
                    )
                    continue
                await self._dispatch(delivery)
            if len(due) == limit:
                continue
            if dispatcher.retry_scheduled.is_set():
                dispatcher.retry_scheduled = trio.Event()
            if dispatcher.earliest_retry_s <= now_s:
                dispatcher.earliest_retry_s = float("inf")
            next_due_ms = await self.queue.next_due_ms()
            wake_s = min(
                dispatcher.earliest_retry_s,
                now_s + RETRY_POLL_S,
                float("inf") if next_due_ms is None else next_due_ms / 1000,
            )
            with trio.move_on_after(max(0.0, wake_s - self._clock.now_s())):
                await dispatcher.retry_scheduled.wait()
