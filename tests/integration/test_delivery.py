"""End-to-end delivery: real Redis, real receiver, the daemon in this trio run."""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import time
from collections.abc import Callable

import trio
import trio.testing
from conftest import AsyncRedis, entries, pending, publish, running_daemon, until
from webhook_receiver import Receiver, Reply

import webhookd
from webhookd.config import Settings
from webhookd.connection import open_client
from webhookd.deadletters import redrive_letters
from webhookd.keyspace import PartitionKeys
from webhookd.publisher import Publisher
from webhookd.store import Store
from webhookd.verify import verify

ORDER = {
    "order_id": "ord_1001",
    "customer": {"id": "cus_7", "email": "ada@example.com"},
    "items": [{"sku": "SKU-1", "quantity": 2, "unit_price": "19.90"}],
    "total": "39.80",
}


def publisher(settings: Settings) -> Publisher:
    assert settings.redis.url
    return Publisher.from_url(settings.redis.url, stream=settings.stream.name)


def key_of(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix("whsec_"))


async def test_fan_out_signs_each_delivery_for_its_endpoint(
    make_settings: Callable[..., Settings], receiver: Receiver
) -> None:
    settings = make_settings()
    async with running_daemon(settings) as daemon:
        now = time.time()
        every = await daemon.registry.add("v_1", receiver.url("/every"), "*", now_s=now)
        orders = await daemon.registry.add("v_1", receiver.url("/orders"), "order.*", now_s=now)
        stock = await daemon.registry.add(
            "v_1", receiver.url("/stock"), "inventory.low_stock", now_s=now
        )
        other = await daemon.registry.add("v_2", receiver.url("/other"), "*", now_s=now)
        event_id = await publish(publisher(settings), "order.created", vendor="v_1", data=ORDER)
        with trio.fail_after(10):
            await receiver.wait_for(1, "/every")
            await receiver.wait_for(1, "/orders")
    assert receiver.to("/stock") == [] and receiver.to("/other") == []
    for path, endpoint in (("/every", every), ("/orders", orders)):
        [request] = receiver.to(path)
        headers, body = request.headers, request.body
        payload = json.loads(body)
        assert payload["event"] == "order.created"
        assert payload["event_id"] == event_id
        assert payload["data"] == ORDER
        assert payload["timestamp"].endswith("Z")
        assert headers["content-type"] == "application/json"
        assert headers["x-event-type"] == "order.created"
        assert headers["x-event-id"] == event_id
        assert headers["user-agent"].startswith("webhookd/")
        assert abs(int(headers["x-timestamp"]) - time.time()) < 60
        key = key_of(endpoint.secret)
        signed = headers["x-timestamp"].encode() + b"." + body
        assert headers["x-signature"] == "sha256=" + hmac.new(key, signed, "sha256").hexdigest()
        assert headers["webhook-id"] == event_id
        assert headers["webhook-timestamp"] == headers["x-timestamp"]
        std_signed = f"{event_id}.{headers['webhook-timestamp']}.".encode() + body
        expected = base64.b64encode(hmac.new(key, std_signed, hashlib.sha256).digest()).decode()
        assert headers["webhook-signature"] == "v1," + expected
        assert verify(body, headers, endpoint.secret)["event_id"] == event_id
    assert stock.id != other.id


async def test_retries_follow_the_schedule_then_dead_letter(
    make_settings: Callable[..., Settings],
    receiver: Receiver,
    aredis: AsyncRedis,
    mock_clock: trio.testing.MockClock,
) -> None:
    settings = make_settings()
    receiver.default = Reply(status=503, body=b"down for maintenance")
    async with running_daemon(settings) as daemon:
        endpoint = await daemon.registry.add("v_1", receiver.url(), now_s=time.time())
        event_id = await publish(publisher(settings), "order.created", vendor="v_1", data=ORDER)
        with trio.fail_after(60):
            attempts = await receiver.wait_for(6)
            await until(lambda: aredis.xlen(settings.stream.dead))
    gaps = [later.at - earlier.at for earlier, later in itertools.pairwise(attempts)]
    for gap, base in zip(gaps, (1, 2, 4, 8, 16), strict=True):
        assert base <= gap <= base * 1.1 + 0.1, gaps
    assert len({a.headers["x-event-id"] for a in attempts}) == 1
    [(_, dead)] = await entries(aredis, settings.stream.dead)
    assert dead["event_id"] == event_id
    assert dead["endpoint_id"] == endpoint.id
    assert dead["attempts"] == "6"
    assert dead["last_status"] == "503"
    assert dead["last_error"] == "HTTP 503"
    assert await pending(aredis, settings.stream.name, settings.stream.group) == 0


