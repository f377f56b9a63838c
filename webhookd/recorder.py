"""Makes delivery outcomes durable in batches, and acks stream entries after them.

Deliveries hand over their writes as one *unit* and move on; the recorder writes
whatever has queued up in one go (``Store.apply``). Units keep their order, and an
entry's ack travels at the end of its last delivery's unit, so it always lands after
the writes of every delivery the entry produced. Failures are handled by kind:

- Redis unavailable (or the group gone): the batch is retried with backoff until it
  lands; until then the entries stay pending and are reclaimed if the process dies.
- Redis refused the batch: each unit is tried alone, so one bad unit cannot block the
  others; a unit refused ``POISON_TRIES`` times is replaced by a dead letter naming the
  reason (and its entry's ack), so it is reported, never lost and never retried forever.
"""

from __future__ import annotations

from collections.abc import Sequence

import structlog
import trio

from webhookd.errors import GroupMissing, StoreError, StoreRefused, StoreUnavailable
from webhookd.health import Readiness
from webhookd.metrics import RECORD_POISONED, REDIS_ERRORS
from webhookd.model import (
    AckEntry,
    AddDeadLetter,
    ClearRetry,
    Delivery,
    EntryRef,
    Write,
    dead_letter,
)
from webhookd.store import Store
from webhookd.values import value_type

log = structlog.get_logger("webhookd.recorder")

MAX_WRITES_PER_BATCH = 5_000
BACKOFF_S = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0)
POISON_TRIES = 3


@value_type
class Unit:
    """The writes of one delivery's outcome (or one entry's ack): landed all or retried."""

    writes: tuple[Write, ...]
    delivery: Delivery | None = None


def poison_replacement(unit: Unit, error: str) -> Unit:
    """What is written instead of a unit Redis keeps refusing: a dead letter with the
    reason, and the bookkeeping (ack, retry cleared) that lets everything else go on."""
    reason = f"its outcome could not be recorded: {error}"
    if unit.delivery is not None:
        letter = dead_letter(unit.delivery, None, reason)
    else:
        letter = AddDeadLetter((("reason", reason),))
    kept = tuple(w for w in unit.writes if isinstance(w, AckEntry | ClearRetry))
    return Unit((letter, *kept), unit.delivery)


class Recorder:
    def __init__(self, store: Store, readiness: Readiness) -> None:
        self._store = store
        self._readiness = readiness
        self._send, self._receive = trio.open_memory_channel[Unit](float("inf"))
        self._pending: dict[EntryRef, int] = {}

    def expect(self, entry: EntryRef, deliveries: int) -> None:
        """An entry produced ``deliveries`` deliveries; it is acked once all have settled."""
        if deliveries == 0:
            self.write([AckEntry(entry)])
        else:
            self._pending[entry] = deliveries

    def is_pending(self, entry: EntryRef) -> bool:
        return entry in self._pending

    def settled(self, delivery: Delivery, writes: Sequence[Write]) -> None:
        """One delivery's outcome; the last one of an entry carries the entry's ack after
        its own writes, in the same unit."""
        entry = delivery.acks
        if entry is not None:
            left = self._pending[entry] - 1
            if left:
                self._pending[entry] = left
            else:
                del self._pending[entry]
                writes = (*writes, AckEntry(entry))
        self._send.send_nowait(Unit(tuple(writes), delivery))

    def write(self, writes: Sequence[Write]) -> None:
        self._send.send_nowait(Unit(tuple(writes)))

    def close(self) -> None:
        """No more writes will come; ``run`` returns once everything queued has landed."""
        self._send.close()

    async def run(self) -> None:
        async with self._receive:
            while True:
                try:
                    batch = [await self._receive.receive()]
                except trio.EndOfChannel:
                    return
                size = len(batch[0].writes)
                while size < MAX_WRITES_PER_BATCH:
                    try:
                        unit = self._receive.receive_nowait()
                    except (trio.WouldBlock, trio.EndOfChannel):
                        break
                    batch.append(unit)
                    size += len(unit.writes)
                await self._land(batch)

    async def _land(self, batch: list[Unit]) -> None:
        try:
            await self._apply_until_landed([w for unit in batch for w in unit.writes])
        except StoreRefused as exc:
            log.warning("recorder.batch_refused", units=len(batch), error=str(exc))
            for unit in batch:
                await self._land_alone(unit)

    async def _land_alone(self, unit: Unit) -> None:
        for tries in range(1, POISON_TRIES + 1):
            try:
                await self._apply_until_landed(list(unit.writes))
                return
            except StoreRefused as exc:
                error = str(exc)
                REDIS_ERRORS.labels("record").inc()
                await trio.sleep(BACKOFF_S[min(tries, len(BACKOFF_S) - 1)])
        RECORD_POISONED.inc()
        delivery = unit.delivery
        log.error(
            "recorder.unit_dead_lettered",
            error=error,
            event_id=None if delivery is None else delivery.event.id,
            endpoint_id=None if delivery is None else delivery.endpoint_id,
        )
        replacement = poison_replacement(unit, error)
        while True:
            try:
                await self._apply_until_landed(list(replacement.writes))
                return
            except StoreRefused as exc:
                log.error("recorder.replacement_refused", error=str(exc))
                await trio.sleep(BACKOFF_S[-1])

    async def _apply_until_landed(self, writes: list[Write]) -> None:
        """Apply, retrying with backoff while Redis is unavailable; StoreRefused escapes."""
        failures = 0
        while True:
            try:
                await self._store.apply(writes)
            except (StoreUnavailable, GroupMissing) as exc:  # intake recreates a lost group
                self._failed(exc, writes)
            else:
                if failures:
                    self._readiness.recovered("record")
                return
            await trio.sleep(BACKOFF_S[min(failures, len(BACKOFF_S) - 1)])
            failures += 1

    def _failed(self, exc: StoreError, writes: list[Write]) -> None:
        REDIS_ERRORS.labels("record").inc()
        self._readiness.failing("record", str(exc))
        log.warning("recorder.write_failed", error=str(exc), writes=len(writes))
