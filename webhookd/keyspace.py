"""Every Redis key name of the delivery path, and the encoding of writes for ``record.lua``.

Pure. A stream partition is the unit of co-location: its keys carry the stream's name as
their hash tag, so on Redis Cluster they live in the stream's own slot and every script
call touches one slot. ``S`` is a partition's stream (``stream.name``, or
``<name>:<i>`` once partitioned)::

    S                         the stream producers XADD to (its slot is that of "S")
    {S}:retry                 ZSET member -> due ms: scheduled retries, leased when claimed
    {S}:retry:payload         HASH member -> delivery JSON
    {S}:event:<event id>      HASH endpoint id -> state JSON, "<endpoint id>#<n>" -> attempt n
    {S}:deferred:<vendor>     SET retry members of the vendor that wait deferred (a quota,
                              a paused endpoint); counted with ZINTERCARD against the retry
                              set, so a member left behind by a crash is never counted
    {S}:deferred              SET the same members of every vendor (the deferred gauge)
    {S}:held                  ZSET member -> ms held: deliveries due to a disabled endpoint
    {S}:held:payload          HASH member -> delivery JSON, until recovered or expired
    {S}:history               STREAM one entry per attempt (and per held or untried dead
                              delivery), newest last, capped: the delivery history
    {S}:minute:<epoch minute> HASH delivered, failed, latency_ms: the per-minute figures

Keys outside any partition, each used by plain commands only (never inside a script):
``stream.dead`` (dead letters), ``<prefix>:eventid:<id>`` (who took an event id, spread
over every slot), and the endpoint registry (``webhookd.registry``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import fastjson
from webhookd.events import format_timestamp
from webhookd.model import (
    AckEntry,
    ClearRetry,
    HoldDelivery,
    MarkDeferred,
    PartitionWrite,
    RecordAttempt,
    ReleaseHeld,
    ScheduleRetry,
)


@dataclass(frozen=True, slots=True)
class PartitionKeys:
    stream: str

    @property
    def tag(self) -> str:
        return "{" + self.stream + "}"

    @property
    def retry(self) -> str:
        return f"{self.tag}:retry"

    @property
    def payloads(self) -> str:
        return f"{self.tag}:retry:payload"

    def event(self, event_id: str) -> str:
        return f"{self.tag}:event:{event_id}"

    def deferred(self, vendor: str) -> str:
        return f"{self.tag}:deferred:{vendor}"

    @property
    def deferred_all(self) -> str:
        return f"{self.tag}:deferred"

    @property
    def held(self) -> str:
        return f"{self.tag}:held"

    @property
    def held_payloads(self) -> str:
        return f"{self.tag}:held:payload"

    @property
    def history(self) -> str:
        return f"{self.tag}:history"

    def minute(self, epoch_minute: int) -> str:
        return f"{self.tag}:minute:{epoch_minute}"


def event_id_key(prefix: str, event_id: str) -> str:
    return f"{prefix}:eventid:{event_id}"


def attempt_field(endpoint_id: str, number: int) -> str:
    return f"{endpoint_id}#{number}"


HISTORY_RESPONSE_CHARS = 200  # of a response body, in a history entry
MINUTE_TTL_S = 2 * 3600  # per-minute figures are kept for two hours


def history_outcome(write: RecordAttempt) -> str | None:
    """What the delivery history calls this record, or None when it is not history (a
    delivery waiting for room or a quota is not an attempt)."""
    if write.attempt is None:
        return write.state if write.state in ("held", "dead") else None
    return "failed" if write.state == "scheduled" else write.state


def history_fields(write: RecordAttempt, outcome: str) -> list[str]:
    """A history entry's fields (``webhookd.history`` reads them back)."""
    delivery, attempt, event = write.delivery, write.attempt, write.delivery.event
    fields = ["event", event.id, "type", event.type, "vendor", event.vendor,
              "endpoint", delivery.endpoint_id, "outcome", outcome]  # fmt: skip
    if attempt is None:
        return [*fields, "attempt", str(delivery.attempts_made), "error", write.reason or ""]
    result = attempt.result
    return [*fields, "attempt", str(attempt.number), "at", str(int(attempt.started_s * 1000)),
            "ms", str(round(attempt.duration_s * 1000, 3)),
            "status", "" if result.status is None else str(result.status),
            "error", result.error or "",
            "response", attempt.response_excerpt[:HISTORY_RESPONSE_CHARS]]  # fmt: skip