async def test_retry_after_is_honoured_when_longer(
    make_settings: Callable[..., Settings],
    receiver: Receiver,
    mock_clock: trio.testing.MockClock,
) -> None:
    settings = make_settings(retry={"schedule": [1, 1], "jitter": 0})
    receiver.script("/hook", Reply(status=429, headers=(("Retry-After", "7"),)))
    async with running_daemon(settings) as daemon:
        await daemon.registry.add("v_1", receiver.url(), now_s=time.time())
        await publish(publisher(settings), "order.created", vendor="v_1", data=ORDER)
        with trio.fail_after(30):
            first, second = await receiver.wait_for(2)
    assert 7 <= second.at - first.at <= 7.1


async def test_gone_disables_the_endpoint_and_stops_retrying(
    make_settings: Callable[..., Settings],
    receiver: Receiver,
    aredis: AsyncRedis,
    mock_clock: trio.testing.MockClock,
) -> None:
    settings = make_settings()
    receiver.default = Reply(status=410)
    async with running_daemon(settings) as daemon:
        endpoint = await daemon.registry.add("v_1", receiver.url(), now_s=time.time())
        event_id = await publish(publisher(settings), "order.created", vendor="v_1", data=ORDER)
        with trio.fail_after(10):
            await receiver.wait_for(1)
            await until(lambda: aredis.xlen(settings.stream.dead))
        await trio.sleep(40)  # mock time: the whole retry schedule passes
        stored = await daemon.registry.get(endpoint.id)
        await publish(publisher(settings), "order.updated", vendor="v_1", data=ORDER)
        await trio.sleep(5)
    assert len(receiver.requests) == 1
    assert not stored.enabled
    [(_, dead)] = await entries(aredis, settings.stream.dead)
    assert (dead["event_id"], dead["last_status"]) == (event_id, "410")
    assert await pending(aredis, settings.stream.name, settings.stream.group) == 0


async def test_malformed_entries_are_dead_lettered_and_acked(
    make_settings: Callable[..., Settings], receiver: Receiver, aredis: AsyncRedis
) -> None:
    settings = make_settings()
    stream = settings.stream.name
    async with running_daemon(settings) as daemon:
        await daemon.registry.add("v_1", receiver.url(), now_s=time.time())
        await aredis.xadd(stream, {"vendor": "v_1", "data": "{}"})
        await aredis.xadd(stream, {"type": "order.created", "vendor": "v_1", "data": "{nope"})
        await aredis.xadd(stream, {"type": "order.created", "vendor": "v_1", "data": "[1, 2]"})
        await aredis.xadd(stream, {"type": "order.created", "vendor": "v_1"})
        good = await publish(publisher(settings), "order.created", vendor="v_1", data=ORDER)
        with trio.fail_after(10):
            [request] = await receiver.wait_for(1)
            await until(lambda: pending(aredis, stream, settings.stream.group), equals=0)
    assert request.headers["x-event-id"] == good
    reasons = [fields["reason"] for _, fields in await entries(aredis, settings.stream.dead)]
    assert reasons[0] == "missing field 'type'"
    assert reasons[1].startswith("data is not valid JSON")
    assert reasons[2] == "data must be a JSON object, got list"
    assert reasons[3] == "missing field 'data'"


