"""One delivery (an event for one endpoint): its request, its records, its payload at rest.

Pure: the attempt's timestamp and result come in; headers and record ops go out.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from webhookd import __version__
from webhookd.events import Event, format_timestamp
from webhookd.retry import AttemptResult, DeadLetter, Delivered, Gone, Outcome, RetryAt, describe
from webhookd.signing import signature_headers

USER_AGENT = f"webhookd/{__version__}"
RESPONSE_EXCERPT_CHARS = 65536

Op = str | int | float


@dataclass(frozen=True, slots=True)
class EntryRef:
    """The stream entry a first attempt came from; it is acked when all its deliveries settle."""

    stream: str
    entry_id: str


EVENT_FIELDS = ("id", "type", "vendor", "timestamp", "body")


def _event(fields: Mapping[str, str]) -> Event:
    """An event stored as text (retry payloads, dead letters), its body UTF-8 again."""
    return Event(fields["id"], fields["type"], fields["vendor"], fields["timestamp"],
                 fields["body"].encode())  # fmt: skip


@dataclass(frozen=True, slots=True)
class Delivery:
    event: Event
    endpoint_id: str
    attempts_made: int = 0
    entry: EntryRef | None = None  # set on a first attempt: the entry to ack once settled
    scheduled: bool = False  # it sits in the retry set and must be settled there
    origin: EntryRef | None = None  # where the event was published, kept for replays

    @property
    def member(self) -> str:
        """Its name in the retry set; endpoint ids never hold a colon, so it splits back."""
        return f"{self.endpoint_id}:{self.event.id}"

    def to_payload(self, attempts_made: int) -> str:
        event = self.event
        return json.dumps(
            {
                "id": event.id,
                "type": event.type,
                "vendor": event.vendor,
                "timestamp": event.timestamp,
                "body": event.body.decode(),
                "endpoint_id": self.endpoint_id,
                "attempts": attempts_made,
                "origin": None
                if self.origin is None
                else [self.origin.stream, self.origin.entry_id],
            },
            separators=(",", ":"),
            ensure_ascii=False,
        )

    @classmethod
    def from_dead_letter(cls, fields: Mapping[str, str]) -> Delivery | None:
        """A fresh delivery (no attempts made) for a dead letter; None for malformed entries."""
        renamed = {"id": "event_id", "type": "event_type"}
        try:
            event = _event({key: fields[renamed.get(key, key)] for key in EVENT_FIELDS})
            return cls(event, fields["endpoint_id"], 0, entry=None, scheduled=True)
        except KeyError:
            return None

    @classmethod
    def from_payload(cls, payload: str) -> Delivery:
        raw = json.loads(payload)
        event = _event(raw)
        origin = EntryRef(*raw["origin"]) if raw.get("origin") else None
        return cls(event, raw["endpoint_id"], int(raw["attempts"]), None, True, origin)


def request_headers(
    event: Event,
    keys: Sequence[bytes],
    timestamp: int,
    signers: Sequence[Ed25519PrivateKey] = (),
) -> list[tuple[str, str]]:
    return [
        ("Content-Type", "application/json"),
        ("User-Agent", USER_AGENT),
        ("X-Event-Type", event.type),
        ("X-Event-ID", event.id),
        *signature_headers(keys, event.id, timestamp, event.body, signers),
    ]


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    number: int
    started_s: float
    duration_s: float
    result: AttemptResult
    response_excerpt: str

    def to_json(self, endpoint_id: str) -> str:
        return json.dumps(
            {
                "endpoint_id": endpoint_id,
                "attempt": self.number,
                "at": format_timestamp(self.started_s),
                "duration_ms": round(self.duration_s * 1000, 3),
                "status": self.result.status,
                "error": self.result.error,
                "response": self.response_excerpt,
            },
            separators=(",", ":"),
            ensure_ascii=False,
        )


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


def record_ops(
    delivery: Delivery, outcome: Outcome, attempt: AttemptRecord, dead_stream: str
) -> list[Op]:
    """The ops (``lua/record.lua``) that make this attempt's outcome durable."""
    event = delivery.event
    state: dict[str, Any] = {
        "endpoint_id": delivery.endpoint_id,
        "state": state_name(outcome),
        "attempts": attempt.number,
        "last_status": attempt.result.status,
        "last_error": attempt.result.error,
        "event_timestamp": event.timestamp,
    }
    if delivery.origin is not None:
        state["origin"] = [delivery.origin.stream, delivery.origin.entry_id]
    if isinstance(outcome, RetryAt):
        state["next_attempt_at"] = format_timestamp(outcome.due_s)
    ops: list[Op] = [
        "attempt",
        event.id,
        delivery.endpoint_id,
        json.dumps(state, separators=(",", ":")),
        attempt.to_json(delivery.endpoint_id),
    ]
    match outcome:
        case RetryAt(due_s=due_s):
            ops += schedule_ops(delivery, due_s, attempt.number)
        case DeadLetter(reason=reason):
            ops += dead_ops(delivery, attempt, reason, dead_stream)
        case Gone():
            reason = "endpoint answered 410 Gone and was disabled"
            ops += dead_ops(delivery, attempt, reason, dead_stream)
        case Delivered():
            if delivery.scheduled:
                ops += ["settle", delivery.member]
    return ops


