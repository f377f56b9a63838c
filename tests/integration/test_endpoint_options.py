"""Endpoints on a running daemon: pauses asked for with Retry-After, and each endpoint's
own retry schedule, timeout, concurrency and headers."""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import trio
import trio.testing
from conftest import AsyncRedis, recorded_attempts, recorded_states, running_daemon, until
from webhook_receiver import Receiver, Reply

from webhookd.config import Settings
from webhookd.daemon import Daemon
from webhookd.keyspace import PartitionKeys
from webhookd.options import DeliveryOptions
from webhookd.publisher import entry_fields

TOKEN = {"Authorization": "Bearer test-admin-token"}


async def publish(client: AsyncRedis, settings: Settings, count: int = 1) -> list[str]:
    """XADD events as the Publisher does, on trio; their default event ids."""
    ids = []
    for i in range(count):
        fields = entry_fields("order.created", "v_1", {"n": i}, None)
        ids.append(f"evt_{await client.xadd(settings.stream.name, fields)}")  # type: ignore[arg-type]
    return ids


async def state_of(
    client: AsyncRedis, settings: Settings, event_id: str, endpoint_id: str
) -> dict[str, Any]:
    raw = await client.hget(PartitionKeys(settings.stream.name).event(event_id), endpoint_id)
    return json.loads(raw) if raw else {}


async def state_is(
    client: AsyncRedis, settings: Settings, event_id: str, endpoint_id: str, state: str
) -> bool:
    return (await state_of(client, settings, event_id, endpoint_id)).get("state") == state


async def states_are(client: AsyncRedis, settings: Settings, state: str) -> bool:
    return all(s["state"] == state for s in await recorded_states(client, settings.stream.name))


async def all_deferred(
    client: AsyncRedis, settings: Settings, ids: list[str], endpoint_id: str
) -> bool:
    states = [await state_of(client, settings, i, endpoint_id) for i in ids]
    return all(s.get("state") == "deferred" for s in states)


async def test_a_429_with_retry_after_pauses_the_whole_endpoint(
    make_settings: Callable[..., Settings],
    receiver: Receiver,
    aredis: AsyncRedis,
    mock_clock: trio.testing.MockClock,
) -> None:
    settings = make_settings(retry={"schedule": [1, 1], "jitter": 0})
    receiver.script("/hook", Reply(status=429, headers=(("Retry-After", "30"),)))
    async with running_daemon(settings) as daemon:
        endpoint = await daemon.registry.add("v_1", receiver.url(), now_s=time.time())
        [first_id] = await publish(aredis, settings)
        with trio.fail_after(10):
            [refused] = await receiver.wait_for(1)
            shown = await until_paused(daemon, endpoint.id)
        later_ids = await publish(aredis, settings, 3)
        with trio.fail_after(10):
            await until(lambda: all_deferred(aredis, settings, later_ids, endpoint.id))
        deferred = [await state_of(aredis, settings, i, endpoint.id) for i in later_ids]
        with trio.fail_after(60):
            await receiver.wait_for(5)
            await until(lambda: states_are(aredis, settings, "delivered"))
        after = await daemon.registry.get(endpoint.id)
    assert shown["paused_until"] is not None
    assert after.public()["paused_until"] is None
    assert all(r.at - refused.at >= 30 for r in receiver.requests[1:])
    for state in deferred:
        assert state["attempts"] == 0
        assert state["reason"].startswith("endpoint paused until ")
    for event_id in later_ids:
        attempts = await recorded_attempts(aredis, settings.stream.name, event_id)
        assert [a["attempt"] for a in attempts] == [1]
    assert (await state_of(aredis, settings, first_id, endpoint.id))["attempts"] == 2


async def until_paused(daemon: Daemon, endpoint_id: str) -> dict:
    while True:
        shown = (await daemon.registry.get(endpoint_id)).public()
        if shown["paused_until"] is not None:
            return shown
        await trio.sleep(0.02)


async def test_a_pause_is_capped_by_max_pause(
    make_settings: Callable[..., Settings],
    receiver: Receiver,
    aredis: AsyncRedis,
    mock_clock: trio.testing.MockClock,
) -> None:
    settings = make_settings(retry={"schedule": [1], "jitter": 0}, delivery={"max_pause": 10})
    receiver.script("/hook", Reply(status=503, headers=(("Retry-After", "7200"),)))
    async with running_daemon(settings) as daemon:
        await daemon.registry.add("v_1", receiver.url(), now_s=time.time())
        await publish(aredis, settings)
        with trio.fail_after(60):
            first, second = await receiver.wait_for(2)
    assert 10 <= second.at - first.at <= 10.5


