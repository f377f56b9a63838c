"""Writes delivery outcomes to Redis in batches and acks stream entries after them.

Deliveries hand their record ops to the recorder and move on; the recorder writes
whatever has queued up in one round trip. Ops keep their order, so an entry's ack,
queued once its last delivery settled, always lands after that delivery's record.
A failed write is retried, never dropped: until it lands, the entry stays pending
and is reclaimed if the process dies first.
"""

from __future__ import annotations

from collections.abc import Sequence

import structlog
import trio

from webhookd.delivery import EntryRef, Op, ack_ops
from webhookd.metrics import REDIS_ERRORS
from webhookd.queue import Queue

log = structlog.get_logger("webhookd.recorder")

MAX_OPS_PER_WRITE = 20_000
RETRY_DELAYS_S = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0)


class Recorder:
    def __init__(self, queue: Queue) -> None:
        self._queue = queue
        self._send, self._receive = trio.open_memory_channel[Sequence[Op]](float("inf"))
        self._pending: dict[EntryRef, int] = {}

    def expect(self, entry: EntryRef, deliveries: int) -> None:
        """An entry produced ``deliveries`` deliveries; it is acked once all have settled."""
        if deliveries == 0:
            self.write(ack_ops(entry))
        else:
            self._pending[entry] = deliveries

    def is_pending(self, entry: EntryRef) -> bool:
        return entry in self._pending

    def settled(self, entry: EntryRef | None, ops: Sequence[Op]) -> None:
        """One delivery's outcome ops; the last one of an entry also queues its ack."""
        self.write(ops)
        if entry is None:
            return
        left = self._pending[entry] - 1
        if left:
            self._pending[entry] = left
        else:
            del self._pending[entry]
            self.write(ack_ops(entry))

    def write(self, ops: Sequence[Op]) -> None:
        self._send.send_nowait(ops)

    def close(self) -> None:
        """No more ops will come; ``run`` returns once everything queued is written."""
        self._send.close()

    async def run(self) -> None:
        async with self._receive:
            while True:
                try:
                    first = await self._receive.receive()
                except trio.EndOfChannel:
                    return
                batch = list(first)
                while len(batch) < MAX_OPS_PER_WRITE:
                    try:
                        batch.extend(self._receive.receive_nowait())
                    except (trio.WouldBlock, trio.EndOfChannel):
                        break
                await self._write(batch)

    async def _write(self, batch: list[Op]) -> None:
        failures = 0
        while True:
            try:
                await self._queue.apply(batch)
                return
            except Exception as exc:  # any Redis failure is retried, never dropped
                REDIS_ERRORS.labels("record").inc()
                log.warning("recorder.write_failed", error=str(exc), ops=len(batch))
                await trio.sleep(RETRY_DELAYS_S[min(failures, len(RETRY_DELAYS_S) - 1)])
                failures += 1