async def test_a_scheduled_retry_survives_a_restart(
    make_settings: Callable[..., Settings],
    receiver: Receiver,
    aredis: AsyncRedis,
) -> None:
    settings = make_settings(retry={"schedule": [0.5], "jitter": 0})
    keys = PartitionKeys(settings.stream.name)
    receiver.script("/hook", Reply(status=500))
    async with running_daemon(settings) as daemon:
        endpoint = await daemon.registry.add("v_1", receiver.url(), now_s=time.time())
        event_id = await publish(publisher(settings), "order.created", vendor="v_1", data=ORDER)
        with trio.fail_after(10):
            await receiver.wait_for(1)
            await until(lambda: aredis.zcard(keys.retry))
        daemon.abort()
    assert len(receiver.requests) == 1
    async with running_daemon(settings):
        with trio.fail_after(10):
            _, second = await receiver.wait_for(2)
            await until(lambda: aredis.zcard(keys.retry), equals=0)
    assert second.headers["x-event-id"] == event_id
    state = json.loads(await aredis.hget(keys.event(event_id), endpoint.id))
    assert (state["state"], state["attempts"]) == ("delivered", 2)


async def test_a_dead_consumers_entries_are_reclaimed_without_resending_recorded_ones(
    make_settings: Callable[..., Settings],
    receiver: Receiver,
    aredis: AsyncRedis,
) -> None:
    settings = make_settings(stream={"reclaim_idle": 1.5})
    stream, group = settings.stream.name, settings.stream.group
    async with running_daemon(settings) as daemon:
        done = await daemon.registry.add("v_1", receiver.url("/done"), now_s=time.time())
        await daemon.registry.add("v_1", receiver.url("/pending"), now_s=time.time())
        daemon.stop()
    event_id = await publish(publisher(settings), "order.created", vendor="v_1", data=ORDER)
    # A consumer reads the entry, delivers to one endpoint, records it, and dies.
    await aredis.xreadgroup(group, "crashed-consumer", streams={stream: ">"})
    record = json.dumps({"endpoint_id": done.id, "state": "delivered", "attempts": 1})
    await aredis.hset(PartitionKeys(stream).event(event_id), {done.id: record})
    async with running_daemon(settings):
        with trio.fail_after(10):
            [request] = await receiver.wait_for(1, "/pending")
            await until(lambda: pending(aredis, stream, group), equals=0)
    assert request.headers["x-event-id"] == event_id
    assert receiver.to("/done") == []


async def test_dead_letters_can_be_redriven(
    make_settings: Callable[..., Settings], receiver: Receiver, aredis: AsyncRedis
) -> None:
    settings = make_settings(retry={"schedule": []})
    receiver.script("/hook", Reply(status=500))
    await aredis.xadd(settings.stream.dead, {"reason": "missing field 'type'", "entry": "{}"})
    async with running_daemon(settings) as daemon:
        await daemon.registry.add("v_1", receiver.url(), now_s=time.time())
        event_id = await publish(publisher(settings), "order.created", vendor="v_1", data=ORDER)
        with trio.fail_after(10):
            await receiver.wait_for(1)
            await until(lambda: aredis.xlen(settings.stream.dead), equals=2)
            redriven = await redrive_letters(daemon.store, time.time())
            assert (redriven.redriven, redriven.skipped) == (1, 1)
            _, again = await receiver.wait_for(2)
    assert again.headers["x-event-id"] == event_id
    assert json.loads(again.body)["data"] == ORDER
    [(_, left)] = await entries(aredis, settings.stream.dead)
    assert left["reason"] == "missing field 'type'"


async def test_a_slow_endpoint_cannot_starve_the_others(
    make_settings: Callable[..., Settings], receiver: Receiver
) -> None:
    settings = make_settings(
        delivery={"endpoint_concurrency": 1, "max_in_flight": 8, "timeout": 5.0},
        stream={"reclaim_idle": 10.0},
    )
    receiver.script("/slow", *[Reply(stall_s=0.5)] * 20)
    async with running_daemon(settings) as daemon:
        await daemon.registry.add("v_slow", receiver.url("/slow"), now_s=time.time())
        await daemon.registry.add("v_fast", receiver.url("/fast"), now_s=time.time())
        for n in range(20):
            await publish(publisher(settings), "order.created", vendor="v_slow", data={"n": n})
        fast_id = await publish(
            publisher(settings), "order.created", vendor="v_fast", data={"n": 0}
        )
        with trio.fail_after(3):  # far less than 20 slow deliveries one at a time would take
            [fast] = await receiver.wait_for(1, "/fast")
        assert fast.headers["x-event-id"] == fast_id
        with trio.fail_after(30):
            slow = await receiver.wait_for(20, "/slow")
    assert sorted(json.loads(r.body)["data"]["n"] for r in slow) == list(range(20))