async def test_each_endpoint_follows_its_own_retry_schedule_and_sends_its_headers(
    make_settings: Callable[..., Settings],
    receiver: Receiver,
    aredis: AsyncRedis,
    mock_clock: trio.testing.MockClock,
) -> None:
    settings = make_settings(retry={"schedule": [1, 1, 1, 1, 1], "jitter": 0})
    receiver.script("/slow", *[Reply(status=500)] * 3)
    receiver.script("/fast", *[Reply(status=500)] * 5)
    slow_tier = DeliveryOptions(
        retry_schedule=(3.0, 20.0, 90.0),
        headers=(("X-Team", "orders"), ("Authorization", "Bearer t")),
    )
    async with running_daemon(settings) as daemon:
        slow = await daemon.registry.add("v_1", receiver.url("/slow"), now_s=time.time(),
                                         options=slow_tier)  # fmt: skip
        await daemon.registry.add("v_1", receiver.url("/fast"), now_s=time.time())
        [event_id] = await publish(aredis, settings)
        with trio.fail_after(300):
            slow_attempts = await receiver.wait_for(4, "/slow")
            fast_attempts = await receiver.wait_for(6, "/fast")
            await until(lambda: states_are(aredis, settings, "delivered"))
    gaps = [b.at - a.at for a, b in itertools.pairwise(slow_attempts)]
    assert [round(gap) for gap in gaps] == [3, 20, 90]
    assert [round(b.at - a.at) for a, b in itertools.pairwise(fast_attempts)] == [1] * 5
    for request in slow_attempts:
        assert request.headers["x-team"] == "orders"
        assert request.headers["authorization"] == "Bearer t"
        assert request.headers["content-type"] == "application/json"
    assert "x-team" not in fast_attempts[0].headers
    assert (await state_of(aredis, settings, event_id, slow.id))["state"] == "delivered"


async def test_an_endpoints_timeout_and_concurrency_apply_to_it_alone(
    make_settings: Callable[..., Settings],
    receiver: Receiver,
    aredis: AsyncRedis,
    mock_clock: trio.testing.MockClock,
) -> None:
    settings = make_settings(delivery={"timeout": 1.5}, retry={"schedule": [60], "jitter": 0})
    receiver.script("/one", *[Reply(stall_s=1.0)] * 3)
    receiver.script("/brief", *[Reply(stall_s=2.0)] * 3)
    async with running_daemon(settings) as daemon:
        one = DeliveryOptions(concurrency=1)
        await daemon.registry.add("v_1", receiver.url("/one"), now_s=time.time(), options=one)
        brief = await daemon.registry.add("v_1", receiver.url("/brief"), now_s=time.time(),
                                          options=DeliveryOptions(timeout_s=0.5))  # fmt: skip
        ids = await publish(aredis, settings, 3)
        with trio.fail_after(30):
            serial = await receiver.wait_for(3, "/one")
            await until(lambda: state_is(aredis, settings, ids[0], brief.id, "scheduled"))
    assert [round(b.at - a.at) for a, b in itertools.pairwise(serial)] == [1, 1]
    [timed_out] = [a for a in await recorded_attempts(aredis, settings.stream.name, ids[0])
                   if a["endpoint_id"] == brief.id]  # fmt: skip
    assert "within 0.5 s" in timed_out["error"]


async def test_the_admin_api_sets_and_checks_delivery_options(
    make_settings: Callable[..., Settings],
) -> None:
    async with running_daemon(make_settings()) as daemon:
        base = f"http://127.0.0.1:{daemon.admin_port}"
        async with httpx.AsyncClient(base_url=base, headers=TOKEN) as http:
            bad = await http.post("/v1/endpoints", json={
                "vendor": "v_1", "url": "http://127.0.0.1:9/hook",
                "headers": {"X-Signature": "sha256=forged"},
            })  # fmt: skip
            assert bad.status_code == 400 and "X-Signature" in bad.json()["message"]
            created = await http.post("/v1/endpoints", json={
                "vendor": "v_1", "url": "http://127.0.0.1:9/hook",
                "retry_schedule": [5, 300, 3600], "timeout": 2, "concurrency": 4,
                "headers": {"X-Team": "orders"},
            })  # fmt: skip
            assert created.status_code == 201, created.text
            shown = created.json()
            assert shown["retry_schedule"] == [5, 300, 3600]
            assert (shown["timeout"], shown["concurrency"]) == (2, 4)
            assert shown["headers"] == {"X-Team": "orders"}
            path = f"/v1/endpoints/{shown['id']}"
            patched = await http.patch(path, json={"retry_schedule": None, "concurrency": 8})
            assert patched.status_code == 200, patched.text
            assert (patched.json()["retry_schedule"], patched.json()["concurrency"]) == (None, 8)
            for body in ({"headers": {"X-A": "1\r\nX-B: 2"}}, {"timeout": 0},
                         {"concurrency": "many"}, {"retry_schedule": [-1]}):  # fmt: skip
                refused = await http.patch(path, json=body)
                assert refused.status_code == 400, body
            kept = (await http.get(path)).json()
            spec = (await http.get("/openapi.json")).json()
    assert (kept["timeout"], kept["concurrency"], kept["headers"]) == (2, 8, {"X-Team": "orders"})
    endpoint_schema = spec["components"]["schemas"]["Endpoint"]["properties"]
    assert {"retry_schedule", "timeout", "concurrency", "headers", "paused_until"} <= set(
        endpoint_schema
    )
