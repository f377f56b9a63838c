"""The daemon's task tree and its shutdown; the parts are built and wired here, and
nothing else happens here.

::

    run
    ├── admin API             /v1/…, /metrics, /healthz, /readyz (stops last)
    ├── recorder              writes outcomes and acks, in batches (webhookd.recorder)
    └── lanes                 per-endpoint workers sending deliveries (webhookd.pipeline)
        └── intake            cancelled first on shutdown
            ├── read loops    one per partition: XREADGROUP (webhookd.intake)
            ├── reclaim loop  XAUTOCLAIM, and trimming past stream.retention
            └── scheduler     claims due retries (webhookd.scheduler)

Shutdown (:meth:`Daemon.stop`): intake stops; in-flight deliveries get
``delivery.shutdown_grace`` seconds to finish and be recorded; whatever is cut short
stays pending in Redis (unacked entry, leased retry) and is taken up again later.
"""

from __future__ import annotations

import os
import random
import secrets
import socket
import time
from functools import partial

import structlog
import trio

from httpserve import serve
from webhookd.admin import AdminApi
from webhookd.catalog import event_rules
from webhookd.clock import EpochClock
from webhookd.config import Settings
from webhookd.connection import RedisClient
from webhookd.egress import delivery_transport
from webhookd.endpoint_health import EndpointHealth
from webhookd.errors import StoreError
from webhookd.health import Readiness
from webhookd.intake import Intake
from webhookd.metrics import DISABLED_ENDPOINTS, IN_FLIGHT
from webhookd.pipeline import Pipeline
from webhookd.quotas import Quotas, load_plans
from webhookd.recorder import Recorder
from webhookd.registry import EndpointTable, registry_for
from webhookd.retry import RETRY_AFTER_CAP_S, RetryPolicy
from webhookd.scheduler import Scheduler, Wakeup
from webhookd.sender import Sender
from webhookd.store import store_for
from webhookd.transport import Transport
from webhookd.vendor_api import vendor_api

log = structlog.get_logger("webhookd.daemon")

RECORDER_FLUSH_S = 10.0
SCHEDULER_RESTART_S = 1.0


def consumer_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


class Daemon:
    def __init__(
        self,
        settings: Settings,
        client: RedisClient,
        *,
        transport: Transport | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self._settings = settings
        self._client = client
        self._transport = transport or delivery_transport(settings.delivery)
        self._rng = rng or random.Random()
        self.consumer = settings.stream.consumer or consumer_name()
        self.store = store_for(client, settings)
        self._clock: EpochClock | None = None
        self.registry = registry_for(client, settings, clock=self._now)
        self.readiness = Readiness()
        self._intake_scope = trio.CancelScope()
        self._everything = trio.CancelScope()
        self.admin_port = 0

    def _now(self) -> float:
        """Epoch seconds on the daemon's clock once it runs (a test's mock clock drives it)."""
        return time.time() if self._clock is None else self._clock.now_s()

    def stop(self) -> None:
        """Stop taking work; in-flight deliveries finish within the shutdown grace."""
        self._intake_scope.cancel()

    def abort(self) -> None:
        """Stop now; whatever was in flight is taken up again after restart."""
        self._everything.cancel()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Raises StoreError when Redis cannot be reached at start."""
        settings = self._settings
        clock = self._clock = EpochClock()
        quotas = None
        if settings.quotas.enabled:
            quotas = Quotas(self._client, settings.quotas, clock=clock,
                            ops_stream=settings.stream.ops, key_prefix=settings.redis.key_prefix,
                            policy=load_plans(settings.quotas))  # fmt: skip
        for stream in self.store.streams:
            await self.store.ensure_group(stream)
        table = EndpointTable(self.registry)
        await table.refresh()
        recorder = Recorder(self.store, self.readiness)
        delivery = settings.delivery
        sender = Sender(
            transport=self._transport,
            policy=RetryPolicy(
                settings.retry.schedule_s,
                settings.retry.jitter,
                retry_after_cap_s=delivery.max_pause_s or RETRY_AFTER_CAP_S,
            ),
            clock=clock,
            rng=self._rng,
            timeout_s=delivery.timeout_s,
            concurrency=delivery.endpoint_concurrency,
        )
        wakeup = Wakeup()
        pipeline = Pipeline(sender=sender, recorder=recorder, registry=self.registry,
                            table=table, clock=clock, wakeup=wakeup,
                            max_in_flight=delivery.max_in_flight, quotas=quotas,
                            max_pause_s=delivery.max_pause_s,
                            health=EndpointHealth(self.registry, table, clock,
                                                  settings.health.disable_after_s))  # fmt: skip
        IN_FLIGHT.set_function(lambda: pipeline.lanes.active)
        # Intake and the scheduler take a read batch at a time, and only once less than
        # that waits to be sent: reading further ahead overfills lanes, whose overflow
        # goes to the retry set and back (twice the work for a backlog's deliveries).
        batch = settings.stream.batch_size
        appetite = partial(pipeline.lanes.appetite, batch)
        DISABLED_ENDPOINTS.set_function(table.disabled_count)
        scheduler = Scheduler(self.store, clock=clock, wakeup=wakeup, readiness=self.readiness,
                              lease_s=delivery.timeout_s * 2 + 30, table=table,
                              room=lambda: min(pipeline.lanes.room, batch), judge=pipeline.judge,
                              take=pipeline.dispatch_all, write=recorder.write,
                              appetite=appetite)  # fmt: skip
        intake = Intake(self.store, settings.stream, consumer=self.consumer, table=table,
                        recorder=recorder, rules=event_rules(settings), clock=clock,
                        readiness=self.readiness, judge=pipeline.judge,
                        dispatch=pipeline.dispatch_all,
                        appetite=appetite)  # fmt: skip
        vendors = vendor_api(self._client, settings, self.registry, clock)
        admin = AdminApi(token=settings.admin.token, registry=self.registry, store=self.store,
                         readiness=self.readiness, clock=clock, sender=sender,
                         vendors=vendors)  # fmt: skip
        log.info("daemon.started", consumer=self.consumer, streams=self.store.streams,
                 group=settings.stream.group)  # fmt: skip
        host, port = settings.admin.address
        with self._everything:
            async with trio.open_nursery() as services:
                self.admin_port = await services.start(
                    partial(serve, server_name="webhookd"), admin.handle, host, port
                )
                log.info("admin.listening", host=host, port=self.admin_port)
                async with trio.open_nursery() as outer:
                    outer.start_soon(recorder.run)
                    async with trio.open_nursery() as deliveries:
                        await deliveries.start(pipeline.lanes.run)
                        with self._intake_scope:
                            async with trio.open_nursery() as intake_tasks:
                                intake_tasks.start_soon(intake.run)
                                intake_tasks.start_soon(self._keep_scheduling, scheduler)
                                task_status.started()
                        log.info("daemon.draining", grace_s=delivery.shutdown_grace_s)
                        await pipeline.lanes.drained(delivery.shutdown_grace_s)
                        deliveries.cancel_scope.cancel()
                    recorder.close()
                    outer.cancel_scope.deadline = trio.current_time() + RECORDER_FLUSH_S
                services.cancel_scope.cancel()
        await self._transport.aclose()
        log.info("daemon.stopped", consumer=self.consumer)

    async def _keep_scheduling(self, scheduler: Scheduler) -> None:
        """The scheduler, kept alive through Redis outages."""
        while True:
            try:
                await scheduler.run()
            except StoreError as exc:
                self.readiness.failing("scheduler", str(exc))
                log.warning("scheduler.redis_error", error=str(exc))
                await trio.sleep(SCHEDULER_RESTART_S)
