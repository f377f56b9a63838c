"""The retry scheduler: claims retries as they fall due and hands them on.

Retries live in each partition's retry set (``webhookd.keyspace``); claiming one leases
it, so a process that dies mid-attempt loses nothing. The scheduler sleeps until the
earliest due time it knows of (Redis's, or one this process just scheduled, told through
its ``Wakeup``), at most ``poll_s``, so retries other processes schedule are seen too.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import structlog
import trio

from webhookd.clock import EpochClock
from webhookd.health import Readiness
from webhookd.metrics import (
    CONSUMER_LAG,
    CONSUMER_PENDING,
    DEFERRED_DELIVERIES,
    HELD_DELIVERIES,
    RETRY_BACKLOG,
)
from webhookd.model import Delivery, Write, unreadable_retry_writes
from webhookd.registry import EndpointTable
from webhookd.store import Store

log = structlog.get_logger("webhookd.scheduler")

CLAIM_LIMIT = 500
POLL_S = 1.0
BACKLOG_SAMPLE_S = 5.0  # how often the backlog gauges are read from Redis


class Wakeup:
    """Tells the scheduler a retry falls due sooner than it planned to look.

    The scheduler alone sleeps on it; whoever schedules a retry only calls ``at``.
    """

    __slots__ = ("_earliest_s", "_event")

    def __init__(self) -> None:
        self._earliest_s = math.inf
        self._event = trio.Event()

    def at(self, due_s: float) -> None:
        if due_s < self._earliest_s:
            self._earliest_s = due_s
            self._event.set()

    async def sleep_until(self, deadline_s: float, clock: EpochClock) -> None:
        """The scheduler's sleep: until ``deadline_s`` (epoch) or an earlier ``at``."""
        while True:
            wake_s = min(deadline_s, self._earliest_s)
            with trio.move_on_after(max(0.0, wake_s - clock.now_s())) as timer:
                await self._event.wait()
            self._event = trio.Event()
            if timer.cancelled_caught:
                break
        self._earliest_s = math.inf


class Scheduler:
    def __init__(
        self,
        store: Store,
        *,
        clock: EpochClock,
        wakeup: Wakeup,
        readiness: Readiness,
        table: EndpointTable,
        lease_s: float,
        room: Callable[[], int],
        judge: Callable[[Sequence[Delivery]], Awaitable[Any]],
        take: Callable[[Sequence[Delivery], Any], Awaitable[None]],
        write: Callable[[list[Write]], None],
        appetite: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """``appetite`` as intake's: no claim while a read batch's worth waits to be sent."""
        self._store = store
        self._appetite = appetite
        self._clock = clock
        self._lease_ms = int(lease_s * 1000)
        self._room = room
        self._judge = judge
        self._take = take
        self._write = write
        self._wakeup = wakeup
        self._readiness = readiness
        self._table = table
        self._backlog_sampled_s = -math.inf

    async def run(self) -> None:
        while True:
            if await self.claim_due():
                continue
            next_due_ms = await self._store.next_due_ms()
            await self.sample_backlog()
            self._readiness.recovered("scheduler")
            deadline_s = self._clock.now_s() + POLL_S
            if next_due_ms is not None:
                deadline_s = min(deadline_s, next_due_ms / 1000)
            await self._wakeup.sleep_until(deadline_s, self._clock)

    async def sample_backlog(self) -> None:
        """Set the backlog gauges (retry backlog; per partition lag, pending, held and
        deferred), at most every ``BACKLOG_SAMPLE_S``: one pipeline per partition on the
        scheduler's loop, never on a delivery's path or a scrape's."""
        now_s = self._clock.now_s()
        if now_s - self._backlog_sampled_s < BACKLOG_SAMPLE_S:
            return
        self._backlog_sampled_s = now_s
        stats = await self._store.partition_stats()
        RETRY_BACKLOG.set(sum(s.retry_backlog for s in stats))
        for s in stats:
            if s.lag is not None:
                CONSUMER_LAG.labels(s.stream).set(s.lag)
            CONSUMER_PENDING.labels(s.stream).set(s.pending)
            HELD_DELIVERIES.labels(s.stream).set(s.held)
            DEFERRED_DELIVERIES.labels(s.stream).set(s.deferred)

    async def claim_due(self) -> bool:
        """Claim and hand on what is due in every partition; True when there may be more."""
        more = False
        for stream in self._store.streams:
            if self._appetite is not None:
                await self._appetite()
            limit = max(1, min(CLAIM_LIMIT, self._room()))
            now_ms = int(self._clock.now_s() * 1000)
            due = await self._store.claim_due(stream, now_ms, self._lease_ms, limit)
            more = more or len(due) == limit
            if due:
                await self._table.refresh()
            deliveries = []
            for item in due:
                try:
                    deliveries.append(Delivery.from_payload(item.payload, item.stream))
                except (ValueError, KeyError, TypeError, IndexError) as exc:
                    log.error("retry.unreadable", member=item.member, error=str(exc))
                    self._write(
                        unreadable_retry_writes(item.stream, item.member, item.payload, str(exc))
                    )
            if deliveries:
                await self._take(deliveries, await self._judge(deliveries))
        return more
