"""Per-vendor webhook quotas on a running daemon: real Redis, a real receiver, trio's
mock clock driving the daemons, the limiter's windows and the retry schedule alike."""

from __future__ import annotations

import contextlib
import json
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from typing import Any

import trio
import trio.testing
from conftest import (
    AsyncRedis,
    entries,
    pending,
    recorded_attempts,
    recorded_states,
    running_daemon,
    until,
)
from webhook_receiver import Receiver

from webhookd.clock import EpochClock
from webhookd.config import Settings
from webhookd.connection import open_client
from webhookd.events import Event
from webhookd.model import Delivery, EntryRef
from webhookd.publisher import entry_fields
from webhookd.quotas import Quotas


async def publish(
    client: AsyncRedis, settings: Settings, count: int, vendor: str = "v_1"
) -> list[str]:
    """XADD ``count`` events the way the Publisher does, on trio (no thread for the mock
    clock to jump over); their default event ids."""
    ids = []
    for i in range(count):
        fields = entry_fields("order.created", vendor, {"n": i}, None)
        ids.append(f"evt_{await client.xadd(settings.stream.name, fields)}")  # type: ignore[arg-type]
    return ids


def quota_settings(make_settings: Callable[..., Settings], key_prefix: str,
                   **quotas: Any) -> Settings:  # fmt: skip
    """Quotas on, with counters and plans under the test's own prefix."""
    return make_settings(quotas={"limiter_prefix": f"{key_prefix}:rl", **quotas})


async def at_second_of_minute(clock: EpochClock, second: float) -> None:
    """Sleep (mock time) until the epoch clock is ``second`` s into a minute, so that a
    test's burst never straddles a window boundary by chance."""
    await trio.sleep((second - clock.now_s() % 60) % 60)


