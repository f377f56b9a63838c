"""The delivery core's values: a delivery, one attempt's record, and the writes that make
an outcome durable.

Pure: no I/O, no clock. The path a delivery takes reads as one line of these values::

    Event --fan-out--> Delivery --attempt--> AttemptRecord + Outcome --outcome_writes--> Writes

A write names *what* must become durable (record an attempt, schedule a retry, add a
dead letter, ack an entry); ``webhookd.store`` alone knows the Redis keys and commands
that do it. Writes of one delivery are applied in order, and an entry's ack after the
writes of every delivery it produced.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import replace

import fastjson
from webhookd.events import Event, format_timestamp
from webhookd.retry import AttemptResult, DeadLetter, Delivered, Gone, Outcome, RetryAt, describe
from webhookd.values import value_type

GONE_REASON = "endpoint answered 410 Gone and was disabled"
DEAD_BODY_MAX_BYTES = 64 * 1024  # a bigger event body is not copied into its dead letter
DEAD_EXCERPT_BYTES = 1024  # what such a dead letter keeps of it


@value_type
class EntryRef:
    """A stream entry: where an event was published, and what is acked once it settles."""

    stream: str
    entry_id: str


@value_type
class Delivery:
    """One event for one endpoint. ``origin`` is the entry the event came from: its stream
    is the partition whose keys hold this delivery's retry and records."""

    event: Event
    endpoint_id: str
    origin: EntryRef
    attempts_made: int = 0
    acks: EntryRef | None = None  # a first attempt: the entry to ack once all its deliveries settle
    scheduled: bool = False  # it sits in the retry set and must be cleared from it when settled
    deferred: bool = False  # it waits without an attempt (a quota, a paused endpoint)

    @property
    def member(self) -> str:
        """Its name in the retry set; endpoint ids never hold a colon, so it splits back."""
        return f"{self.endpoint_id}:{self.event.id}"

    @property
    def stream(self) -> str:
        return self.origin.stream

    def attempted(self) -> Delivery:
        """The same delivery once one more attempt has been made."""
        return replace(self, attempts_made=self.attempts_made + 1, deferred=False)

    def to_payload(self) -> str:
        """The delivery at rest in the retry set (its event's body kept as text)."""
        event = self.event
        payload: dict[str, object] = {
            "id": event.id,
            "type": event.type,
            "vendor": event.vendor,
            "timestamp": event.timestamp,
            "body": event.body.decode(),
            "endpoint_id": self.endpoint_id,
            "attempts": self.attempts_made,
            "origin": [self.origin.stream, self.origin.entry_id],
        }
        if self.deferred:
            payload["deferred"] = True
        return fastjson.dumps_text(payload)

    @classmethod
    def from_payload(cls, payload: str | bytes, stream: str) -> Delivery:
        """A scheduled delivery read back; raises ValueError, KeyError or TypeError when the
        payload is not one. ``stream`` is the partition it was found in."""
        raw = fastjson.loads(payload)
        origin = raw.get("origin") or [stream, ""]
        return cls(
            event=stored_event(raw),
            endpoint_id=str(raw["endpoint_id"]),
            origin=EntryRef(str(origin[0]), str(origin[1])),
            attempts_made=int(raw["attempts"]),
            scheduled=True,
            deferred=raw.get("deferred") is True,
        )


def stored_event(fields: Mapping[str, str]) -> Event:
    """An event stored as text (retry payloads, dead letters), its body UTF-8 again."""
    return Event(fields["id"], fields["type"], fields["vendor"], fields["timestamp"],
                 fields["body"].encode())  # fmt: skip


@value_type
class AttemptRecord:
    number: int
    started_s: float
    duration_s: float
    result: AttemptResult
    response_excerpt: str

    def to_json(self, endpoint_id: str) -> str:
        return fastjson.dumps_text(
            {
                "endpoint_id": endpoint_id,
                "attempt": self.number,
                "at": format_timestamp(self.started_s),
                "duration_ms": round(self.duration_s * 1000, 3),
                "status": self.result.status,
                "error": self.result.error,
                "response": self.response_excerpt,
            }
        )


# --- writes: what one outcome asks the store to make durable -----------------------------


