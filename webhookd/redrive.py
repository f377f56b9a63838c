"""Sending again what was sent or given up on: replaying an event, redriving dead letters.

Both only schedule: a replayed or redriven delivery is put in its partition's retry set,
due now, as a fresh delivery (no attempts made), and the daemons take it from there.
A redriven dead letter is removed from the dead stream after its retry is scheduled,
so a crash in between leaves a duplicate dead letter, never a lost one.
"""

from __future__ import annotations

from webhookd.errors import InvalidEventError
from webhookd.events import parse_entry, parse_timestamp
from webhookd.model import (
    Delivery,
    EntryRef,
    RemoveDeadLetter,
    ScheduleRetry,
    Write,
    from_dead_letter,
)
from webhookd.store import Store

REDRIVE_PAGE = 500


async def replay(store: Store, event_id: str, now_s: float) -> list[str] | None:
    """Deliver a recorded event afresh to every endpoint it went to; the endpoint ids, or
    None when the event is unknown or its stream entry is no longer retained."""
    found = await store.event_record(event_id)
    if found is None:
        return None
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
    writes: list[Write] = [
        ScheduleRetry(Delivery(event, endpoint_id, origin, scheduled=True), now_s)
        for endpoint_id in sorted(states)
    ]
    await store.apply(writes)
    return sorted(states)


async def dead_letters(
    store: Store, limit: int, *, vendor: str | None = None
) -> list[tuple[str, dict[str, str]]]:
    """Up to ``limit`` dead letters, oldest first; with ``vendor``, only that vendor's."""
    if vendor is None:
        return await store.dead_letters(limit)
    found: list[tuple[str, dict[str, str]]] = []
    start = "-"
    while len(found) < limit:
        letters = await store.dead_letters(REDRIVE_PAGE, start)
        found += [letter for letter in letters if letter[1].get("vendor") == vendor]
        if len(letters) < REDRIVE_PAGE:
            break
        start = "(" + letters[-1][0]
    return found[:limit]


async def redrive(
    store: Store, now_s: float, *, endpoint_id: str | None = None, vendor: str | None = None
) -> int:
    """Schedule every dead delivery (of one endpoint, of one vendor, if given) for a fresh
    round of attempts; malformed entries, which name no endpoint, stay where they are."""
    redriven = 0
    start = "-"
    while True:
        letters = await store.dead_letters(REDRIVE_PAGE, start)
        scheduled: list[Write] = []
        removed: list[Write] = []
        for dead_id, fields in letters:
            delivery = from_dead_letter(fields, store.streams[0])
            if delivery is None or endpoint_id not in (None, delivery.endpoint_id):
                continue
            if vendor not in (None, delivery.event.vendor):
                continue
            scheduled.append(ScheduleRetry(delivery, now_s))
            removed.append(RemoveDeadLetter(dead_id))
            redriven += 1
        if scheduled:
            await store.apply(scheduled)
            await store.apply(removed)
        if len(letters) < REDRIVE_PAGE:
            return redriven
        start = "(" + letters[-1][0]
