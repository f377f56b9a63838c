"""Intake: stream entries in, deliveries out.

One read loop per partition (XREADGROUP on its own stream: on Redis Cluster the
partitions live in different slots), and one reclaim loop that takes over what crashed
consumers left pending (XAUTOCLAIM), trims what is past ``stream.retention``, and
dead-letters deliveries held longer than that.

Each entry is parsed (a malformed one is dead-lettered with the reason and acked), its
event id checked (an id already taken by the same event is acked as a duplicate, by a
different one dead-lettered with the reason), and fanned out to every subscribed
endpoint. An entry seen before (reclaimed, or read again after its group was
recreated) skips the endpoints whose delivery is already recorded.

``NOGROUP`` (Redis came back without the stream or the group) recreates the group
and goes on, with a warning; reads fail over to ``Readiness`` until they succeed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import structlog
import trio

from webhookd.clock import EpochClock
from webhookd.config import StreamSettings
from webhookd.errors import GroupMissing, InvalidEventError, StoreError
from webhookd.events import Event, EventRules, parse_entry
from webhookd.health import Readiness
from webhookd.metrics import (
    EVENTS_DUPLICATE,
    EVENTS_ID_CONFLICT,
    EVENTS_MALFORMED,
    EVENTS_READ,
    GROUPS_RECREATED,
    REDIS_ERRORS,
)
from webhookd.model import AckEntry, AddDeadLetter, Delivery, EntryRef, malformed_writes
from webhookd.recorder import Recorder
from webhookd.redrive import expire_held
from webhookd.registry import EndpointTable
from webhookd.store import Entry, Store

log = structlog.get_logger("webhookd.intake")

BACKOFF_S = (0.1, 0.5, 1.0, 2.0, 5.0)


def fingerprint(event: Event, raw_data: bytes) -> str:
    """What makes two entries with one event id the same event: type, vendor and data
    (as JSON values, so key order and spacing do not matter). ``raw_data`` parsed before."""
    data = json.dumps(json.loads(raw_data), sort_keys=True, separators=(",", ":"))
    text = f"{event.type}\n{event.vendor}\n{data}"
    return hashlib.sha256(text.encode()).hexdigest()[:32]


class Intake:
    def __init__(
        self,
        store: Store,
        settings: StreamSettings,
        *,
        consumer: str,
        table: EndpointTable,
        recorder: Recorder,
        rules: EventRules,
        clock: EpochClock,
        readiness: Readiness,
        judge: Callable[[Sequence[Delivery]], Awaitable[Any]],
        dispatch: Callable[[Sequence[Delivery], Any], Awaitable[None]],
        appetite: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """``appetite()`` returns once fewer than a read batch of deliveries wait to be
        sent: a read loop takes no new batch before (``Lanes.appetite``)."""
        self._store = store
        self._settings = settings
        self._consumer = consumer
        self._table = table
        self._recorder = recorder
        self._rules = rules
        self._clock = clock
        self._readiness = readiness
        self._judge = judge
        self._dispatch = dispatch
        self._appetite = appetite
        self._partition = {
            stream: (None if settings.partitions == 1 else index)
            for index, stream in enumerate(store.streams)
        }
        self._recovering: set[str] = set()  # streams whose group was just recreated

    async def run(self) -> None:
        async with trio.open_nursery() as nursery:
            for stream in self._store.streams:
                nursery.start_soon(self._supervised, f"read:{stream}", self._read_loop, stream)
            nursery.start_soon(self._supervised, "reclaim", self._reclaim_loop, None)

    async def _supervised(
        self, part: str, loop: Callable[[str | None], Awaitable[None]], stream: str | None
    ) -> None:
        """Keep a loop alive through Redis outages: recreate a lost group, back off, go on."""
        failures = 0
        while True:
            try:
                await loop(stream)
                return
            except GroupMissing as exc:
                self._readiness.failing(part, str(exc))
                await self._recreate_groups(str(exc))
            except StoreError as exc:
                REDIS_ERRORS.labels(part).inc()
                self._readiness.failing(part, str(exc))
                delay = BACKOFF_S[min(failures, len(BACKOFF_S) - 1)]
                log.warning("intake.redis_error", loop=part, error=str(exc), retry_in_s=delay)
                failures += 1
                await trio.sleep(delay)

    async def _recreate_groups(self, error: str) -> None:
        for stream in self._store.streams:
            if await self._store.ensure_group(stream):
                GROUPS_RECREATED.inc()
                self._recovering.add(stream)
                log.warning("intake.group_recreated", stream=stream, error=error)

    async def _read_loop(self, stream: str | None) -> None:
        assert stream is not None
        settings = self._settings
        block_ms = max(1, int(settings.block_s * 1000))
        while True:
            if self._appetite is not None:
                await self._appetite()
            entries = await self._store.read_new(
                stream, self._consumer, settings.batch_size, block_ms
            )
            self._readiness.recovered(f"read:{stream}")
            if entries:
                EVENTS_READ.labels("new").inc(len(entries))
                await self.take(entries, seen_before=stream in self._recovering)
            if len(entries) < settings.batch_size:
                self._recovering.discard(stream)

    async def _reclaim_loop(self, _: str | None) -> None:
        settings = self._settings
        min_idle_ms = int(settings.reclaim_idle_s * 1000)
        while True:
            for stream in self._store.streams:
                entries = await self._store.reclaim(
                    stream, self._consumer, min_idle_ms, settings.batch_size
                )
                if entries:
                    EVENTS_READ.labels("reclaimed").inc(len(entries))
                    log.info("intake.reclaimed", stream=stream, entries=len(entries))
                    await self.take(entries, seen_before=True)
                trimmed = await self._store.trim(stream, self._clock.now_s(), settings.retention_s)
                if trimmed:
                    log.info("stream.trimmed", stream=stream, entries=trimmed)
            expired = await expire_held(self._store, self._clock.now_s(), settings.retention_s)
            if expired:
                log.warning("held.expired", deliveries=expired)
            self._readiness.recovered("reclaim")
            await trio.sleep(settings.reclaim_idle_s / 2)

    async def take(self, entries: Sequence[Entry], *, seen_before: bool = False) -> None:
        """Fan entries out into deliveries."""
        await self._table.refresh()
        now_s = self._clock.now_s()
        events: list[tuple[EntryRef, Event, Entry]] = []
        for entry in entries:
            ref = EntryRef(entry.stream, entry.entry_id)
            if self._recorder.is_pending(ref):
                continue
            try:
                event = parse_entry(entry.entry_id, entry.fields, now_s, self._rules,
                                    self._partition.get(entry.stream))  # fmt: skip
            except InvalidEventError as exc:
                self._malformed(ref, entry, str(exc))
                continue
            events.append((ref, event, entry))
        events = await self._claimed(events)
        if not events:
            return
        recorded: dict[str, set[str]] = {}
        if seen_before or any(entry.reclaimed for _, _, entry in events):
            recorded = await self._store.recorded(
                events[0][0].stream, [event.id for _, event, _ in events]
            )
        fanned: list[tuple[EntryRef, int]] = []
        deliveries: list[Delivery] = []
        for ref, event, _ in events:
            done = recorded.get(event.id, set())
            targets = [e for e in self._table.for_event(event.vendor, event.type)
                       if e.id not in done]  # fmt: skip
            fanned.append((ref, len(targets)))
            deliveries += [Delivery(event, endpoint.id, ref, acks=ref) for endpoint in targets]
        # judged before any entry counts as taken: should it fail, the entries stay
        # pending in the group and are read again, never half taken here
        verdicts = await self._judge(deliveries)
        for ref, count in fanned:
            self._recorder.expect(ref, count)
        await self._dispatch(deliveries, verdicts)

    async def _claimed(
        self, events: list[tuple[EntryRef, Event, Entry]]
    ) -> list[tuple[EntryRef, Event, Entry]]:
        """The events to deliver: those with no explicit id, or whose id this entry holds.

        Ids are taken with SET NX for ``stream.retention``; the claim names the entry and
        the event's fingerprint, so a reclaimed entry finds its own claim."""
        explicit = [(ref, event, entry) for ref, event, entry in events if b"id" in entry.fields]
        if not explicit:
            return events
        claims = [
            f"{ref.stream}\n{ref.entry_id}\n{fingerprint(event, entry.fields[b'data'])}"
            for ref, event, entry in explicit
        ]
        holders = await self._store.claim_event_ids(
            [(event.id, claim) for (_, event, _), claim in zip(explicit, claims, strict=True)]
        )
        refused: set[EntryRef] = set()
        for (ref, event, _), claim, holder in zip(explicit, claims, holders, strict=True):
            if holder is None or holder.split("\n")[:2] == claim.split("\n")[:2]:
                continue
            refused.add(ref)
            self._taken(ref, event, holder, same=holder.split("\n")[-1] == claim.split("\n")[-1])
        return [item for item in events if item[0] not in refused]

    def _taken(self, ref: EntryRef, event: Event, holder: str, *, same: bool) -> None:
        first_stream, first_entry, _ = [*holder.split("\n"), "", ""][:3]
        if same:
            EVENTS_DUPLICATE.inc()
            log.info("event.duplicate", event_id=event.id, stream=ref.stream,
                     entry_id=ref.entry_id, first_entry_id=first_entry)  # fmt: skip
            self._recorder.write([AckEntry(ref)])
            return
        EVENTS_ID_CONFLICT.inc()
        reason = (
            f"event id {event.id!r} was already taken by entry {first_entry} of "
            f"{first_stream} with a different type, vendor or data"
        )
        log.warning("event.id_conflict", event_id=event.id, stream=ref.stream,
                    entry_id=ref.entry_id, first_entry_id=first_entry)  # fmt: skip
        fields = (("reason", reason), ("event_id", event.id), ("source_stream", ref.stream),
                  ("source_id", ref.entry_id), ("event_type", event.type),
                  ("vendor", event.vendor))  # fmt: skip
        self._recorder.write([AddDeadLetter(fields), AckEntry(ref)])

    def _malformed(self, ref: EntryRef, entry: Entry, reason: str) -> None:
        EVENTS_MALFORMED.inc()
        raw = {k.decode("utf-8", "replace"): v.decode("utf-8", "replace")
               for k, v in entry.fields.items()}  # fmt: skip
        log.warning("event.malformed", stream=ref.stream, entry_id=ref.entry_id, reason=reason)
        self._recorder.write(malformed_writes(ref, raw, reason))
