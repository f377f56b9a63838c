"""The Redis edge of the delivery path: every command it sends, each under
``connection.translated`` so coredis's errors come out as webhookd's.

Key names come from ``webhookd.keyspace``; every key a command or script touches is
passed to it, so all of this runs on one Redis and on Redis Cluster alike. Layout, and
why each thing lives where it does, is in keyspace's docstring. Writes go out in order:
dead-letter stream changes first (they live outside any partition), then one
``record.lua`` call per partition touched, pipelined; so an entry's ack lands only after
its dead letters and records, and a crash in between repeats work, never loses it.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import coredis
import coredis.exceptions
from coredis.response.types import StreamEntry
from coredis.tokens import PureToken

from rediswire import Script
from webhookd import ops
from webhookd.config import Settings, StreamSettings
from webhookd.connection import RedisClient, lua_script, translated
from webhookd.keyspace import (
    MINUTE_TTL_S,
    PartitionKeys,
    encode_record,
    event_id_key,
)
from webhookd.model import (
    AckEntry,
    AddDeadLetter,
    ClearRetry,
    PartitionWrite,
    ReleaseHeld,
    RemoveDeadLetter,
    Write,
)
from webhookd.values import value_type

HISTORY_ENTRIES = 100_000


@value_type
class Entry:
    stream: str
    entry_id: str
    fields: Mapping[bytes, bytes]
    reclaimed: bool


@value_type
class Held:
    stream: str
    member: str
    payload: str
    held_ms: float


@dataclass(frozen=True, slots=True)
class PartitionStats:
    """What waits in one partition (``Store.partition_stats``). ``lag`` is None when
    Redis cannot tell (entries deleted from the stream since the group read there)."""

    stream: str
    group_exists: bool
    lag: int | None  # entries not yet read by the consumer group
    pending: int  # read, not yet acknowledged
    retry_backlog: int  # in the retry set, waiting or leased (deferred ones included)
    held: int  # held while their endpoint is disabled
    deferred: int  # waiting without an attempt (a quota, a paused endpoint)


@value_type
class DueRetry:
    stream: str
    member: str
    payload: str


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _stream_id(text: str) -> tuple[int, int]:
    milliseconds, _, sequence = text.partition("-")
    return int(milliseconds), int(sequence or 0)


def _fields(item: StreamEntry) -> Mapping[bytes, bytes]:
    """Entry fields as bytes: the client is built with ``decode_responses=False``."""
    return cast("Mapping[bytes, bytes]", item.field_values or {})


def _pairs(flat: list[bytes]) -> dict[bytes, bytes]:
    """An entry's fields from the wire's flat [field, value, …] list."""
    return dict(zip(flat[::2], flat[1::2], strict=True))


def text_fields(item: StreamEntry) -> dict[str, str]:
    return {_text(k): _text(v) for k, v in (item.field_values or {}).items()}


class Store:
    """Every Redis call on the delivery path; intake, scheduler and recorder sit on top."""

    def __init__(
        self,
        client: RedisClient,
        stream: StreamSettings,
        key_prefix: str,
        record_ttl_s: float,
        *,
        history_entries: int = HISTORY_ENTRIES,
    ) -> None:
        self._redis = client
        self._group = stream.group
        self.dead_stream = stream.dead
        self.ops_stream = stream.ops
        self.streams = list(stream.stream_names)
        self.partitions = {name: PartitionKeys(name) for name in self.streams}
        self._prefix = key_prefix
        self._ttl_s = int(record_ttl_s)
        self._retention_s = max(1, int(stream.retention_s))
        self.retention_s = stream.retention_s
        self._history_entries = history_entries
        self._wire = client.wire
        self._record = Script(lua_script("record.lua"))
        self._claim_due = Script(lua_script("claim_due.lua"))

    def keys(self, stream: str) -> PartitionKeys:
        return self.partitions.get(stream) or PartitionKeys(stream)

    async def ping(self) -> None:
        with translated("ping"):
            await self._redis.ping()

    async def ensure_group(self, stream: str) -> bool:
        """Create the consumer group (and the stream) if missing; True when it was created."""
        with translated(f"XGROUP CREATE {stream}"):
            try:
                await self._redis.xgroup_create(stream, self._group, "0", mkstream=True)
            except coredis.exceptions.StreamDuplicateConsumerGroupError:
                return False
            except coredis.exceptions.ResponseError as exc:
                if "BUSYGROUP" in str(exc):
                    return False
                raise
        return True

    async def read_new(self, stream: str, consumer: str, count: int, block_ms: int) -> list[Entry]:
        with translated(f"XREADGROUP {stream}"):
            answer = await self._wire.call(
                "XREADGROUP", "GROUP", self._group, consumer, "COUNT", count,
                "BLOCK", block_ms, "STREAMS", stream, ">", route=stream,
            )  # fmt: skip
        if not answer:
            return []
        return [
            Entry(stream, entry_id.decode(), _pairs(flat), False)
            for _, items in cast("list[tuple[bytes, list[tuple[bytes, list[bytes]]]]]", answer)
            for entry_id, flat in items
        ]

    async def reclaim(
        self, stream: str, consumer: str, min_idle_ms: int, count: int
    ) -> list[Entry]:
        """Entries other consumers left pending for longer than ``min_idle_ms``."""
        entries: list[Entry] = []
        cursor = "0-0"
        with translated(f"XAUTOCLAIM {stream}"):
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
                    return entries

    async def trim(self, stream: str, now_s: float, retention_s: float) -> int:
        """Drop entries older than the retention that the group is done with: never one
        still pending, nor one not yet read. Returns how many were dropped."""
        keep_from = (max(0, int((now_s - retention_s) * 1000)), 0)
        with translated(f"XTRIM {stream}"):
            groups: Any = await self._redis.xinfo_groups(stream)
            ours = [g for g in groups if _text(g[b"name"]) == self._group]
            if not ours:
                return 0
            last_read = _stream_id(_text(ours[0][b"last-delivered-id"]))
            keep_from = min(keep_from, (last_read[0], last_read[1] + 1))
            pending: Any = await self._redis.xpending(stream, self._group)
            if pending.pending:
                keep_from = min(keep_from, _stream_id(_text(pending.minimum_identifier)))
            threshold: Any = f"{keep_from[0]}-{keep_from[1]}"
            return int(await self._redis.xtrim(stream, PureToken.MINID, threshold))

    async def claim_event_ids(self, claims: Sequence[tuple[str, str]]) -> list[str | None]:
        """Take each (event id, claim) unless taken: the claim already held, or None where
        this call took it. Ids stay taken for ``stream.retention``."""
        if not claims:
            return []
        with translated("SET event ids"):
            async with self._redis.pipeline(transaction=False) as pipe:
                for event_id, claim in claims:
                    pipe.set(event_id_key(self._prefix, event_id), claim,
                             condition=PureToken.NX, get=True, ex=self._retention_s)  # fmt: skip
            replies = list(pipe.results or ())
        return [None if reply is None else _text(reply) for reply in replies]

    async def recorded(self, stream: str, event_ids: Sequence[str]) -> dict[str, set[str]]:
        """For each event, the endpoints whose delivery of it was already recorded."""
        if not event_ids:
            return {}
        keys = self.keys(stream)
        with translated(f"HKEYS records of {stream}"):
            async with self._redis.pipeline(transaction=False) as pipe:
                for event_id in event_ids:
                    pipe.hkeys(keys.event(event_id))
            replies = list(pipe.results or ())
        return {
            event_id: {name for name in map(_text, fields) if "#" not in name}
            for event_id, fields in zip(event_ids, replies, strict=True)
        }

    async def event_record(
        self, event_id: str
    ) -> tuple[str, dict[str, dict[str, Any]], list[dict[str, Any]]] | None:
        """(partition stream, states by endpoint, attempts in order) of an event, or None."""
        for stream in self.streams:
            with translated(f"HGETALL record of {event_id}"):
                raw = await self._redis.hgetall(self.keys(stream).event(event_id))
            if not raw:
                continue
            states: dict[str, dict[str, Any]] = {}
            attempts: list[tuple[str, int, dict[str, Any]]] = []
            for name, value in raw.items():
                field = _text(name)
                endpoint_id, _, number = field.partition("#")
                if number:
                    attempts.append((endpoint_id, int(number), json.loads(value)))
                else:
                    states[field] = json.loads(value)
            attempts.sort(key=lambda item: (item[2].get("at", ""), item[0], item[1]))
            return stream, states, [attempt for _, _, attempt in attempts]
        return None

    async def entry(self, stream: str, entry_id: str) -> Mapping[bytes, bytes] | None:
        with translated(f"XRANGE {stream}"):
            items = await self._redis.xrange(stream, entry_id, entry_id)
        return _fields(items[0]) if items else None

    async def apply(self, writes: Sequence[Write]) -> None:
        """Make ``writes`` durable, in order (see the module docstring)."""
        dead: list[AddDeadLetter | RemoveDeadLetter] = []
        by_stream: dict[str, list[PartitionWrite]] = {}
        for write in writes:
            if isinstance(write, AddDeadLetter | RemoveDeadLetter):
                dead.append(write)
            else:
                by_stream.setdefault(_stream_of(write), []).append(write)
        if dead:
            await self._apply_dead(dead)
        if not by_stream:
            return
        head: list[str | int] = [self._ttl_s, self._group, self._history_entries, MINUTE_TTL_S]
        calls = []
        for stream, part in by_stream.items():  # one slot each: one script call each
            keys, arguments = encode_record(self.keys(stream), part)
            calls.append((keys, [*head, *arguments]))
        with translated("record.lua"):
            await self._wire.evalsha_each(self._record, calls)

    async def _apply_dead(self, dead: Sequence[AddDeadLetter | RemoveDeadLetter]) -> None:
        """Dead letters in, redriven ones out; then ``delivery.dead_lettered`` for each
        delivery's new letter, named by the letter's id (known only once it is written)."""
        with translated("XADD dead letters"):
            async with self._redis.pipeline(transaction=False) as pipe:
                for write in dead:
                    if isinstance(write, AddDeadLetter):
                        pipe.xadd(self.dead_stream, dict(write.fields))
                    else:
                        pipe.xdel(self.dead_stream, [write.dead_id])
            replies = list(pipe.results or ())
        notices = [
            ops.dead_lettered(dict(write.fields), _text(reply))
            for write, reply in zip(dead, replies, strict=True)
            if isinstance(write, AddDeadLetter)
        ]
        if any(notices):
            with translated(f"XADD {self.ops_stream}"):
                async with self._redis.pipeline(transaction=False) as pipe:
                    for notice in notices:
                        if notice is not None:
                            pipe.xadd(self.ops_stream, dict(notice))

    async def claim_due(
        self, stream: str, now_ms: int, lease_ms: int, limit: int
    ) -> list[DueRetry]:
        keys = self.keys(stream)
        with translated(f"claim_due.lua {stream}"):
            flat = cast(
                "list[bytes]",
                await self._wire.evalsha(
                    self._claim_due, [keys.retry, keys.payloads], [now_ms, lease_ms, limit]
                ),
            )
        items = [_text(x) for x in flat]
        return [DueRetry(stream, items[i], items[i + 1]) for i in range(0, len(items), 2)]

    async def next_due_ms(self) -> float | None:
        """The earliest due time over every partition's retry set."""
        earliest: float | None = None
        with translated("ZRANGE retry sets"):
            for stream in self.streams:
                first = await self._redis.zrange(self.keys(stream).retry, 0, 0, withscores=True)
                if first:
                    due = float(first[0][1])
                    earliest = due if earliest is None else min(earliest, due)
        return earliest

    async def deferred(self, vendor: str) -> int:
        """How many of the vendor's deliveries wait deferred now, over every partition."""
        total = 0
        with translated(f"ZINTERCARD deferred of {vendor}"):
            for stream in self.streams:
                keys = self.keys(stream)
                total += int(await self._redis.zintercard([keys.retry, keys.deferred(vendor)]))
        return total

    async def held_of(
        self, stream: str, endpoint_id: str | None = None, page: int = 500
    ) -> AsyncIterator[list[Held]]:
        """The partition's held deliveries (of one endpoint, if given), a page at a time."""
        keys = self.keys(stream)
        match = "*" if endpoint_id is None else f"{endpoint_id}:*"
        cursor = 0
        while True:
            with translated(f"HSCAN held of {stream}"):
                cursor, found = await self._redis.hscan(
                    keys.held_payloads, cursor, match=match, count=page
                )
                members = [_text(member) for member in found]
                scores = await self._redis.zmscore(keys.held, members) if members else []
            yield [
                Held(stream, member, _text(found[member.encode()]), score or 0.0)
                for member, score in zip(members, scores, strict=True)
            ]
            if cursor == 0:
                return

    async def held_before(self, stream: str, before_ms: int, limit: int) -> list[Held]:
        """Up to ``limit`` deliveries held since before ``before_ms``, oldest first."""
        keys = self.keys(stream)
        with translated(f"ZRANGE held of {stream}"):
            first = await self._redis.zrange(keys.held, 0, before_ms, sortby=PureToken.BYSCORE,
                                             offset=0, count=limit, withscores=True)  # fmt: skip
            if not first:
                return []
            members = [_text(cast("bytes", member)) for member, _ in first]
            payloads = await self._redis.hmget(keys.held_payloads, members)
        return [
            Held(stream, member, "" if payload is None else _text(payload), float(score))
            for member, (_, score), payload in zip(members, first, payloads, strict=True)
        ]

    async def history(
        self, stream: str, before: str, count: int
    ) -> list[tuple[str, dict[str, str]]]:
        """Up to ``count`` history entries of the partition older than ``before`` (an
        entry id, or "+" for the newest), newest first."""
        if before == "0-0":  # nothing is older than the first possible id
            return []
        end = before if before == "+" else f"({before}"
        with translated(f"XREVRANGE history of {stream}"):
            items = await self._redis.xrevrange(self.keys(stream).history, end, "-", count=count)
        return [(_text(item.identifier), text_fields(item)) for item in items]

    async def minutes(self, first_minute: int, last_minute: int) -> dict[int, list[float]]:
        """Epoch minute -> [delivered, failed, latency ms summed], over every partition."""
        wanted = range(first_minute, last_minute + 1)
        totals: dict[int, list[float]] = {minute: [0, 0, 0.0] for minute in wanted}
        for stream in self.streams:
            keys = self.keys(stream)
            with translated(f"HGETALL minutes of {stream}"):
                async with self._redis.pipeline(transaction=False) as pipe:
                    for minute in wanted:
                        pipe.hmget(keys.minute(minute), ["delivered", "failed", "latency_ms"])
                replies = list(pipe.results or ())
            for minute, reply in zip(wanted, replies, strict=True):
                figures = totals[minute]
                for position, value in enumerate(reply):
                    if value is not None:
                        figures[position] += float(_text(value))
        return totals

    async def event_id_holder(self, event_id: str) -> tuple[str, str] | None:
        """(stream, entry id) of the entry that took an explicit event id, while it holds it."""
        with translated("GET event id"):
            claim = await self._redis.get(event_id_key(self._prefix, event_id))
        if claim is None:
            return None
        stream, _, rest = _text(claim).partition("\n")
        entry_id = rest.partition("\n")[0]
        return (stream, entry_id) if stream and entry_id else None

    async def dead_letters(self, count: int, start: str = "-") -> list[tuple[str, dict[str, str]]]:
        """(id, fields) of up to ``count`` dead letters from ``start``, oldest first."""
        with translated(f"XRANGE {self.dead_stream}"):
            items = await self._redis.xrange(self.dead_stream, start, "+", count=count)
        return [(_text(item.identifier), text_fields(item)) for item in items]

    async def dead_letters_newest(
        self, count: int, end: str = "+"
    ) -> list[tuple[str, dict[str, str]]]:
        """(id, fields) of up to ``count`` dead letters from ``end`` (inclusive) down,
        newest first."""
        with translated(f"XREVRANGE {self.dead_stream}"):
            items = await self._redis.xrevrange(self.dead_stream, end, "-", count=count)
        return [(_text(item.identifier), text_fields(item)) for item in items]

    async def dead_letters_by_id(
        self, dead_ids: Sequence[str]
    ) -> list[tuple[str, dict[str, str] | None]]:
        """Each dead letter asked for, None where there is none by that id."""
        if not dead_ids:
            return []
        with translated(f"XRANGE {self.dead_stream}"):
            async with self._redis.pipeline(transaction=False) as pipe:
                for dead_id in dead_ids:
                    pipe.xrange(self.dead_stream, dead_id, dead_id)
            replies: list[Any] = list(pipe.results or ())
        return [
            (dead_id, text_fields(found[0]) if found else None)
            for dead_id, found in zip(dead_ids, replies, strict=True)
        ]

    async def delete_dead_letters(self, dead_ids: Sequence[str]) -> int:
        """Delete these dead letters; how many there were."""
        if not dead_ids:
            return 0
        with translated(f"XDEL {self.dead_stream}"):
            return int(await self._redis.xdel(self.dead_stream, list(dead_ids)))

    async def purge_dead_letters(self) -> int:
        """Delete every dead letter; how many there were."""
        with translated(f"XTRIM {self.dead_stream}"):
            return int(await self._redis.xtrim(self.dead_stream, PureToken.MAXLEN, 0))

    async def partition_stats(self) -> list[PartitionStats]:
        """What waits in each partition: the group's lag and pending entries (XINFO
        GROUPS), the retry set, held and deferred deliveries. Each partition's reads
        go in one pipeline (its keys share a slot)."""
        stats = []
        for stream in self.streams:
            keys = self.keys(stream)
            with translated(f"XINFO GROUPS {stream}"):
                try:
                    groups: Any = await self._redis.xinfo_groups(stream)
                except coredis.exceptions.ResponseError:  # no stream yet: nothing read
                    groups = []
            ours = [g for g in groups if _text(g[b"name"]) == self._group]
            with translated(f"ZCARD backlog of {stream}"):
                async with self._redis.pipeline(transaction=False) as pipe:
                    pipe.zcard(keys.retry)
                    pipe.zcard(keys.held)
                    pipe.zintercard([keys.retry, keys.deferred_all])
                retry, held, deferred = (int(n) for n in pipe.results or ())
            lag = ours[0].get(b"lag") if ours else None
            stats.append(
                PartitionStats(
                    stream=stream,
                    group_exists=bool(ours),
                    lag=None if lag is None else int(lag),
                    pending=int(ours[0][b"pending"]) if ours else 0,
                    retry_backlog=retry,
                    held=held,
                    deferred=deferred,
                )
            )
        return stats


def store_for(client: RedisClient, settings: Settings) -> Store:
    """The store as configured (daemon, CLI and admin API alike)."""
    return Store(client, settings.stream, settings.redis.key_prefix,
                 settings.delivery.record_ttl_s,
                 history_entries=settings.delivery.history_entries)  # fmt: skip


def _stream_of(write: PartitionWrite) -> str:
    if isinstance(write, ClearRetry | ReleaseHeld):
        return write.stream
    if isinstance(write, AckEntry):
        return write.entry.stream
    return write.delivery.stream
