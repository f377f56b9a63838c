"""Sending again what was sent, held or given up on: replaying an event, recovering a
disabled endpoint's held deliveries, redriving dead letters.

All only schedule: a delivery is put in its partition's retry set, due now, and the
daemons take it from there. Replayed and redriven deliveries start afresh (no attempts
made). A redriven dead letter is removed from the dead stream after its retry is
scheduled, and a recovered delivery leaves the held set in the same script call that
schedules it, so a crash in between leaves a duplicate, never a lost delivery.

Held deliveries not recovered within ``stream.retention`` become dead letters
(``expire_held``, from intake's housekeeping loop), so they can still be redriven.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from webhookd.deadletters import DeadFilter, redrive_letters
from webhookd.errors import InvalidEventError
from webhookd.events import Event, default_id_entry, parse_entry, parse_timestamp
from webhookd.metrics import RECOVERED
from webhookd.model import (
    AddDeadLetter,
    Delivery,
    EntryRef,
    ReleaseHeld,
    ScheduleRetry,
    Write,
    expired_hold_writes,
    release_writes,
)
from webhookd.store import Held, Store

REDRIVE_PAGE = 500


Subscribers = Callable[[Event], Awaitable[list[str]]]


async def replay(
    store: Store, event_id: str, now_s: float, subscribers: Subscribers | None = None
) -> list[str] | None:
    """Deliver an event afresh to every endpoint it went to; the endpoint ids, or None
    when the event is unknown or its stream entry is no longer retained. An event with
    no deliveries recorded (none was subscribed then, say) goes, with ``subscribers``,
    to the endpoints subscribed to it now, as long as its entry is in the stream."""
    found = await store.event_record(event_id)
    if found is None:
        if subscribers is None:
            return None
        return await _replay_unrecorded(store, event_id, now_s, subscribers)
    stream, states, _ = found
    origins = [state["origin"] for state in states.values() if state.get("origin")]
    if not origins:
        return None
    origin = EntryRef(str(origins[0][0]), str(origins[0][1]))
    fields = await store.entry(origin.stream, origin.entry_id)
    if fields is None:
        return None
    published_s = parse_timestamp(next(iter(states.values()))["event_timestamp"])
    partition = store.streams.index(stream) if len(store.streams) > 1 else None
    try:
        event = parse_entry(origin.entry_id, fields, published_s, partition=partition)
    except InvalidEventError:
        return None
    writes: list[Write] = []
    for endpoint_id in sorted(states):
        delivery = Delivery(event, endpoint_id, origin, scheduled=True)
        writes.append(ScheduleRetry(delivery, now_s))
        if states[endpoint_id].get("state") == "held":  # replayed, so no longer held
            writes.append(ReleaseHeld(stream, delivery.member))
    await store.apply(writes)
    return sorted(states)


async def _replay_unrecorded(
    store: Store, event_id: str, now_s: float, subscribers: Subscribers
) -> list[str] | None:
    located = await entry_of(store, event_id)
    if located is None:
        return None
    stream, entry_id = located
    fields = await store.entry(stream, entry_id)
    if fields is None:
        return None
    partition = store.streams.index(stream) if len(store.streams) > 1 else None
    try:
        event = parse_entry(entry_id, fields, now_s, partition=partition)
    except InvalidEventError:
        return None
    if event.id != event_id:
        return None
    endpoint_ids = sorted(await subscribers(event))
    origin = EntryRef(stream, entry_id)
    await store.apply([ScheduleRetry(Delivery(event, endpoint_id, origin, scheduled=True), now_s)
                       for endpoint_id in endpoint_ids])  # fmt: skip
    return endpoint_ids


async def entry_of(store: Store, event_id: str) -> tuple[str, str] | None:
    """The stream entry an event came from: named by a default id, or holding its id."""
    default = default_id_entry(event_id)
    if default is not None:
        partition, entry_id = default
        index = 0 if partition is None else partition
        if (partition is None) == (len(store.streams) == 1) and index < len(store.streams):
            return store.streams[index], entry_id
    return await store.event_id_holder(event_id)


async def recover(
    store: Store,
    endpoint_id: str,
    now_s: float,
    *,
    retention_s: float,
    since_s: float | None = None,
    progress: Callable[[int], None] | None = None,
) -> Recovered:
    """Send what was held for the endpoint (held within ``stream.retention``, and since
    ``since_s`` if given), and with ``since_s`` also redrive its dead letters since then."""
    oldest_ms = (now_s - retention_s) * 1000
    if since_s is not None:
        oldest_ms = max(oldest_ms, since_s * 1000)
    held = 0
    for stream in store.streams:
        async for page in store.held_of(stream, endpoint_id):
            due = [delivery for item in page if item.held_ms >= oldest_ms
                   and (delivery := _held_delivery(item)) is not None]  # fmt: skip
            if not due:
                continue
            await store.apply([write for d in due for write in release_writes(d, now_s)])
            held += len(due)
            RECOVERED.inc(len(due))
            if progress is not None:
                progress(len(due))
    redriven = 0
    if since_s is not None:
        selection = DeadFilter(endpoint_id=endpoint_id)
        redriven = (await redrive_letters(store, now_s, selection=selection,
                                          since_s=since_s)).redriven  # fmt: skip
    return Recovered(held, redriven)


@dataclass(frozen=True, slots=True)
class Recovered:
    held: int
    redriven: int

    @property
    def total(self) -> int:
        return self.held + self.redriven


def _held_delivery(item: Held) -> Delivery | None:
    try:
        delivery = Delivery.from_payload(item.payload, item.stream)
    except (ValueError, KeyError, TypeError, IndexError):
        return None
    return dataclasses.replace(delivery, scheduled=False)


async def expire_held(store: Store, now_s: float, retention_s: float) -> int:
    """Dead-letter what was held longer than ``stream.retention``; how many."""
    before_ms = int((now_s - retention_s) * 1000)
    expired = 0
    for stream in store.streams:
        while True:
            page = await store.held_before(stream, before_ms, REDRIVE_PAGE)
            writes: list[Write] = []
            for item in page:
                delivery = _held_delivery(item)
                if delivery is None:
                    fields = (("reason", "unreadable held delivery"), ("member", item.member),
                              ("payload", item.payload), ("stream", stream))  # fmt: skip
                    writes += [AddDeadLetter(fields), ReleaseHeld(stream, item.member)]
                else:
                    writes += expired_hold_writes(delivery, HELD_TOO_LONG)
            if writes:
                await store.apply(writes)
            expired += len(page)
            if len(page) < REDRIVE_PAGE:
                break
    return expired


HELD_TOO_LONG = "held for a disabled endpoint longer than stream.retention without a recovery"
