"""The parts of one daemon, built over a Redis client, with what the lifecycle tests need to
drive them by hand: a transport that answers as scripted, a clock that moves when told,
and a store that keeps (or loses) the writes it applied.

Nothing here sleeps or reads the wall clock: a step runs its work to the end, so the
tests see the process idle between steps, as a daemon is between bursts of work.
"""

from __future__ import annotations

import math
import random
import ssl
from collections.abc import Awaitable, Callable, Sequence

import trio

from webhookd.catalog import event_rules
from webhookd.clock import EpochClock
from webhookd.config import Settings
from webhookd.connection import RedisClient
from webhookd.endpoint_health import EndpointHealth
from webhookd.health import Readiness
from webhookd.intake import Intake
from webhookd.model import AckEntry, Write
from webhookd.pipeline import Pipeline
from webhookd.recorder import Recorder
from webhookd.registry import EndpointTable, registry_for
from webhookd.retry import RetryPolicy
from webhookd.scheduler import Scheduler, Wakeup
from webhookd.sender import Sender
from webhookd.store import Store
from webhookd.transport import Response, Transport

SCHEDULE_S = (1.0, 2.0, 4.0)
LEASE_S = 30.0
MAX_IN_FLIGHT = 1000  # never reached: admitting a delivery must not wait in these tests


class ManualClock(EpochClock):
    """Epoch seconds that move only when a test moves them."""

    __slots__ = ("now",)

    def __init__(self, now_s: float) -> None:
        self.now = now_s

    def now_s(self) -> float:
        return self.now

    def at(self, trio_s: float) -> float:
        return self.now


class ScriptedTransport(Transport):
    """Answers every POST with the status scripted for its endpoint (200 unless told), at
    once and without a network; counts what it was asked to send."""

    def __init__(self) -> None:
        super().__init__(ssl_context=ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT))
        self.answers: dict[str, int] = {}
        self.sent: list[tuple[str, str]] = []  # (endpoint id, X-Event-ID)

    async def post(
        self,
        key: str,
        url: str,
        headers: Sequence[tuple[str, str]],
        body: bytes,
        *,
        size: int,
        timeout_s: float,
        ssl_context: ssl.SSLContext | None = None,
        static_headers: Sequence[tuple[str, str]] = (),
    ) -> Response:
        self.sent.append((key, dict(headers)["X-Event-ID"]))
        return Response(self.answers.get(key, 200), (), b"", False)


class ObservedStore(Store):
    """The real store, keeping every write it applied, in order. With ``drop_acks`` it
    loses the acks, as a process does that dies after its records and before its acks."""

    def __init__(self, client: RedisClient, settings: Settings, *, drop_acks: bool) -> None:
        super().__init__(client, settings.stream, settings.redis.key_prefix,
                         settings.delivery.record_ttl_s)  # fmt: skip
        self.drop_acks = drop_acks
        self.applied: list[Write] = []

    async def apply(self, writes: Sequence[Write]) -> None:
        if self.drop_acks:
            writes = [write for write in writes if not isinstance(write, AckEntry)]
        await super().apply(writes)
        self.applied.extend(writes)


class Process:
    """One daemon's delivery parts, wired as ``webhookd.daemon`` wires them, with endpoint
    concurrency 1 so that a lane fills up after a few deliveries."""

    def __init__(
        self,
        client: RedisClient,
        settings: Settings,
        *,
        consumer: str,
        clock: ManualClock,
        transport: ScriptedTransport,
        drop_acks: bool = False,
    ) -> None:
        """With ``settings.health.disable_after`` above 0 the process watches endpoint
        health, as the daemon does."""
        self.consumer = consumer
        self.clock = clock
        self.store = ObservedStore(client, settings, drop_acks=drop_acks)
        self.registry = registry_for(client, settings, clock=clock.now_s)
        table = self.table = EndpointTable(self.registry)
        disable_after_s = settings.health.disable_after_s
        health = EndpointHealth(self.registry, table, clock, disable_after_s)
        readiness = Readiness()
        self.recorder = Recorder(self.store, readiness)
        sender = Sender(transport=transport, policy=RetryPolicy(SCHEDULE_S, 0.0), clock=clock,
                        rng=random.Random(0), timeout_s=1.0, concurrency=1)  # fmt: skip
        wakeup = Wakeup()
        self.pipeline = Pipeline(sender=sender, recorder=self.recorder, registry=self.registry,
                                 table=table, clock=clock, wakeup=wakeup,
                                 max_in_flight=MAX_IN_FLIGHT,
                                 health=health if disable_after_s > 0 else None)  # fmt: skip
        self.scheduler = Scheduler(self.store, clock=clock, wakeup=wakeup, readiness=readiness,
                                   table=table, lease_s=LEASE_S,
                                   room=lambda: self.pipeline.lanes.room,
                                   judge=self.pipeline.judge,
                                   take=self.pipeline.dispatch_all,
                                   write=self.recorder.write)  # fmt: skip
        self.intake = Intake(self.store, settings.stream, consumer=consumer, table=table,
                             recorder=self.recorder, rules=event_rules(settings), clock=clock,
                             readiness=readiness, judge=self.pipeline.judge,
                             dispatch=self.pipeline.dispatch_all)  # fmt: skip
        self.stream = self.store.streams[0]

    async def work(self, *actions: Callable[[], Awaitable[object]], record: bool = True) -> None:
        """Run each action, and wait for every delivery it started to be sent, with lanes
        (and, if ``record``, the recorder) running; return once every write landed.
        Without ``record`` the writes are lost, as when a process dies before recording."""
        async with trio.open_nursery() as outer:
            if record:
                outer.start_soon(self.recorder.run)
            async with trio.open_nursery() as inner:
                await inner.start(self.pipeline.lanes.run)
                for action in actions:
                    await action()
                    await self.pipeline.lanes.drained(math.inf)
                inner.cancel_scope.cancel()
            self.recorder.close()

    async def take_new(self) -> None:
        """Take every new entry, as one pass of a read loop."""
        entries = await self.store.read_new(self.stream, self.consumer, 1000, 1)
        await self.intake.take(entries)

    async def claim_due(self) -> None:
        """Claim and send the retries due now, as one pass of the scheduler."""
        await self.scheduler.claim_due()

    async def claim_and_drop(self) -> None:
        """Read new entries and claim due retries, and send nothing: a process that dies
        right after taking its work."""
        await self.store.read_new(self.stream, self.consumer, 1000, 1)
        await self.store.claim_due(self.stream, int(self.clock.now_s() * 1000),
                                   int(LEASE_S * 1000), 1000)  # fmt: skip

    async def reclaim(self) -> int:
        """Take over every entry a dead consumer left pending, as the reclaim loop does;
        how many there were."""
        entries = await self.store.reclaim(self.stream, self.consumer, 0, 1000)
        await self.work(lambda: self.intake.take(entries, seen_before=True))
        return len(entries)
