"""Endpoint health, held deliveries and the ops stream, on real Redis with the daemon's
own parts driven by hand (``daemon_parts``): a scripted transport and a clock that moves
only when told, so five days of failures take no time.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import trio
from conftest import daemon_config
from daemon_parts import ManualClock, Process, ScriptedTransport

from webhookd.config import Settings, settings_from_mapping
from webhookd.connection import RedisClient, open_client
from webhookd.endpoints import Endpoint
from webhookd.keyspace import PartitionKeys
from webhookd.publisher import entry_fields
from webhookd.redrive import expire_held, recover, replay
from webhookd.registry import Registry, registry_for
from webhookd.store import Store, store_for

T = TypeVar("T")
START_S = 1_700_000_000.0
DISABLE_AFTER_S = 3600.0


def settings_for(redis_url: str, **health: Any) -> Settings:
    prefix = f"t{uuid.uuid4().hex[:12]}"
    config = daemon_config(redis_url, prefix, health={"disable_after": DISABLE_AFTER_S, **health})
    return settings_from_mapping(config, environ={})


def run(redis_url: str, work: Callable[[RedisClient], Awaitable[T]]) -> T:
    async def main() -> T:
        with trio.fail_after(30):
            async with open_client(redis_url) as client:
                return await work(client)

    return trio.run(main)


async def publish(client: RedisClient, settings: Settings, vendor: str, event_id: str) -> None:
    fields = entry_fields("order.created", vendor, {"id": event_id}, event_id)
    await client.xadd(settings.stream.name, dict(fields))


async def ops_events(client: RedisClient, settings: Settings) -> list[dict[str, Any]]:
    entries = await client.xrange(settings.stream.ops)
    shown = []
    for entry in entries:
        fields = {k.decode(): v.decode() for k, v in (entry.field_values or {}).items()}
        shown.append({**fields, "data": json.loads(fields["data"])})
    return shown


async def set_up(
    client: RedisClient, settings: Settings, clock: ManualClock
) -> tuple[Store, Registry, Endpoint]:
    """The stream's group, and one endpoint of vendor v_1 registered at the start."""
    store = store_for(client, settings)
    await store.ensure_group(settings.stream.name)
    registry = registry_for(client, settings, clock=clock.now_s)
    endpoint = await registry.add("v_1", "http://127.0.0.1:9/in", now_s=START_S)
    return store, registry, endpoint


async def step(
    client: RedisClient,
    settings: Settings,
    clock: ManualClock,
    transport: ScriptedTransport,
    action: str,
    consumer: str = "a",
) -> None:
    """One pass of a daemon's work (``take_new`` or ``claim_due``) by a process of its own."""
    process = Process(client, settings, consumer=consumer, clock=clock, transport=transport)
    await process.work(getattr(process, action))


async def record_of(client: RedisClient, settings: Settings, event_id: str) -> dict[str, Any]:
    raw = await client.hgetall(PartitionKeys(settings.stream.name).event(event_id))
    return {k.decode(): json.loads(v) for k, v in raw.items() if b"#" not in k}


def test_an_endpoint_that_fails_for_disable_after_is_disabled_once_by_one_of_two_daemons(
    redis_url: str,
) -> None:
    settings = settings_for(redis_url)
    clock = ManualClock(START_S)
    transport = ScriptedTransport()

    async def scenario(client: RedisClient) -> None:
        _store, registry, endpoint = await set_up(client, settings, clock)
        transport.answers[endpoint.id] = 500

        await publish(client, settings, "v_1", "evt-1")
        await step(
            client, settings, clock, transport, "take_new", "a"
        )  # the run of failures starts now
        assert (await registry.failing()) == {endpoint.id: START_S}

        clock.now = START_S + DISABLE_AFTER_S / 2
        await publish(client, settings, "v_1", "evt-2")
        await step(
            client, settings, clock, transport, "take_new", "b"
        )  # another daemon: the same run, not a new one
        assert (await registry.failing()) == {endpoint.id: START_S}
        assert (await registry.get(endpoint.id)).enabled

        clock.now = START_S + DISABLE_AFTER_S + 1
        await publish(client, settings, "v_1", "evt-3")
        await step(
            client, settings, clock, transport, "take_new", "c"
        )  # the run survived the restart
        disabled = await registry.get(endpoint.id)
        assert not disabled.enabled
        assert (disabled.disabled_by, disabled.last_status, disabled.last_error) == (
            "failing", 500, "HTTP 500")  # fmt: skip
        assert disabled.disabled_reason == "every attempt failed since 2023-11-14T22:13:20.000Z"
        assert await registry.failing() == {}

        # both daemons now see it fail again as retries fall due: no second announcement
        clock.now += 60
        await step(client, settings, clock, transport, "claim_due", "a")
        await step(client, settings, clock, transport, "claim_due", "b")
        announced = [e for e in await ops_events(client, settings)
                     if e["type"] == "endpoint.disabled"]  # fmt: skip
        assert len(announced) == 1
        data = announced[0]["data"]
        assert announced[0]["vendor"] == "v_1"
        assert (data["endpoint_id"], data["reason"], data["last_status"], data["last_error"]) == (
            endpoint.id, "failing", 500, "HTTP 500")  # fmt: skip
        assert data["since"] == disabled.disabled_at
        # the retries that fell due while it was disabled are held, not attempted
        states = {event_id: (await record_of(client, settings, event_id))[endpoint.id]["state"]
                  for event_id in ("evt-1", "evt-2", "evt-3")}  # fmt: skip
        assert set(states.values()) == {"held"}, states

    run(redis_url, scenario)