def per_minute(receiver: Receiver) -> Counter[int]:
    """Deliveries per fixed minute of the epoch, by each attempt's X-Timestamp."""
    return Counter(int(r.headers["x-timestamp"]) // 60 for r in receiver.requests)


async def count_in(client: AsyncRedis, stream: str, state: str) -> int:
    return sum(s["state"] == state for s in await recorded_states(client, stream))


async def all_in(client: AsyncRedis, stream: str, state: str) -> bool:
    return all(s["state"] == state for s in await recorded_states(client, stream))


async def in_state(client: AsyncRedis, stream: str, state: str) -> list[dict[str, Any]]:
    return [s for s in await recorded_states(client, stream) if s["state"] == state]


async def ops_entries(client: AsyncRedis, settings: Settings) -> list[dict[str, Any]]:
    return [
        {**fields, "data": json.loads(fields["data"])}
        for _, fields in await entries(client, settings.stream.ops)
    ]


async def test_a_burst_goes_out_at_the_vendor_rate_without_using_attempts(
    make_settings: Callable[..., Settings],
    key_prefix: str,
    receiver: Receiver,
    aredis: AsyncRedis,
    mock_clock: trio.testing.MockClock,
) -> None:
    settings = quota_settings(make_settings, key_prefix, vendor_rate="5/minute")
    stream = settings.stream.name
    async with running_daemon(settings) as daemon:
        await daemon.registry.add("v_1", receiver.url(), now_s=time.time())
        await at_second_of_minute(EpochClock(), 5)
        ids = await publish(aredis, settings, 12)
        with trio.fail_after(60):
            await receiver.wait_for(5)
            await until(lambda: count_in(aredis, stream, "deferred"), equals=7)
        waiting = await in_state(aredis, stream, "deferred")
        assert await daemon.store.deferred("v_1") == 7
        with trio.fail_after(600):
            await receiver.wait_for(12)
            await until(lambda: all_in(aredis, stream, "delivered"))
        assert await daemon.store.deferred("v_1") == 0
    minutes = per_minute(receiver)
    first = min(minutes)
    assert minutes[first] == 5
    assert all(count <= 5 for count in minutes.values()), minutes
    assert sorted(r.headers["x-event-id"] for r in receiver.requests) == sorted(ids)
    for state in waiting:
        assert state["attempts"] == 0 and state["last_status"] is None
        assert state["reason"] == "over the vendor's webhook rate (5/minute)"
        assert state["next_attempt_at"] > datetime.fromtimestamp((first + 1) * 60).isoformat()
    for state in await recorded_states(aredis, stream):
        assert state["attempts"] == 1
    for event_id in ids:
        assert [a["attempt"] for a in await recorded_attempts(aredis, stream, event_id)] == [1]
    [announced] = [e for e in await ops_entries(aredis, settings)
                   if e["data"]["window_reset"] == (first + 1) * 60]  # fmt: skip
    assert (announced["type"], announced["vendor"]) == ("quota.exceeded", "v_1")
    assert announced["data"]["limit"] == "5/minute"


async def test_a_basic_vendors_101st_webhook_waits_for_the_next_window(
    make_settings: Callable[..., Settings],
    key_prefix: str,
    receiver: Receiver,
    aredis: AsyncRedis,
    mock_clock: trio.testing.MockClock,
) -> None:
    settings = quota_settings(make_settings, key_prefix, default_plan="basic")
    stream = settings.stream.name
    assert settings.redis.url
    async with running_daemon(settings) as daemon, open_client(settings.redis.url) as client:
        clock = EpochClock()  # the daemon's, give or take the moment it was made
        quotas = Quotas(client, settings.quotas, clock=clock, ops_stream=settings.stream.ops,
                        key_prefix=key_prefix)  # fmt: skip
        await daemon.registry.add("v_1", receiver.url(), now_s=time.time())
        await publish(aredis, settings, 101)
        with trio.fail_after(60):
            await receiver.wait_for(100)
            await until(lambda: in_state(aredis, stream, "deferred"))
        [waiting] = await in_state(aredis, stream, "deferred")
        usage = await quotas.usage("v_1")
        assert (usage["plan"], usage["default"]) == ("basic", True)
        assert (usage["daily_quota"]["used"], usage["daily_quota"]["remaining"]) == (100, 0)
        assert await daemon.store.deferred("v_1") == 1
        due_s = datetime.fromisoformat(waiting["next_attempt_at"]).timestamp()
        next_day_s = (clock.now_s() // 86400 + 1) * 86400
        assert due_s >= next_day_s
        await trio.sleep(5)
        assert len(receiver.requests) == 100
        mock_clock.jump(due_s - clock.now_s() + 1)
        with trio.fail_after(30):
            await receiver.wait_for(101)
    assert waiting["reason"] == "over the daily webhook quota of plan basic (100/day)"
    assert waiting["attempts"] == 0
    assert int(receiver.requests[-1].headers["x-timestamp"]) >= next_day_s
    [announced] = await ops_entries(aredis, settings)
    assert announced["data"]["plan"] == "basic" and announced["data"]["limit"] == "100/day"


async def test_over_the_daily_quota_dead_letters_when_so_configured(
    make_settings: Callable[..., Settings],
    key_prefix: str,
    receiver: Receiver,
    aredis: AsyncRedis,
    mock_clock: trio.testing.MockClock,
) -> None:
    settings = quota_settings(make_settings, key_prefix, default_plan="basic",
                              exceeded="dead_letter")  # fmt: skip
    async with running_daemon(settings) as daemon:
        await daemon.registry.add("v_1", receiver.url(), now_s=time.time())
        ids = await publish(aredis, settings, 101)
        with trio.fail_after(60):
            await receiver.wait_for(100)
            await until(lambda: aredis.xlen(settings.stream.dead))
            await until(lambda: pending(aredis, settings.stream.name), equals=0)
    [(_, dead)] = await entries(aredis, settings.stream.dead)
    assert dead["reason"] == "over the daily webhook quota of plan basic (100/day)"
    assert (dead["attempts"], dead["last_status"]) == ("0", "")
    delivered = {r.headers["x-event-id"] for r in receiver.requests}
    assert delivered | {dead["event_id"]} == set(ids) and dead["event_id"] not in delivered
    states = Counter(s["state"] for s in await recorded_states(aredis, settings.stream.name))
    assert states == {"delivered": 100, "dead": 1}


async def test_two_daemons_share_one_vendors_rate(
    make_settings: Callable[..., Settings],
    key_prefix: str,
    receiver: Receiver,
    aredis: AsyncRedis,
    mock_clock: trio.testing.MockClock,
) -> None:
    settings = quota_settings(make_settings, key_prefix, vendor_rate="5/minute")
    async with contextlib.AsyncExitStack() as stack:
        first = await stack.enter_async_context(running_daemon(settings))
        await stack.enter_async_context(running_daemon(settings))
        await first.registry.add("v_1", receiver.url(), now_s=time.time())
        await at_second_of_minute(EpochClock(), 5)
        ids = await publish(aredis, settings, 15)
        with trio.fail_after(900):
            await receiver.wait_for(15)
    minutes = per_minute(receiver)
    assert minutes[min(minutes)] == 5
    assert all(count <= 5 for count in minutes.values()), minutes
    assert sorted(r.headers["x-event-id"] for r in receiver.requests) == sorted(ids)


async def test_two_gates_never_admit_more_than_the_limit_together(
    make_settings: Callable[..., Settings],
    key_prefix: str,
    redis_url: str,
    mock_clock: trio.testing.MockClock,
) -> None:
    """Two daemons' gates, each with its own client and memory, judging batches at once:
    no fixed minute ever admits more than the rate, and every minute admits it fully."""
    settings = quota_settings(make_settings, key_prefix, vendor_rate="20/minute")
    admitted: Counter[int] = Counter()
    clock = EpochClock()
    await at_second_of_minute(clock, 1)

    async def daemon_gate() -> None:
        async with open_client(redis_url) as client:
            gate = Quotas(client, settings.quotas, clock=clock, ops_stream=settings.stream.ops,
                          key_prefix=key_prefix)  # fmt: skip
            for _ in range(60):
                batch = [delivery(f"evt_{i}") for i in range(7)]
                verdicts = await gate.judge(batch)
                admitted[int(clock.now_s()) // 60] += verdicts.count(None)
                await trio.sleep(3)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(daemon_gate)
        nursery.start_soon(daemon_gate)
    assert all(count <= 20 for count in admitted.values()), admitted
    assert admitted[min(admitted)] == 20


def delivery(event_id: str) -> Delivery:
    event = Event(event_id, "order.created", "v_1", "2024-05-01T10:34:56.500Z", b"{}")
    return Delivery(event, "ep_1", EntryRef("s", "1-0"))