FIXED_KEYS = 7  # stream, retry, payloads, held, held payloads, history, every deferred


def encode_record(
    keys: PartitionKeys, writes: Sequence[PartitionWrite]
) -> tuple[list[str], list[str | int]]:
    """KEYS and the op arguments of one ``record.lua`` call for one partition's writes.

    KEYS are the stream, the retry set, the payload hash, the held set and its payloads,
    the history stream and the set of every deferred member, then each event record,
    vendor's deferred set and minute's figures touched; ops refer to those by their
    position in KEYS. Ops follow each other as plain arguments (no JSON around them:
    neither side pays for a second encoding)::

        a <key index> <endpoint id> <state json> <attempt field or ""> <attempt json or "">
        y <field count> <field> <value> ...   (a history entry)
        s <member> <due ms> <payload json>
        d <key index> <member>          (deferred: SADD, to the vendor's set and to all)
        u <key index> <member>          (no longer deferred: SREM)
        c <member>
        h <member> <held ms> <payload json>
        r <member>                      (no longer held)
        m <key index> <delivered> <failed> <latency ms>
        k <entry id>
    """
    names = [keys.stream, keys.retry, keys.payloads, keys.held, keys.held_payloads,
             keys.history, keys.deferred_all]  # fmt: skip
    index: dict[str, int] = {}
    ops: list[str | int] = []
    minutes: dict[int, list[float]] = {}

    def position_of(key: str) -> int:
        position = index.get(key)
        if position is None:
            names.append(key)
            position = index[key] = len(names)
        return position

    for write in writes:
        match write:
            case RecordAttempt(delivery=delivery, attempt=attempt):
                position = position_of(keys.event(delivery.event.id))
                field, attempt_json = "", ""
                if attempt is not None:
                    field = attempt_field(delivery.endpoint_id, attempt.number)
                    attempt_json = attempt.to_json(delivery.endpoint_id)
                    tally = minutes.setdefault(int(attempt.started_s // 60), [0, 0, 0.0])
                    if write.state == "delivered":
                        tally[0] += 1
                        tally[2] += attempt.duration_s * 1000
                    else:
                        tally[1] += 1
                ops += ["a", position, delivery.endpoint_id, state_json(write), field, attempt_json]
                outcome = history_outcome(write)
                if outcome is not None:
                    entry = history_fields(write, outcome)
                    ops += ["y", len(entry) // 2, *entry]
            case ScheduleRetry(delivery=delivery, due_s=due_s):
                ops += ["s", delivery.member, math.ceil(due_s * 1000), delivery.to_payload()]
            case MarkDeferred(delivery=delivery, deferred=deferred):
                position = position_of(keys.deferred(delivery.event.vendor))
                ops += ["d" if deferred else "u", position, delivery.member]
            case ClearRetry(member=member):
                ops += ["c", member]
            case HoldDelivery(delivery=delivery, held_s=held_s):
                ops += ["h", delivery.member, int(held_s * 1000), delivery.to_payload()]
            case ReleaseHeld(member=member):
                ops += ["r", member]
            case AckEntry(entry=entry):
                ops += ["k", entry.entry_id]
    figures: list[str | int] = []
    for minute, (delivered, failed, latency_ms) in minutes.items():
        figures += ["m", position_of(keys.minute(minute)), int(delivered), int(failed),
                    str(round(latency_ms, 3))]  # fmt: skip
    return names, figures + ops


def state_json(write: RecordAttempt) -> str:
    """A delivery's state as the event record keeps it (``GET /v1/events/{id}`` shows it)."""
    delivery, attempt = write.delivery, write.attempt
    state: dict[str, object] = {
        "endpoint_id": delivery.endpoint_id,
        "state": write.state,
        "attempts": delivery.attempts_made if attempt is None else attempt.number,
        "last_status": None if attempt is None else attempt.result.status,
        "last_error": None if attempt is None else attempt.result.error,
        "event_timestamp": delivery.event.timestamp,
        "origin": [delivery.origin.stream, delivery.origin.entry_id],
    }
    if write.next_attempt_s is not None:
        state["next_attempt_at"] = format_timestamp(write.next_attempt_s)
    if write.reason is not None:
        state["reason"] = write.reason
    return fastjson.dumps_text(state)