def test_a_success_ends_the_run_of_failures(redis_url: str) -> None:
    settings = settings_for(redis_url)
    clock = ManualClock(START_S)
    transport = ScriptedTransport()

    async def scenario(client: RedisClient) -> None:
        _, registry, endpoint = await set_up(client, settings, clock)
        for n, (offset, status) in enumerate(
            [
                (0, 500),
                (DISABLE_AFTER_S / 2, 200),
                (DISABLE_AFTER_S * 0.6, 500),
                (DISABLE_AFTER_S + 1, 500),
            ]
        ):
            clock.now = START_S + offset
            transport.answers[endpoint.id] = status
            await publish(client, settings, "v_1", f"evt-{n}")
            await step(client, settings, clock, transport, "take_new", "a")
        # failing since 0.6 x disable_after, not since the start: still enabled
        assert (await registry.get(endpoint.id)).enabled
        assert await registry.failing() == {endpoint.id: START_S + DISABLE_AFTER_S * 0.6}

    run(redis_url, scenario)


def test_disable_after_zero_never_disables(redis_url: str) -> None:
    settings = settings_for(redis_url, disable_after=0)
    clock = ManualClock(START_S)
    transport = ScriptedTransport()

    async def scenario(client: RedisClient) -> None:
        _, registry, endpoint = await set_up(client, settings, clock)
        transport.answers[endpoint.id] = 500
        for day in range(10):
            clock.now = START_S + day * 86400
            await publish(client, settings, "v_1", f"evt-{day}")
            await step(client, settings, clock, transport, "take_new", "a")
        assert (await registry.get(endpoint.id)).enabled
        assert not [e for e in await ops_events(client, settings)
                    if e["type"] == "endpoint.disabled"]  # fmt: skip

    run(redis_url, scenario)


def test_two_daemons_disabling_at_once_announce_it_once(redis_url: str) -> None:
    settings = settings_for(redis_url)

    async def scenario(client: RedisClient) -> None:
        registry = registry_for(client, settings)
        endpoint = await registry.add("v_1", "http://127.0.0.1:9/in", now_s=START_S)
        async with trio.open_nursery() as nursery:
            for _ in range(5):
                other = registry_for(client, settings)
                nursery.start_soon(lambda r=other: r.set_enabled(endpoint.id, False, "gone",
                                                                 by="gone"))  # fmt: skip
        await registry.set_enabled(endpoint.id, True)
        await registry.set_enabled(endpoint.id, True)
        kinds = [e["type"] for e in await ops_events(client, settings)]
        assert kinds == ["endpoint.disabled", "endpoint.enabled"]

    run(redis_url, scenario)


def test_deliveries_to_a_disabled_endpoint_are_held_and_recovered(redis_url: str) -> None:
    settings = settings_for(redis_url)
    clock = ManualClock(START_S)
    transport = ScriptedTransport()

    async def scenario(client: RedisClient) -> None:
        store, registry, endpoint = await set_up(client, settings, clock)
        await registry.set_enabled(endpoint.id, False)
        for n in range(3):
            await publish(client, settings, "v_1", f"evt-{n}")
        await step(client, settings, clock, transport, "take_new", "a")
        assert transport.sent == []
        assert (await client.xpending(settings.stream.name, settings.stream.group)).pending == 0
        record = await record_of(client, settings, "evt-0")
        assert record[endpoint.id]["state"] == "held"
        assert "disabled by operator" in record[endpoint.id]["reason"]
        keys = PartitionKeys(settings.stream.name)
        assert await client.zcard(keys.held) == 3

        await registry.set_enabled(endpoint.id, True)
        clock.now += 5
        recovered = await recover(store, endpoint.id, clock.now, retention_s=3600)
        assert (recovered.held, recovered.redriven) == (3, 0)
        assert await client.zcard(keys.held) == 0
        await step(client, settings, clock, transport, "claim_due", "a")
        assert sorted(event_id for _, event_id in transport.sent) == ["evt-0", "evt-1", "evt-2"]
        assert (await record_of(client, settings, "evt-2"))[endpoint.id]["state"] == "delivered"
        kinds = [(e["type"], e["data"].get("reason")) for e in await ops_events(client, settings)]
        assert kinds == [("endpoint.disabled", "operator"), ("endpoint.enabled", None)]

    run(redis_url, scenario)


