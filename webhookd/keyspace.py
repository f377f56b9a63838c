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

Keys outside any partition, each used by plain commands only (never inside a script):
``stream.dead`` (dead letters), ``<prefix>:eventid:<id>`` (who took an event id, spread
over every slot), and the endpoint registry (``webhookd.registry``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from webhookd import fastjson
from webhookd.events import format_timestamp
from webhookd.model import AckEntry, ClearRetry, MarkDeferred, RecordAttempt, ScheduleRetry

PartitionWrite = RecordAttempt | ScheduleRetry | MarkDeferred | ClearRetry | AckEntry


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
    def held(self) -> str:
        return f"{self.tag}:held"

    @property
    def deferred_all(self) -> str:
        return f"{self.tag}:deferred"


def event_id_key(prefix: str, event_id: str) -> str:
    return f"{prefix}:eventid:{event_id}"


def attempt_field(endpoint_id: str, number: int) -> str:
    return f"{endpoint_id}#{number}"


def encode_record(
    keys: PartitionKeys, writes: Sequence[PartitionWrite]
) -> tuple[list[str], list[str | int]]:
    """KEYS and the op arguments of one ``record.lua`` call for one partition's writes.

    KEYS are the stream, the retry set, the payload hash, then each event record and
    deferred set touched; the ops refer to those by their position in KEYS. Ops follow
    each other as plain arguments (no JSON around them: neither side pays for a second
    encoding)::

        a <key index> <endpoint id> <state json> <attempt field or ""> <attempt json or "">
        s <member> <due ms> <payload json>
        d <key index> <member>          (deferred: SADD)
        u <key index> <member>          (no longer deferred: SREM)
        c <member>
        k <entry id>
    """
    names = [keys.stream, keys.retry, keys.payloads]
    index: dict[str, int] = {}
    ops: list[str | int] = []

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
                ops += ["a", position, delivery.endpoint_id, state_json(write), field, attempt_json]
            case ScheduleRetry(delivery=delivery, due_s=due_s):
                ops += ["s", delivery.member, math.ceil(due_s * 1000), delivery.to_payload()]
            case MarkDeferred(delivery=delivery, deferred=deferred):
                position = position_of(keys.deferred(delivery.event.vendor))
                ops += ["d" if deferred else "u", position, delivery.member]
            case ClearRetry(member=member):
                ops += ["c", member]
            case AckEntry(entry=entry):
                ops += ["k", entry.entry_id]
    return names, ops


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
