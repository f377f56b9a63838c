"""Both limiters on Redis Cluster (``redis+cluster://``): one cluster-enabled
redis-server holding all 16384 slots, started for this module. The async limiter runs
on both its Redis stores: coredis (``from_url``) and the wire (``rediswire``)."""

from __future__ import annotations

import contextlib
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import anyio
import pytest
import redis
import trio
from redis.crc import key_slot

from ratelimiter import AsyncLimiter, AsyncRedisBackend, Limiter, parse_limit
from ratelimiter.backend import Check
from ratelimiter.wire_backend import WireBackend
from rediswire import Wire
from webhookd.embedded import find_redis_server, free_port

STORES = ["coredis", "wire"]


@contextlib.asynccontextmanager
async def async_limiter(store: str, url: str, prefix: str) -> AsyncIterator[AsyncLimiter]:
    if store == "coredis":
        async with AsyncLimiter.from_url(url, prefix=prefix) as limiter:
            yield limiter
    else:
        async with Wire.from_url(url) as wire, AsyncLimiter(wire, prefix=prefix) as limiter:
            yield limiter


@pytest.fixture(scope="module")
def cluster_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    data_dir: Path = tmp_path_factory.mktemp("redis-cluster")
    port = free_port()
    args = [
        find_redis_server(),
        "--port", str(port),
        "--bind", "127.0.0.1",
        "--dir", str(data_dir),
        "--save", "",
        "--appendonly", "no",
        "--cluster-enabled", "yes",
        "--cluster-port", str(free_port()),  # the default, port + 10000, may not exist
        "--cluster-config-file", "nodes.conf",
        "--logfile", "redis.log",
    ]  # fmt: skip
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        client = redis.Redis(port=port, decode_responses=True)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise
                time.sleep(0.02)
        client.execute_command("CLUSTER ADDSLOTSRANGE", 0, 16383)
        while client.cluster("info")["cluster_state"] != "ok":
            if time.monotonic() > deadline:
                raise TimeoutError("the one-node cluster did not come up")
            time.sleep(0.02)
        client.close()
        yield f"redis+cluster://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_the_sync_limiter_on_a_cluster(cluster_url: str) -> None:
    prefix = f"t{uuid.uuid4().hex[:8]}"
    with Limiter.from_url(cluster_url, prefix=prefix) as limiter:
        exact = parse_limit("3/m", exact=True)
        for expected in (2, 1, 0):
            assert limiter.hit("vendor:v_1", exact, plan="basic").remaining == expected
        assert not limiter.hit("vendor:v_1", exact, plan="basic").allowed
        node = redis.Redis.from_url(cluster_url.replace("redis+cluster", "redis"))
        keys = node.keys(f"{prefix}:*")
        assert len(keys) == 2
        slots = {node.execute_command("CLUSTER KEYSLOT", key) for key in keys}
        assert slots == {node.execute_command("CLUSTER KEYSLOT", "vendor:v_1")}
        node.script_flush()
        limiter.reset("vendor:v_1")
        assert node.keys(f"{prefix}:*") == []
        node.close()


@pytest.mark.parametrize("store", STORES)
async def test_the_async_limiter_splits_a_batch_by_slot(cluster_url: str, store: str) -> None:
    prefix = f"t{uuid.uuid4().hex[:8]}"
    async with async_limiter(store, cluster_url, prefix) as limiter:
        results: dict[str, list[bool]] = {}

        async def hammer(key: str) -> None:
            results[key] = [(await limiter.hit(key, "3/m")).allowed for _ in range(5)]

        async with trio.open_nursery() as nursery:
            for index in range(20):
                nursery.start_soon(hammer, f"vendor:v_{index}")
        assert results == {f"vendor:v_{i}": [True] * 3 + [False] * 2 for i in range(20)}
        await limiter.reset("vendor:v_0")
        assert (await limiter.peek("vendor:v_0", "3/m")).remaining == 3


def test_the_async_limiter_on_a_cluster_under_asyncio(cluster_url: str) -> None:
    async def main() -> int:
        async with AsyncLimiter.from_url(cluster_url, prefix=f"t{uuid.uuid4().hex[:8]}") as lim:
            return (await lim.hit("k", "5/m")).remaining

    assert anyio.run(main, backend="asyncio") == 4


@pytest.mark.parametrize("store", STORES)
async def test_a_batch_spanning_slots_reloads_a_flushed_script(
    cluster_url: str, store: str
) -> None:
    prefix = f"t{uuid.uuid4().hex[:8]}"
    node = redis.Redis.from_url(cluster_url.replace("redis+cluster", "redis"))
    async with async_limiter(store, cluster_url, prefix) as limiter:
        backend = limiter.backend
        assert isinstance(backend, AsyncRedisBackend | WireBackend)
        node.script_flush()
        limits = (parse_limit("2/m"),)
        checks = [Check(f"k{index}", limits, 1, True, None) for index in range(6)]
        assert len({key_slot(f"{prefix}:{{k{i}}}".encode()) for i in range(6)}) == 6
        outcomes = await backend._send(checks)
        assert [outcome.states[0][0] for outcome in outcomes] == [1] * 6
    node.close()


BRACED = ["}vendor:v_1", "{vendor}:v_1", "a{b}c", "}{", "{}", "%7D", "}"]


def test_keys_with_braces_stay_in_one_slot(cluster_url: str) -> None:
    """A key starting with "}" once made an empty hash tag: its log key then hashed to
    another slot than its counters, and Redis Cluster refused the script (CROSSSLOT)."""
    prefix = f"t{uuid.uuid4().hex[:8]}"
    exact = parse_limit("2/m", exact=True)
    with Limiter.from_url(cluster_url, prefix=prefix) as limiter:
        for key in BRACED:
            assert [limiter.hit(key, exact, "5/m").allowed for _ in range(3)] == [True, True, False]
        node = redis.Redis.from_url(cluster_url.replace("redis+cluster", "redis"))
        keys = node.keys(f"{prefix}:*")
        assert len(keys) == 2 * len(BRACED)  # each key: its hash and its log, apart
        for key in BRACED:
            limiter.reset(key)
        assert node.keys(f"{prefix}:*") == []
        node.close()


async def test_the_async_limiter_takes_braced_keys_in_one_batch(cluster_url: str) -> None:
    prefix = f"t{uuid.uuid4().hex[:8]}"
    exact = parse_limit("2/m", exact=True)
    async with AsyncLimiter.from_url(cluster_url, prefix=prefix) as limiter:
        results: dict[str, list[bool]] = {}

        async def hammer(key: str) -> None:
            results[key] = [(await limiter.hit(key, exact)).allowed for _ in range(3)]

        async with trio.open_nursery() as nursery:
            for key in BRACED:
                nursery.start_soon(hammer, key)
    assert results == {key: [True, True, False] for key in BRACED}