@value_type
class RecordAttempt:
    """The delivery's state after an attempt, and the attempt itself, in the event's record."""

    delivery: Delivery
    state: str  # delivered | scheduled | deferred | dead | gone | duplicate
    attempt: AttemptRecord | None
    next_attempt_s: float | None = None
    reason: str | None = None  # why it was deferred or dead-lettered without an attempt


@value_type
class ScheduleRetry:
    delivery: Delivery  # attempts_made already counts the attempt just made
    due_s: float


@value_type
class MarkDeferred:
    """Count the delivery among its vendor's deferred ones (``vendor show``), or stop."""

    delivery: Delivery
    deferred: bool


@value_type
class ClearRetry:
    stream: str
    member: str


@value_type
class HoldDelivery:
    """Keep a delivery due to a disabled endpoint until the endpoint is recovered."""

    delivery: Delivery
    held_s: float


@value_type
class ReleaseHeld:
    """A held delivery leaves the held set (recovered, or expired into a dead letter)."""

    stream: str
    member: str


@value_type
class AddDeadLetter:
    fields: tuple[tuple[str, str], ...]


@value_type
class RemoveDeadLetter:
    dead_id: str


@value_type
class AckEntry:
    entry: EntryRef


# Writes that live in one stream partition (``record.lua``), and those that do not: the
# dead-letter stream is outside every partition.
PartitionWrite = (
    RecordAttempt
    | ScheduleRetry
    | MarkDeferred
    | ClearRetry
    | HoldDelivery
    | ReleaseHeld
    | AckEntry
)
Write = PartitionWrite | AddDeadLetter | RemoveDeadLetter


def state_name(outcome: Outcome) -> str:
    match outcome:
        case Delivered():
            return "delivered"
        case RetryAt():
            return "scheduled"
        case DeadLetter():
            return "dead"
        case Gone():
            return "gone"


def outcome_writes(delivery: Delivery, outcome: Outcome, attempt: AttemptRecord) -> list[Write]:
    """What makes this attempt's outcome durable; ``delivery`` is the one attempted."""
    due_s = outcome.due_s if isinstance(outcome, RetryAt) else None
    writes: list[Write] = [RecordAttempt(delivery, state_name(outcome), attempt, due_s)]
    match outcome:
        case RetryAt(due_s=due_s):
            return settled_writes(delivery, [*writes, ScheduleRetry(delivery.attempted(), due_s)])
        case DeadLetter(reason=reason):
            writes.append(dead_letter(delivery, attempt, reason))
        case Gone():
            writes.append(dead_letter(delivery, attempt, GONE_REASON))
    if delivery.scheduled:
        writes.append(ClearRetry(delivery.stream, delivery.member))
    return settled_writes(delivery, writes)


def settled_writes(delivery: Delivery, writes: list[Write]) -> list[Write]:
    """``writes`` plus, for a delivery that waited deferred, the end of that wait."""
    if delivery.deferred:
        writes.append(MarkDeferred(delivery, False))
    return writes


def deferral_writes(delivery: Delivery, due_s: float, reason: str) -> list[Write]:
    """The delivery waits in the retry set until ``due_s`` without using an attempt, and
    its record says so and why."""
    waiting = replace(delivery, scheduled=True, deferred=True)
    return [
        RecordAttempt(delivery, "deferred", None, due_s, reason),
        ScheduleRetry(waiting, due_s),
        MarkDeferred(waiting, True),
    ]


def hold_writes(delivery: Delivery, now_s: float, reason: str) -> list[Write]:
    """Its endpoint is disabled: the delivery is held (no attempt used), never dropped;
    ``endpoint enable --recover`` sends what was held."""
    held = replace(delivery, scheduled=False, deferred=False)
    writes: list[Write] = [
        RecordAttempt(delivery, "held", None, reason=reason),
        HoldDelivery(held, now_s),
    ]
    if delivery.scheduled:
        writes.append(ClearRetry(delivery.stream, delivery.member))
    return settled_writes(delivery, writes)


def release_writes(delivery: Delivery, now_s: float) -> list[Write]:
    """A held delivery recovered: due now in the retry set, out of the held set."""
    due = replace(delivery, scheduled=True, deferred=False)
    return [ScheduleRetry(due, now_s), ReleaseHeld(delivery.stream, delivery.member)]


