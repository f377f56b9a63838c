"""The recorder against a real Redis: order, and a unit Redis refuses."""

from __future__ import annotations

from collections.abc import Callable

import trio
from conftest import AsyncRedis, entries, pending, until

from webhookd.config import Settings
from webhookd.connection import open_client
from webhookd.events import parse_entry
from webhookd.health import Readiness
from webhookd.keyspace import PartitionKeys
from webhookd.model import AttemptRecord, Delivery, EntryRef, outcome_writes
from webhookd.recorder import Recorder
from webhookd.retry import AttemptResult, Delivered, RetryAt
from webhookd.store import Store


def first_attempt(entry: EntryRef, status: int) -> tuple[Delivery, AttemptRecord]:
    fields = {b"type": b"order.created", b"vendor": b"v_1", b"data": b"{}"}
    event = parse_entry(entry.entry_id, fields, 1_700_000_000.0)
    delivery = Delivery(event, "ep_1", entry, acks=entry)
    return delivery, AttemptRecord(1, 1_700_000_000.0, 0.01, AttemptResult(status, None), "")


async def test_a_unit_redis_refuses_is_dead_lettered_and_the_rest_lands(
    make_settings: Callable[..., Settings], aredis: AsyncRedis
) -> None:
    settings = make_settings()
    stream, group = settings.stream.name, settings.stream.group
    await aredis.xgroup_create(stream, group, "0", mkstream=True)
    good_id = await aredis.xadd(stream, {"type": "order.created", "vendor": "v_1", "data": "{}"})
    bad_id = await aredis.xadd(stream, {"type": "order.created", "vendor": "v_1", "data": "{}"})
    await aredis.xreadgroup(group, "c", streams={stream: ">"})
    keys = PartitionKeys(stream)
    await aredis.set(keys.retry, "not a sorted set")  # every ZADD to it is refused
    assert settings.redis.url
    readiness = Readiness()
    async with open_client(settings.redis.url) as client, trio.open_nursery() as nursery:
        store = Store(client, settings.stream, settings.redis.key_prefix, 60.0)
        recorder = Recorder(store, readiness)
        nursery.start_soon(recorder.run)
        good, good_attempt = first_attempt(EntryRef(stream, good_id), 200)
        bad, bad_attempt = first_attempt(EntryRef(stream, bad_id), 500)
        for delivery in (good, bad):
            recorder.expect(delivery.origin, 1)
        recorder.settled(bad, outcome_writes(bad, RetryAt(1_700_000_001.0, 1.0), bad_attempt))
        recorder.settled(good, outcome_writes(good, Delivered(200), good_attempt))
        with trio.fail_after(10):
            await until(lambda: pending(aredis, stream, group), equals=0)
        recorder.close()
    assert await aredis.hget(keys.event(good.event.id), "ep_1") is not None
    [(_, dead)] = await entries(aredis, settings.stream.dead)
    assert dead["event_id"] == bad.event.id and dead["endpoint_id"] == "ep_1"
    assert dead["reason"].startswith("its outcome could not be recorded: ")
    assert "wrong kind of value" in dead["reason"]
    assert readiness.problems == {}
