"""Dead letters for operators: listing them newest first in pages, redriving and purging
them by id, by filter or all.

Paging walks the dead stream from its newest entry down (XREVRANGE). A cursor is the id
of the last entry a page looked at; the next page starts just below it. A filtered page
reads at most ``SCAN_LIMIT`` entries (or ``limit``, if more) whatever it finds, so one
call stays bounded on a long stream of letters that do not match; it then hands back a
cursor to go on from, even when it found nothing.

A redrive schedules each letter's delivery afresh (``webhookd.redrive`` explains how);
a letter that cannot be delivered again stays where it is and is counted as skipped,
with the reason: a malformed entry (it names no endpoint), or an oversized event whose
stream entry is no longer retained.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from webhookd.errors import InvalidEventError
from webhookd.events import parse_entry, parse_timestamp
from webhookd.model import Delivery, RemoveDeadLetter, ScheduleRetry, Write, from_dead_letter
from webhookd.store import Store

SCAN_LIMIT = 1000  # entries one filtered page reads at most (when ``limit`` is smaller)
PAGE = 500  # letters read per round by a redrive or purge
MAX_LISTED_SKIPS = 100  # skipped letters named in a redrive's answer (all are counted)
_STREAM_ID = re.compile(r"([0-9]{1,19})(?:-([0-9]{1,19}))?")

Progress = Callable[[int], None]
"""Told how many more letters a long redrive or purge has gone through."""


def valid_id(text: str) -> bool:
    """A stream entry id Redis takes (``<ms>-<seq>``, 19 digits each at most)."""
    return _STREAM_ID.fullmatch(text) is not None


def just_below(cursor: str) -> str | None:
    """The highest entry id below ``cursor``, or None below ``0-0``; ValueError unless
    ``cursor`` is an entry id."""
    found = _STREAM_ID.fullmatch(cursor)
    if found is None:
        raise ValueError(f"cursor: not an entry id: {cursor[:64]!r}")
    milliseconds, sequence = int(found[1]), int(found[2] or 0)
    if sequence > 0:
        return f"{milliseconds}-{sequence - 1}"
    if milliseconds > 0:
        return f"{milliseconds - 1}-{2**64 - 1}"
    return None


@dataclass(frozen=True, slots=True)
class DeadFilter:
    """Letters of one endpoint and/or one vendor; the empty filter takes every letter."""

    endpoint_id: str | None = None
    vendor: str | None = None

    @property
    def empty(self) -> bool:
        return self.endpoint_id is None and self.vendor is None

    def matches(self, fields: Mapping[str, str]) -> bool:
        return self.endpoint_id in (None, fields.get("endpoint_id")) and self.vendor in (
            None,
            fields.get("vendor"),
        )


@dataclass(frozen=True, slots=True)
class DeadPage:
    letters: list[tuple[str, dict[str, str]]]
    next_cursor: str | None  # None on the last page


async def dead_page(
    store: Store, limit: int, cursor: str | None = None, selection: DeadFilter = DeadFilter()
) -> DeadPage:
    """Up to ``limit`` letters the filter takes, newest first, below ``cursor``."""
    end = "+" if cursor is None else just_below(cursor)
    if end is None:
        return DeadPage([], None)
    scan = limit if selection.empty else max(limit, SCAN_LIMIT)
    read = await store.dead_letters_newest(scan + 1, end)
    found: list[tuple[str, dict[str, str]]] = []
    for position, (dead_id, fields) in enumerate(read[:scan]):
        if selection.matches(fields):
            found.append((dead_id, fields))
            if len(found) == limit:
                more = position + 1 < len(read)
                return DeadPage(found, dead_id if more else None)
    return DeadPage(found, read[scan - 1][0] if len(read) > scan else None)


@dataclass(slots=True)
class Redriven:
    """A redrive's answer: how many letters were scheduled again, how many stayed and why."""

    redriven: int = 0
    skipped: int = 0
    reasons: dict[str, str] = field(default_factory=dict)  # dead id -> why (the first few)

    def skip(self, dead_id: str, reason: str) -> None:
        self.skipped += 1
        if len(self.reasons) < MAX_LISTED_SKIPS:
            self.reasons[dead_id] = reason

    def to_json(self) -> dict[str, Any]:
        return {"redriven": self.redriven, "skipped": self.skipped, "reasons": self.reasons}