async def test_partitioned_streams_are_all_read(
    make_settings: Callable[..., Settings], receiver: Receiver, aredis: AsyncRedis
) -> None:
    settings = make_settings(stream={"partitions": 3})
    assert settings.redis.url
    publisher = webhookd.Publisher.from_url(  # the contract's top-level name
        settings.redis.url, stream=settings.stream.name, partitions=3
    )
    vendors = [f"v_{n}" for n in range(6)]
    async with running_daemon(settings) as daemon:
        for vendor in vendors:
            await daemon.registry.add(vendor, receiver.url(f"/{vendor}"), now_s=time.time())
        ids = {await publish(publisher, "order.created", vendor=v, data={"v": v}) for v in vendors}
        with trio.fail_after(10):
            received = await receiver.wait_for(len(vendors))
    assert {r.headers["x-event-id"] for r in received} == ids
    used = {publisher.stream_for(v) for v in vendors}
    assert len(used) > 1 and used <= {f"{settings.stream.name}:{n}" for n in range(3)}
    for stream in used:
        assert await pending(aredis, stream, settings.stream.group) == 0


async def test_the_stream_is_trimmed_but_never_past_pending_or_unread_entries(
    make_settings: Callable[..., Settings], receiver: Receiver, aredis: AsyncRedis
) -> None:
    settings = make_settings(stream={"retention": 60.0})
    stream, group = settings.stream.name, settings.stream.group
    async with running_daemon(settings) as daemon:
        await daemon.registry.add("v_1", receiver.url(), now_s=time.time())
        for n in range(3):
            await publish(publisher(settings), "order.created", vendor="v_1", data={"n": n})
        with trio.fail_after(10):
            await receiver.wait_for(3)
            await until(lambda: pending(aredis, stream, group), equals=0)
        daemon.stop()
    # A consumer that dies holding an entry, and an entry nobody has read yet.
    pending_id = await publish(publisher(settings), "order.created", vendor="v_1", data={"n": 3})
    await aredis.xreadgroup(group, "crashed-consumer", streams={stream: ">"})
    unread_id = await publish(publisher(settings), "order.created", vendor="v_1", data={"n": 4})
    assert settings.redis.url
    async with open_client(settings.redis.url) as client:
        store = Store(client, settings.stream, settings.redis.key_prefix, 60.0)
        stream = settings.stream.name
        assert await store.trim(stream, time.time(), 60.0) == 0  # all younger than 60 s
        assert await store.trim(stream, time.time() + 3600, 60.0) == 3
    left = [f"evt_{entry_id}" for entry_id, _ in await entries(aredis, stream)]
    assert left == [pending_id, unread_id]


async def test_a_410_for_an_endpoint_removed_meanwhile_does_not_stop_the_daemon(
    make_settings: Callable[..., Settings], receiver: Receiver, aredis: AsyncRedis
) -> None:
    settings = make_settings()
    receiver.script("/gone", Reply(status=410, stall_s=0.3))
    async with running_daemon(settings) as daemon:
        gone = await daemon.registry.add("v_1", receiver.url("/gone"), now_s=time.time())
        await daemon.registry.add("v_2", receiver.url("/ok"), now_s=time.time())
        await publish(publisher(settings), "order.created", vendor="v_1", data={"n": 1})
        with trio.fail_after(10):
            await receiver.wait_for(1, "/gone")
            await daemon.registry.remove(gone.id)  # while the 410 is on its way
            await until(lambda: aredis.xlen(settings.stream.dead), equals=1)
            later = await publish(publisher(settings), "order.created", vendor="v_2", data={"n": 2})
            [after] = await receiver.wait_for(1, "/ok")
    assert after.headers["x-event-id"] == later
    [(_, dead)] = await entries(aredis, settings.stream.dead)
    assert dead["last_status"] == "410"