def dead_ops(delivery: Delivery, attempt: AttemptRecord, reason: str, dead_stream: str) -> list[Op]:
    event = delivery.event
    fields = [
        ["event_id", event.id],
        ["endpoint_id", delivery.endpoint_id],
        ["attempts", str(attempt.number)],
        ["last_status", "" if attempt.result.status is None else str(attempt.result.status)],
        ["last_error", describe(attempt.result)],
        ["reason", reason],
        ["event_type", event.type],
        ["vendor", event.vendor],
        ["timestamp", event.timestamp],
        ["body", event.body.decode()],
    ]
    ops: list[Op] = ["dead", dead_stream, json.dumps(fields, ensure_ascii=False)]
    if delivery.scheduled:
        ops += ["settle", delivery.member]
    return ops


def malformed_ops(
    entry: EntryRef, raw_fields: dict[str, str], reason: str, dead_stream: str
) -> list[Op]:
    fields = [
        ["reason", reason],
        ["source_stream", entry.stream],
        ["source_id", entry.entry_id],
        ["entry", json.dumps(raw_fields, ensure_ascii=False)],
    ]
    return [
        "dead",
        dead_stream,
        json.dumps(fields, ensure_ascii=False),
        "ack",
        entry.stream,
        entry.entry_id,
    ]


def ack_ops(entry: EntryRef) -> list[Op]:
    return ["ack", entry.stream, entry.entry_id]


def corrupt_retry_ops(member: str, payload: str, reason: str, dead_stream: str) -> list[Op]:
    """A scheduled retry that cannot be read back: keep it as a dead letter, not a loop."""
    fields = [["reason", f"unreadable scheduled retry: {reason}"], ["member", member],
              ["payload", payload]]  # fmt: skip
    return ["dead", dead_stream, json.dumps(fields, ensure_ascii=False), "settle", member]


def redrive_ops(delivery: Delivery, now_s: float, dead_stream: str, dead_id: str) -> list[Op]:
    """Schedule a dead letter's delivery afresh, due now, and remove it from the dead stream."""
    return [*schedule_ops(delivery, now_s, 0), "undead", dead_stream, dead_id]


def schedule_ops(delivery: Delivery, due_s: float, attempts_made: int) -> list[Op]:
    """Put a delivery in the retry set, due at ``due_s``: after a failed attempt, deferred
    while its endpoint is saturated, or sent afresh by a replay or a redrive."""
    payload = delivery.to_payload(attempts_made)
    return ["schedule", delivery.member, str(math.ceil(due_s * 1000)), payload]
