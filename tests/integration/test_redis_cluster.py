"""The local Redis Cluster that cluster tests run on: three masters sharing every slot,
each reachable through coredis's RedisCluster, the client webhookd uses for
``redis+cluster://``."""

from __future__ import annotations

from typing import Any

import coredis
import redis
from coredis.connection import TCPLocation
from redis.crc import key_slot

SLOTS = 16384


def cluster_ports(url: str) -> list[int]:
    assert url.startswith("redis+cluster://")
    return [int(node.rsplit(":", 1)[1]) for node in url.removeprefix("redis+cluster://").split(",")]


def slot_owners(port: int) -> dict[int, int]:
    """The port of the master serving each slot, as the node at ``port`` sees it."""
    with redis.Redis(port=port) as node:
        ranges: list[Any] = node.execute_command("CLUSTER", "SLOTS", NEVER_DECODE=True)
    return {slot: int(r[2][1]) for r in ranges for slot in range(int(r[0]), int(r[1]) + 1)}


def test_three_masters_serve_every_slot(redis_cluster_url: str) -> None:
    ports = cluster_ports(redis_cluster_url)
    assert len(set(ports)) == 3
    for port in ports:
        with redis.Redis(port=port, decode_responses=True) as node:
            info = node.cluster("info")
            assert info["cluster_state"] == "ok"
            assert int(info["cluster_slots_assigned"]) == SLOTS
            assert int(info["cluster_known_nodes"]) == 3
            assert int(info["cluster_size"]) == 3  # masters serving at least one slot
    owners = slot_owners(ports[0])
    assert len(owners) == SLOTS
    assert set(owners.values()) == set(ports)
    assert all(slot_owners(port) == owners for port in ports[1:])


async def test_coredis_cluster_client_sets_and_gets_on_every_master(
    redis_cluster_url: str, key_prefix: str
) -> None:
    ports = cluster_ports(redis_cluster_url)
    owners = slot_owners(ports[0])
    keys: dict[int, str] = {}  # one key per master, found by its slot
    for n in range(10_000):
        key = f"{key_prefix}:{n}"
        keys.setdefault(owners[key_slot(key.encode())], key)
        if len(keys) == len(ports):
            break
    nodes = [TCPLocation("127.0.0.1", port) for port in ports]
    async with coredis.RedisCluster(startup_nodes=nodes, decode_responses=True) as client:
        for port, key in keys.items():
            assert await client.set(key, f"on {port}")
        values = {port: await client.get(key) for port, key in keys.items()}
    assert values == {port: f"on {port}" for port in ports}
    for port, key in keys.items():
        with redis.Redis(port=port, decode_responses=True) as node:
            assert node.keys(f"{key_prefix}:*") == [key]  # stored on the master owning it