def test_a_delivery_held_past_the_retention_becomes_a_dead_letter(redis_url: str) -> None:
    settings = settings_for(redis_url)
    clock = ManualClock(START_S)

    async def scenario(client: RedisClient) -> None:
        store, registry, endpoint = await set_up(client, settings, clock)
        await registry.set_enabled(endpoint.id, False)
        transport = ScriptedTransport()
        await publish(client, settings, "v_1", "evt-old")
        await step(client, settings, clock, transport, "take_new", "a")
        clock.now += 100
        await publish(client, settings, "v_1", "evt-new")
        await step(client, settings, clock, transport, "take_new", "a")

        assert await expire_held(store, clock.now, retention_s=50) == 1
        letters = await store.dead_letters(10)
        assert [fields["event_id"] for _, fields in letters] == ["evt-old"]
        assert "longer than stream.retention" in letters[0][1]["reason"]
        assert (await record_of(client, settings, "evt-old"))[endpoint.id]["state"] == "dead"
        # the one held within the retention is still there for a recovery
        recovered = await recover(store, endpoint.id, clock.now, retention_s=50)
        assert recovered.held == 1
        notices = [e for e in await ops_events(client, settings)
                   if e["type"] == "delivery.dead_lettered"]  # fmt: skip
        assert [n["data"]["event_id"] for n in notices] == ["evt-old"]
        assert notices[0]["data"]["dead_letter_id"] == letters[0][0]

    run(redis_url, scenario)


def test_a_dead_letter_is_announced_once_with_its_last_answer(redis_url: str) -> None:
    settings = settings_for(redis_url)
    clock = ManualClock(START_S)
    transport = ScriptedTransport()

    async def scenario(client: RedisClient) -> None:
        _store, _registry, endpoint = await set_up(client, settings, clock)
        transport.answers[endpoint.id] = 503
        await publish(client, settings, "v_1", "evt-1")
        await step(client, settings, clock, transport, "take_new", "a")
        for _ in range(5):  # the test schedule has 3 retries
            clock.now += 60
            await step(client, settings, clock, transport, "claim_due", "a")
        notices = [e for e in await ops_events(client, settings)
                   if e["type"] == "delivery.dead_lettered"]  # fmt: skip
        assert len(notices) == 1
        data = notices[0]["data"]
        assert (data["event_id"], data["endpoint_id"], data["attempts"], data["last_status"],
                data["last_error"]) == ("evt-1", endpoint.id, 4, 503, "HTTP 503")  # fmt: skip
        assert notices[0]["id"] == f"op_delivery.dead_lettered_{data['dead_letter_id']}"

    run(redis_url, scenario)


def test_replay_reaches_an_event_that_no_endpoint_took_when_published(redis_url: str) -> None:
    settings = settings_for(redis_url)
    clock = ManualClock(START_S)
    transport = ScriptedTransport()

    async def scenario(client: RedisClient) -> None:
        store = store_for(client, settings)
        await store.ensure_group(settings.stream.name)
        registry = registry_for(client, settings, clock=clock.now_s)
        explicit = "order-77-created"
        await publish(client, settings, "v_7", explicit)
        entry_id = await client.xadd(settings.stream.name, dict(
            entry_fields("order.created", "v_7", {"id": 78}, None)))  # fmt: skip
        default = f"evt_{entry_id.decode()}"
        await step(client, settings, clock, transport, "take_new", "a")
        assert await replay(store, explicit, clock.now, registry.subscribed) == []
        assert await store.event_record(default) is None

        endpoint = await registry.add("v_7", "http://127.0.0.1:9/in", now_s=START_S)
        for event_id in (explicit, default):
            assert await replay(store, event_id, clock.now, registry.subscribed) == [endpoint.id]
        assert await replay(store, "evt_1-0", clock.now, registry.subscribed) is None
        await step(client, settings, clock, transport, "claim_due", "a")
        assert sorted(event_id for _, event_id in transport.sent) == sorted([explicit, default])

    run(redis_url, scenario)