def expired_hold_writes(delivery: Delivery, reason: str) -> list[Write]:
    """Held past ``stream.retention`` without a recovery: a dead letter, so it can
    still be redriven, and out of the held set."""
    return [
        RecordAttempt(delivery, "dead", None, reason=reason),
        dead_letter(delivery, None, reason),
        ReleaseHeld(delivery.stream, delivery.member),
    ]


def refusal_writes(delivery: Delivery, reason: str) -> list[Write]:
    """Dead-lettered untried (over the daily quota, when so configured)."""
    writes: list[Write] = [
        RecordAttempt(delivery, "dead", None, reason=reason),
        dead_letter(delivery, None, reason),
    ]
    if delivery.scheduled:
        writes.append(ClearRetry(delivery.stream, delivery.member))
    return settled_writes(delivery, writes)


def dead_letter(delivery: Delivery, attempt: AttemptRecord | None, reason: str) -> AddDeadLetter:
    """The contract's dead-letter fields, and what a redrive needs to deliver it again."""
    event = delivery.event
    result = attempt.result if attempt is not None else None
    status = "" if result is None or result.status is None else str(result.status)
    return AddDeadLetter(
        (
            ("event_id", event.id),
            ("endpoint_id", delivery.endpoint_id),
            ("attempts", str(delivery.attempts_made if attempt is None else attempt.number)),
            ("last_status", status),
            ("last_error", "" if result is None else describe(result)),
            ("reason", reason),
            ("event_type", event.type),
            ("vendor", event.vendor),
            ("timestamp", event.timestamp),
            *dead_body_fields(event.body),
            ("stream", delivery.origin.stream),
            ("entry_id", delivery.origin.entry_id),
        )
    )


def dead_body_fields(body: bytes) -> tuple[tuple[str, str], ...]:
    """A dead letter's copy of the event body: whole up to ``DEAD_BODY_MAX_BYTES``, else
    its first ``DEAD_EXCERPT_BYTES`` (cut back to whole UTF-8 characters) and its size;
    a redrive reads such an event again from its stream entry."""
    if len(body) <= DEAD_BODY_MAX_BYTES:
        return (("body", body.decode()),)
    excerpt = body[:DEAD_EXCERPT_BYTES].decode("utf-8", "ignore")
    return (("body_excerpt", excerpt), ("body_size", str(len(body))))


def from_dead_letter(
    fields: Mapping[str, str], default_stream: str, body: bytes | None = None
) -> Delivery | None:
    """A fresh delivery (no attempts made) for a dead letter; None for malformed entries,
    which name no endpoint, and for oversized ones unless ``body`` (read again from the
    stream entry) is given. Dead letters written before partitions were recorded in them
    go to ``default_stream``."""
    renamed = {"id": "event_id", "type": "event_type"}
    if body is not None:
        fields = {**fields, "body": body.decode()}
    try:
        keys = ("id", "type", "vendor", "timestamp", "body")
        event = stored_event({key: fields[renamed.get(key, key)] for key in keys})
        origin = EntryRef(fields.get("stream") or default_stream, fields.get("entry_id", ""))
        return Delivery(event, fields["endpoint_id"], origin, scheduled=True)
    except KeyError:
        return None


def malformed_writes(entry: EntryRef, raw_fields: Mapping[str, str], reason: str) -> list[Write]:
    """An entry that holds no valid event: kept as a dead letter with the reason, then acked."""
    fields = (
        ("reason", reason),
        ("source_stream", entry.stream),
        ("source_id", entry.entry_id),
        ("entry", json.dumps(dict(raw_fields), ensure_ascii=False)),
    )
    return [AddDeadLetter(fields), AckEntry(entry)]


def unreadable_retry_writes(stream: str, member: str, payload: str, reason: str) -> list[Write]:
    """A scheduled retry that cannot be read back: keep it as a dead letter, not a loop."""
    fields = (("reason", f"unreadable scheduled retry: {reason}"), ("member", member),
              ("payload", payload), ("stream", stream))  # fmt: skip
    return [AddDeadLetter(fields), ClearRetry(stream, member)]
