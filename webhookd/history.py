"""The delivery history: one entry per attempt (and per held or untried dead delivery),
kept per partition in ``{S}:history`` by ``record.lua``, read newest first across every
partition with filters and a cursor.

Partitions are merged by entry id (the time Redis wrote the entry), ties broken by
partition, so a page is in one order whatever the partitioning. A filtered read scans at
most ``SCAN_LIMIT`` entries; when that bound stops it, the page may be short (or empty)
and its cursor resumes the scan where it stopped.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from webhookd.events import format_timestamp
from webhookd.store import Store

OUTCOMES = ("delivered", "failed", "dead", "gone", "held")
SCAN_LIMIT = 10_000
LARGEST = 2**64 - 1  # stream ids are two unsigned 64-bit numbers: a cursor past them is "newest"
CHUNK = 200


@dataclass(frozen=True, slots=True)
class Filter:
    endpoint_id: str | None = None
    vendor: str | None = None
    outcome: str | None = None

    def admits(self, fields: Mapping[str, str]) -> bool:
        return (
            (self.endpoint_id is None or fields.get("endpoint") == self.endpoint_id)
            and (self.vendor is None or fields.get("vendor") == self.vendor)
            and (self.outcome is None or fields.get("outcome") == self.outcome)
        )


Position = tuple[int, int, int]  # entry id (ms, sequence), partition index


def position(entry_id: str, partition: int) -> Position:
    milliseconds, _, sequence = entry_id.partition("-")
    return int(milliseconds), int(sequence or 0), partition


def encode_cursor(at: Position) -> str:
    return f"{at[0]}-{at[1]}_{at[2]}"


def decode_cursor(cursor: str) -> Position:
    """Raises ValueError for anything ``encode_cursor`` did not make."""
    entry_id, _, partition = cursor.partition("_")
    milliseconds, dash, sequence = entry_id.partition("-")
    digits = (milliseconds, sequence, partition)
    if not (dash and all(part.isascii() and part.isdigit() for part in digits)):
        raise ValueError(f"cursor {cursor[:64]!r} is not one this API gave out")
    return min(int(milliseconds), LARGEST), min(int(sequence), LARGEST), int(partition)


def shown(entry_id: str, fields: Mapping[str, str]) -> dict[str, Any]:
    """A history entry as the admin API and the CLI show it."""
    at_ms = int(fields.get("at") or entry_id.partition("-")[0])
    status = fields.get("status")
    duration = fields.get("ms")
    return {
        "event_id": fields.get("event"),
        "event_type": fields.get("type"),
        "vendor": fields.get("vendor"),
        "endpoint_id": fields.get("endpoint"),
        "state": fields.get("outcome"),
        "attempt": int(fields.get("attempt") or 0),
        "status": int(status) if status else None,
        "error": fields.get("error") or None,
        "duration_ms": float(duration) if duration else None,
        "at": format_timestamp(at_ms / 1000),
        "response": fields.get("response", ""),
    }


async def page(
    store: Store, which: Filter, *, limit: int, cursor: str | None = None
) -> tuple[list[dict[str, Any]], str | None]:
    """Up to ``limit`` entries older than ``cursor``, newest first, and the next cursor
    (None at the end). Raises ValueError for a bad cursor, StoreError."""
    after = None if cursor is None else decode_cursor(cursor)
    streams = store.streams
    buffers: list[list[tuple[str, dict[str, str]]]] = [[] for _ in streams]
    ends: list[str] = []
    for index in range(len(streams)):
        if after is None:
            ends.append("+")
        elif index < after[2]:  # ties sort by partition, higher first: this one still owes it
            ends.append(_inclusive(after))
        else:
            ends.append(f"{after[0]}-{after[1]}")
    exhausted = [False] * len(streams)
    found: list[dict[str, Any]] = []
    scanned = 0
    last: Position | None = None
    while len(found) < limit and scanned < SCAN_LIMIT:
        for index, stream in enumerate(streams):
            if not buffers[index] and not exhausted[index]:
                chunk = await store.history(stream, ends[index], CHUNK)
                buffers[index] = chunk
                exhausted[index] = len(chunk) < CHUNK
                if chunk:
                    ends[index] = chunk[-1][0]
        heads = [(position(b[0][0], i), i) for i, b in enumerate(buffers) if b]
        if not heads:
            return found, None
        last, index = max(heads)
        entry_id, fields = buffers[index].pop(0)
        scanned += 1
        if which.admits(fields):
            found.append(shown(entry_id, fields))
    done = all(exhausted) and not any(buffers)
    return found, None if done or last is None else encode_cursor(last)


def _inclusive(at: Position) -> str:
    """The smallest id above ``at``'s, so an exclusive read from it includes ``at``'s
    ("+", the newest, past the largest id)."""
    milliseconds, sequence, _ = at
    if sequence < LARGEST:
        return f"{milliseconds}-{sequence + 1}"
    return "+" if milliseconds == LARGEST else f"{milliseconds + 1}-0"
