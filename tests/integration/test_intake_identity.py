"""Event identity and recovery at intake: default ids unique across partitions, ids as
idempotency keys, a consumer group recreated when Redis comes back without it."""

from __future__ import annotations

import functools
import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import coredis
import coredis.exceptions
import httpx
import trio
from conftest import AsyncRedis, entries, pending, publish, running_daemon, until
from webhook_receiver import Receiver

from webhookd.config import Settings
from webhookd.embedded import find_redis_server, free_port
from webhookd.metrics import EVENTS_DUPLICATE
from webhookd.publisher import Publisher

DATA = json.dumps({"order_id": "ord_1"})


async def test_entries_with_one_entry_id_in_two_partitions_are_two_events(
    make_settings: Callable[..., Settings], receiver: Receiver, aredis: AsyncRedis
) -> None:
    settings = make_settings(stream={"partitions": 2})
    name = settings.stream.name
    async with running_daemon(settings) as daemon:
        await daemon.registry.add("v_1", receiver.url(), now_s=time.time())
        for partition in (0, 1):  # the same millisecond and sequence in both partitions
            await aredis.xadd(f"{name}:{partition}", {"type": "order.created", "vendor": "v_1",
                              "data": DATA}, identifier="1700000000000-1")  # fmt: skip
        with trio.fail_after(10):
            received = await receiver.wait_for(2)
            for stream in (f"{name}:0", f"{name}:1"):
                await until(functools.partial(pending, aredis, stream), equals=0)
    ids = sorted(r.headers["x-event-id"] for r in received)
    assert ids == ["evt_p0_1700000000000-1", "evt_p1_1700000000000-1"]
    assert await aredis.xlen(settings.stream.dead) == 0


async def test_publisher_returns_the_partitioned_default_id(
    make_settings: Callable[..., Settings], receiver: Receiver
) -> None:
    settings = make_settings(stream={"partitions": 3})
    assert settings.redis.url
    publisher = Publisher.from_url(settings.redis.url, stream=settings.stream.name, partitions=3)
    async with running_daemon(settings) as daemon:
        await daemon.registry.add("v_9", receiver.url(), now_s=time.time())
        event_id = await publish(publisher, "order.created", vendor="v_9", data={"n": 1})
        with trio.fail_after(10):
            [request] = await receiver.wait_for(1)
    assert event_id.startswith(f"evt_p{publisher.partition_for('v_9')}_")
    assert request.headers["x-event-id"] == event_id


async def test_an_id_taken_by_the_same_event_is_acked_as_a_duplicate(
    make_settings: Callable[..., Settings], receiver: Receiver, aredis: AsyncRedis
) -> None:
    settings = make_settings()
    stream = settings.stream.name
    before = EVENTS_DUPLICATE._value.get()
    async with running_daemon(settings) as daemon:
        await daemon.registry.add("v_1", receiver.url(), now_s=time.time())
        first = {"type": "order.created", "vendor": "v_1", "data": '{"a": 1, "b": 2}', "id": "o-1"}
        again = {**first, "data": '{"b":2,"a":1}'}  # the same data, spelled differently
        await aredis.xadd(stream, first)
        with trio.fail_after(10):
            await receiver.wait_for(1)
            await aredis.xadd(stream, again)
            await until(lambda: EVENTS_DUPLICATE._value.get() == before + 1)
            await until(lambda: pending(aredis, stream), equals=0)
            await trio.sleep(0.2)  # a second delivery, had there been one, would be sent now
    assert len(receiver.requests) == 1
    assert receiver.requests[0].headers["x-event-id"] == "o-1"
    assert await aredis.xlen(settings.stream.dead) == 0


async def test_an_id_taken_by_a_different_event_is_dead_lettered_with_the_reason(
    make_settings: Callable[..., Settings], receiver: Receiver, aredis: AsyncRedis
) -> None:
    settings = make_settings()
    stream = settings.stream.name
    async with running_daemon(settings) as daemon:
        await daemon.registry.add("v_1", receiver.url(), now_s=time.time())
        first_id = await aredis.xadd(stream, {"type": "order.created", "vendor": "v_1",
                                              "data": DATA, "id": "o-2"})  # fmt: skip
        await aredis.xadd(stream, {"type": "order.created", "vendor": "v_1",
                                   "data": '{"order_id": "ord_2"}', "id": "o-2"})  # fmt: skip
        with trio.fail_after(10):
            await until(lambda: aredis.xlen(settings.stream.dead), equals=1)
            await until(lambda: pending(aredis, stream), equals=0)
    [(_, dead)] = await entries(aredis, settings.stream.dead)
    assert dead["event_id"] == "o-2"
    assert f"already taken by entry {first_id}" in dead["reason"]
    assert "different type, vendor or data" in dead["reason"]
    assert [json.loads(r.body)["data"] for r in receiver.requests] == [{"order_id": "ord_1"}]


def start_redis(directory: Path, port: int) -> subprocess.Popen[bytes]:
    """A throwaway redis-server without persistence: a restart comes back empty."""
    return subprocess.Popen(
        [find_redis_server(), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(directory)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


async def readyz_is(port: int, status: int) -> bool:
    async with httpx.AsyncClient() as client:
        return (await client.get(f"http://127.0.0.1:{port}/readyz")).status_code == status


async def test_redis_back_without_the_group_is_recovered_and_readyz_tells(
    make_settings: Callable[..., Settings], receiver: Receiver, tmp_path: Path
) -> None:
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    server = start_redis(tmp_path, port)
    try:
        settings = make_settings(redis={"url": url})
        publisher = Publisher.from_url(url, stream=settings.stream.name)
        with trio.fail_after(30):
            await until(lambda: _pings(url))
            async with running_daemon(settings) as daemon:
                await daemon.registry.add("v_1", receiver.url(), now_s=time.time())
                await publish(publisher, "order.created", vendor="v_1", data={"n": 1})
                await receiver.wait_for(1)
                assert await readyz_is(daemon.admin_port, 200)
                server.kill()
                server.wait()
                await until(lambda: readyz_is(daemon.admin_port, 503))
                server = start_redis(tmp_path, port)  # empty: no stream, no group, no endpoint
                await until(lambda: _pings(url))
                await daemon.registry.add("v_1", receiver.url("/after"), now_s=time.time())
                await until(lambda: readyz_is(daemon.admin_port, 200))
                event_id = await publish(publisher, "order.created", vendor="v_1", data={"n": 2})
                [request] = await receiver.wait_for(1, "/after")
        assert request.headers["x-event-id"] == event_id
    finally:
        server.kill()
        server.wait()


async def _pings(url: str) -> bool:
    client: AsyncRedis = coredis.Redis.from_url(url, decode_responses=True, connect_timeout=0.2)
    async with client:
        try:
            return bool(await client.ping())
        except (coredis.exceptions.RedisError, OSError):
            return False