async def redrive_letters(
    store: Store,
    now_s: float,
    *,
    ids: Sequence[str] | None = None,
    selection: DeadFilter = DeadFilter(),
    progress: Progress | None = None,
    since_s: float | None = None,
) -> Redriven:
    """Schedule the letters named by ``ids`` (all when None; those dead-lettered since
    ``since_s``, if given) that the filter takes."""
    answer = Redriven()
    if ids is not None:
        for start in range(0, len(ids), PAGE):
            asked = await store.dead_letters_by_id(ids[start : start + PAGE])
            found = []
            for dead_id, fields in asked:
                if fields is None:
                    answer.skip(dead_id, "no such dead letter")
                elif selection.matches(fields):
                    found.append((dead_id, fields))
            await _redrive_page(store, now_s, found, answer)
            if progress is not None:
                progress(len(asked))
        return answer
    newest = await store.dead_letters_newest(1)
    if not newest:
        return answer
    last = _id_key(newest[0][0])  # letters a redriven delivery makes meanwhile wait
    start_id = "-" if since_s is None else f"{max(0, int(since_s * 1000))}-0"
    while True:
        letters = await store.dead_letters(PAGE, start_id)
        letters = [(i, f) for i, f in letters if _id_key(i) <= last]
        await _redrive_page(store, now_s, [(i, f) for i, f in letters if selection.matches(f)],
                            answer)  # fmt: skip
        if progress is not None:
            progress(len(letters))
        if len(letters) < PAGE:
            return answer
        start_id = "(" + letters[-1][0]


def _id_key(dead_id: str) -> tuple[int, int]:
    milliseconds, _, sequence = dead_id.partition("-")
    return int(milliseconds), int(sequence or 0)


async def _redrive_page(
    store: Store, now_s: float, letters: list[tuple[str, dict[str, str]]], answer: Redriven
) -> None:
    """Schedule these letters' deliveries, then remove the letters (so a crash in
    between leaves a duplicate letter, never a lost delivery)."""
    scheduled: list[Write] = []
    removed: list[Write] = []
    for dead_id, fields in letters:
        delivery, reason = await _delivery_of(store, fields)
        if delivery is None:
            answer.skip(dead_id, reason)
            continue
        scheduled.append(ScheduleRetry(delivery, now_s))
        removed.append(RemoveDeadLetter(dead_id))
    if scheduled:
        await store.apply(scheduled)
        await store.apply(removed)
        answer.redriven += len(scheduled)


async def _delivery_of(store: Store, fields: Mapping[str, str]) -> tuple[Delivery | None, str]:
    """The delivery a letter stands for, or None and why it cannot be sent again."""
    default_stream = store.streams[0]
    if "endpoint_id" not in fields:
        return None, f"not a delivery (malformed entry: {fields.get('reason', 'no reason')})"
    if "body" in fields or "body_size" not in fields:
        delivery = from_dead_letter(fields, default_stream)
        return delivery, "" if delivery is not None else "the letter lacks the event"
    stream = fields.get("stream") or default_stream
    entry_id = fields.get("entry_id", "")
    size = fields["body_size"]
    gone = f"event of {size} bytes kept only as an excerpt; its stream entry is gone"
    entry = await store.entry(stream, entry_id) if valid_id(entry_id) else None
    if entry is None:
        return None, gone
    partition = store.streams.index(stream) if len(store.streams) > 1 else None
    try:
        published_s = parse_timestamp(fields["timestamp"])
        event = parse_entry(entry_id, entry, published_s, partition=partition)
    except (InvalidEventError, KeyError, ValueError) as exc:
        return None, f"its stream entry no longer reads as the event: {exc}"
    if event.id != fields.get("event_id"):
        return None, gone
    return from_dead_letter(fields, default_stream, body=event.body), ""


async def purge_letters(
    store: Store,
    *,
    ids: Sequence[str] | None = None,
    selection: DeadFilter = DeadFilter(),
    everything: bool = False,
    progress: Progress | None = None,
) -> int:
    """Delete the letters named by ``ids`` that the filter takes, or those the filter
    takes, or (``everything``) all; how many were deleted. Refuses (ValueError) to
    delete all without ``everything``."""
    if ids is None and selection.empty:
        if not everything:
            raise ValueError("say which letters to purge: ids, a filter, or all")
        return await store.purge_dead_letters()
    purged = 0
    if ids is not None:
        for start in range(0, len(ids), PAGE):
            asked = await store.dead_letters_by_id(ids[start : start + PAGE])
            chosen = [i for i, f in asked if f is not None and selection.matches(f)]
            purged += await store.delete_dead_letters(chosen)
            if progress is not None:
                progress(len(asked))
        return purged
    start_id = "-"
    while True:
        letters = await store.dead_letters(PAGE, start_id)
        purged += await store.delete_dead_letters(
            [dead_id for dead_id, fields in letters if selection.matches(fields)]
        )
        if progress is not None:
            progress(len(letters))
        if len(letters) < PAGE:
            return purged
        start_id = "(" + letters[-1][0]
