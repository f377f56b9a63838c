"""Crashes between a delivery's records and its entry's ack: what the successor reclaims."""

from __future__ import annotations

from conftest import daemon_config
from daemon_parts import ManualClock, Process, ScriptedTransport

from webhookd.config import settings_from_mapping
from webhookd.connection import open_client
from webhookd.keyspace import PartitionKeys
from webhookd.pipeline import LANE_QUEUE_FACTOR
from webhookd.publisher import entry_fields
from webhookd.registry import registry_for

START_S = 1_700_000_000.0
# Deliveries handed over at once (one intake batch, one scheduler pass) fill an endpoint's
# lane before its worker runs: with concurrency 1, it takes the queue factor's worth.
LANE_ROOM = LANE_QUEUE_FACTOR


async def test_a_delivery_deferred_before_a_crash_is_not_sent_again_on_reclaim(
    redis_url: str, key_prefix: str
) -> None:
    settings = settings_from_mapping(daemon_config(redis_url, key_prefix), environ={})
    clock, transport = ManualClock(START_S), ScriptedTransport()
    async with open_client(redis_url) as client:
        crashed = Process(client, settings, consumer="crashed", clock=clock,
                          transport=transport, drop_acks=True)  # fmt: skip
        await crashed.store.ensure_group(crashed.stream)
        await registry_for(client, settings).add("v_a", "http://127.0.0.1:9/", now_s=START_S)
        for n in range(LANE_ROOM + 1):
            fields = entry_fields("order.created", "v_a", {"n": n}, None)
            await client.xadd(crashed.stream, dict(fields))
        await crashed.work(crashed.take_new)  # the lane takes LANE_ROOM, defers one; no acks land
        assert len(transport.sent) == LANE_ROOM
        successor = Process(client, settings, consumer="successor", clock=clock,
                            transport=transport)  # fmt: skip
        assert await successor.reclaim() == LANE_ROOM + 1
        retries = await client.zcard(PartitionKeys(crashed.stream).retry)
    assert len(transport.sent) == LANE_ROOM  # the deferred one waits for its retry
    assert retries == 1
