"""The Redis side of delivery: the event stream, the retry schedule and the records.

Layout (``p`` is ``redis.key_prefix``):

- ``stream.name`` (or ``<name>:<n>`` per partition): producers XADD events; one consumer
  group reads them with XREADGROUP. An entry is XACKed only after every delivery it
  produced is delivered, durably scheduled for retry, or dead-lettered; entries a dead
  consumer left pending are taken over with XAUTOCLAIM.
- ``p:retry`` (ZSET member -> due ms) and ``p:retry:payload`` (HASH member -> delivery
  JSON): scheduled retries. Claiming one leases it (its due time moves forward by the
  lease), so a process that dies mid-attempt loses nothing.
- ``p:event:<event_id>`` (HASH endpoint id -> state JSON) and ``p:attempts:<event_id>``
  (LIST of attempt JSON): what happened to each delivery; a recorded delivery is never
  sent again when its entry is reclaimed.
- ``stream.dead``: dead letters.

Outcomes are written in batches through one Lua script (``lua/record.lua``), in order.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any, cast

import coredis
import coredis.exceptions
from coredis.response.types import StreamEntry
from coredis.tokens import PureToken

from webhookd.config import StreamSettings
from webhookd.delivery import Delivery, EntryRef, Op, redrive_ops, schedule_ops
from webhookd.errors import InvalidEventError
from webhookd.events import parse_entry, parse_timestamp

REDRIVE_PAGE = 500


@dataclass(frozen=True, slots=True)
class Entry:
    stream: str
    entry_id: str
    fields: Mapping[bytes, bytes]
    reclaimed: bool


@dataclass(frozen=True, slots=True)
class DueRetry:
    member: str
    payload: str


def _script(name: str) -> str:
    return resources.files("webhookd").joinpath("lua", name).read_text()


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _stream_id(text: str) -> tuple[int, int]:
    milliseconds, _, sequence = text.partition("-")
    return int(milliseconds), int(sequence or 0)


def _text_fields(item: StreamEntry) -> dict[str, str]:
    return {_text(k): _text(v) for k, v in (item.field_values or {}).items()}


def _fields(item: StreamEntry) -> Mapping[bytes, bytes]:
    """Entry fields as bytes: the client is built with ``decode_responses=False``."""
    return cast("Mapping[bytes, bytes]", item.field_values or {})


class Queue:
    """Every Redis call on the delivery path; the daemon's loops sit on top of it."""

    def __init__(
        self,
        client: coredis.Redis[bytes],
        stream: StreamSettings,
        key_prefix: str,
        record_ttl_s: float,
    ) -> None:
        self._redis = client
        self._group = stream.group
        self.dead_stream = stream.dead
        self.streams = list(stream.stream_names)
        self._prefix = key_prefix
        self._ttl_s = int(record_ttl_s)
        self._retry_key = f"{key_prefix}:retry"
        self._payload_key = f"{key_prefix}:retry:payload"
        self._record = client.register_script(_script("record.lua"))
        self._claim_due = client.register_script(_script("claim_due.lua"))

    async def ensure_group(self) -> None:
        for name in self.streams:
            with contextlib.suppress(coredis.exceptions.StreamDuplicateConsumerGroupError):
                await self._redis.xgroup_create(name, self._group, "0", mkstream=True)

    async def read_new(self, consumer: str, count: int, block_ms: int) -> list[Entry]:
        answer = await self._redis.xreadgroup(
            self._group,
            consumer,
            streams={name: ">" for name in self.streams},
            count=count,
            block=block_ms,
        )
        entries: list[Entry] = []
        for name, items in (answer or {}).items():
            stream = _text(name)
            for item in items:
                entries.append(Entry(stream, _text(item.identifier), _fields(item), False))
        return entries

    async def reclaim(self, consumer: str, min_idle_ms: int, count: int) -> list[Entry]:
        """Entries other consumers left pending for longer than ``min_idle_ms``."""
        entries: list[Entry] = []
        for stream in self.streams:
            cursor = "0-0"
            while True:
                answer = await self._redis.xautoclaim(
                    stream, self._group, consumer, min_idle_ms, cursor, count=count
                )
                cursor = _text(answer[0])
                for item in answer[1]:
                    if isinstance(item, str | bytes):
                        continue
                    entries.append(Entry(stream, _text(item.identifier), _fields(item), True))
                if cursor == "0-0" or len(entries) >= count:
                    break
        return entries

    async def trim(self, now_s: float, retention_s: float) -> int:
        """Drop entries older than the retention that the group is done with: never one
        still pending, nor one not yet read. Returns how many were dropped."""
        dropped = 0
        for stream in self.streams:
            keep_from = (max(0, int((now_s - retention_s) * 1000)), 0)
            groups: Any = await self._redis.xinfo_groups(stream)
            ours = [g for g in groups if _text(g[b"name"]) == self._group]
            if not ours:
                continue
            last_read = _stream_id(_text(ours[0][b"last-delivered-id"]))
            keep_from = min(keep_from, (last_read[0], last_read[1] + 1))
            pending: Any = await self._redis.xpending(stream, self._group)
            if pending.pending:
                keep_from = min(keep_from, _stream_id(_text(pending.minimum_identifier)))
            threshold: Any = f"{keep_from[0]}-{keep_from[1]}"
            dropped += await self._redis.xtrim(stream, PureToken.MINID, threshold)
        return dropped

    async def states(self, event_ids: Sequence[str]) -> dict[str, dict[str, dict[str, Any]]]:
        """Recorded delivery states of each event, by endpoint id."""
        if not event_ids:
            return {}
        async with self._redis.pipeline(transaction=False) as pipe:
            requests = [pipe.hgetall(f"{self._prefix}:event:{eid}") for eid in event_ids]
        result: dict[str, dict[str, dict[str, Any]]] = {}
        for event_id, request in zip(event_ids, requests, strict=True):
            raw = await request
            result[event_id] = {_text(k): json.loads(v) for k, v in raw.items()}
        return result

    async def attempts(self, event_id: str) -> list[dict[str, Any]]:
        raw = await self._redis.lrange(f"{self._prefix}:attempts:{event_id}", 0, -1)
        return [json.loads(item) for item in raw]

    async def apply(self, ops: Sequence[str | bytes | int | float]) -> None:
        """Run one batch of record ops (see ``lua/record.lua``) in a single round trip."""
        batch = json.dumps(ops, ensure_ascii=False, separators=(",", ":"))
        await self._record(args=[self._prefix, self._ttl_s, self._group, batch])

    async def claim_due(self, now_ms: int, lease_ms: int, limit: int) -> list[DueRetry]:
        flat: list[bytes] = await self._claim_due(
            keys=[self._retry_key, self._payload_key], args=[now_ms, lease_ms, limit]
        )
        items = [_text(x) for x in flat]
        return [DueRetry(items[i], items[i + 1]) for i in range(0, len(items), 2)]

    async def next_due_ms(self) -> float | None:
        first = await self._redis.zrange(self._retry_key, 0, 0, withscores=True)
        if not first:
            return None
        member = first[0]
        return float(member[1])

    async def dead_letters(self, count: int) -> list[tuple[str, dict[str, str]]]:
        items = await self._redis.xrange(self.dead_stream, "-", "+", count=count)
        return [(_text(item.identifier), _text_fields(item)) for item in items]

    async def replay(self, event_id: str, now_s: float) -> list[str] | None:
        """Deliver a recorded event afresh to every endpoint it went to; the endpoint ids,
        or None when the event is unknown or its stream entry is no longer retained."""
        states = (await self.states([event_id]))[event_id]
        origins = [state["origin"] for state in states.values() if state.get("origin")]
        if not origins:
            return None
        stream, entry_id = origins[0]
        items = await self._redis.xrange(stream, entry_id, entry_id)
        if not items:
            return None
        published_s = parse_timestamp(next(iter(states.values()))["event_timestamp"])
        try:
            event = parse_entry(entry_id, _fields(items[0]), published_s)
        except InvalidEventError:
            return None
        origin = EntryRef(stream, entry_id)
        ops: list[Op] = []
        for endpoint_id in sorted(states):
            delivery = Delivery(event, endpoint_id, scheduled=True, origin=origin)
            ops += schedule_ops(delivery, now_s, 0)
        await self.apply(ops)
        return sorted(states)

    async def redrive(self, now_s: float, *, endpoint_id: str | None = None) -> int:
        """Schedule every dead delivery (of one endpoint, if given) for a fresh round of
        attempts; malformed entries, which name no endpoint, stay where they are."""
        redriven = 0
        start = "-"
        while True:
            items = await self._redis.xrange(self.dead_stream, start, "+", count=REDRIVE_PAGE)
            ops: list[Op] = []
            for item in items:
                dead_id = _text(item.identifier)
                fields = _text_fields(item)
                delivery = Delivery.from_dead_letter(fields)
                if delivery is None or endpoint_id not in (None, delivery.endpoint_id):
                    continue
                ops += redrive_ops(delivery, now_s, self.dead_stream, dead_id)
                redriven += 1
            if ops:
                await self.apply(ops)
            if len(items) < REDRIVE_PAGE:
                return redriven
            start = "(" + _text(items[-1].identifier)
