"""Fixtures: a real redis-server on a free port, a key prefix per test, a real receiver."""

from __future__ import annotations

import contextlib
import functools
import inspect
import json
import shutil
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import coredis
import pytest
import redis
import trio
import trio.testing
from local_cluster import MISSING_REDIS_CLI, running_cluster
from webhook_receiver import Receiver

from webhookd.config import Settings, settings_from_mapping
from webhookd.connection import open_client
from webhookd.daemon import Daemon
from webhookd.embedded import running_redis
from webhookd.keyspace import PartitionKeys
from webhookd.publisher import Publisher

# A fixed master key for tests, so no test writes a key file into the working directory.
TEST_SECRETS_KEY = "dGVzdCBtYXN0ZXIga2V5IG9mIDMyIGJ5dGVzIGxvbmc="


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real redis-server for the whole session, never the machine's default port."""
    data_dir: Path = tmp_path_factory.mktemp("redis")
    with running_redis(data_dir, persistent=False) as server:
        yield server.url


@pytest.fixture(scope="session")
def redis_cluster_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real three-master Redis Cluster for the whole session, as a redis+cluster:// URL.

    It fails (never skips) without redis-cli, so a missing tool cannot pass for green.
    """
    if shutil.which("redis-cli") is None:
        pytest.fail(MISSING_REDIS_CLI, pytrace=False)
    with running_cluster(tmp_path_factory.mktemp("redis-cluster")) as cluster:
        yield cluster.url


@pytest.fixture
def key_prefix() -> str:
    """A namespace of its own for each test, so tests never see each other's keys."""
    return f"t{uuid.uuid4().hex[:12]}"


AsyncRedis = coredis.Redis[str]


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    """For synchronous tests only: in a trio test a blocking call stalls every task."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    client.close()


@pytest.fixture
async def aredis(redis_url: str) -> AsyncIterator[AsyncRedis]:
    """Redis for trio tests, opened in the test's own trio run."""
    client: AsyncRedis = coredis.Redis.from_url(redis_url, decode_responses=True)
    async with client:
        yield client


@pytest.fixture
async def receiver(nursery: trio.Nursery) -> Receiver:
    """A real HTTP receiver on a loopback port, answering 200 unless scripted otherwise."""
    server = Receiver()
    await nursery.start(server.serve)
    return server


def daemon_config(redis_url: str, key_prefix: str, **sections: dict[str, Any]) -> dict[str, Any]:
    """Daemon config for a test: its own keys and streams, plain HTTP to loopback allowed."""
    data: dict[str, dict[str, Any]] = {
        "redis": {"url": redis_url, "key_prefix": key_prefix},
        "stream": {
            "name": f"{key_prefix}:events",
            "dead": f"{key_prefix}:dead",
            "ops": f"{key_prefix}:ops",
            "block": 0.05,
            "reclaim_idle": 2.0,
        },
        "delivery": {"require_https": False, "allow_private_targets": True, "timeout": 1.0},
        "retry": {"schedule": [1, 2, 4, 8, 16], "jitter": 0.1},
        "admin": {"listen": "127.0.0.1:0", "token": "test-admin-token"},
        "secrets": {"key": TEST_SECRETS_KEY},
    }
    for section, values in sections.items():
        data.setdefault(section, {}).update(values)
    return data


@pytest.fixture
def make_settings(redis_url: str, key_prefix: str) -> Callable[..., Settings]:
    def make(**sections: dict[str, Any]) -> Settings:
        return settings_from_mapping(daemon_config(redis_url, key_prefix, **sections), environ={})

    return make


@pytest.fixture
def mock_clock() -> trio.testing.MockClock:
    """Trio's mock clock, jumping ahead whenever every task has been idle for 20 ms.

    The threshold keeps the clock still while real Redis and HTTP I/O (well under a
    millisecond on loopback) is in flight, so only sleeps and timeouts are skipped.
    """
    return trio.testing.MockClock(autojump_threshold=0.02)


@contextlib.asynccontextmanager
async def running_daemon(settings: Settings) -> AsyncIterator[Daemon]:
    """A daemon in this test's trio run, stopped gracefully when the block ends.

    Its transport is the guarded one the daemon is configured with, built here so that
    the egress policy under test is exactly the settings'.
    """
    assert settings.redis.url is not None
    async with open_client(settings.redis.url) as client, trio.open_nursery() as nursery:
        daemon = Daemon(settings, client)
        await nursery.start(daemon.run)
        try:
            yield daemon
        finally:
            daemon.stop()


_TRUTHY = object()


async def until(
    check: Callable[[], object], interval_s: float = 0.02, *, equals: object = _TRUTHY
) -> None:
    """Wait until ``check()`` (or what it awaits to) is truthy, or ``equals`` when given:
    for state in Redis or behind an HTTP endpoint, which has nothing to wait on."""
    while True:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        met = bool(result) if equals is _TRUTHY else result == equals
        if met:
            return
        await trio.sleep(interval_s)


async def entries(client: AsyncRedis, stream: str) -> list[tuple[str, dict[str, str]]]:
    """A stream's entries as (id, fields), oldest first."""
    return [
        (item.identifier, dict(item.field_values or {})) for item in await client.xrange(stream)
    ]


async def pending(client: AsyncRedis, stream: str, group: str = "webhookd") -> int:
    """How many entries of the stream the group has read and not acked."""
    summary: Any = await client.xpending(stream, group)
    return int(summary.pending)


async def recorded_states(client: AsyncRedis, stream: str) -> list[dict[str, Any]]:
    """Every delivery state recorded in a partition (see webhookd.keyspace)."""
    states = []
    async for key in client.scan_iter(PartitionKeys(stream).event("*")):
        fields = await client.hgetall(key)
        states += [json.loads(value) for field, value in fields.items() if "#" not in field]
    return states


async def recorded_attempts(client: AsyncRedis, stream: str, event_id: str) -> list[dict[str, Any]]:
    """Every attempt recorded for an event in a partition, in attempt order."""
    fields = await client.hgetall(PartitionKeys(stream).event(event_id))
    attempts = [(name, json.loads(value)) for name, value in fields.items() if "#" in name]
    return [attempt for _, attempt in sorted(attempts, key=lambda item: item[1]["attempt"])]


async def publish(publisher: Publisher, event_type: str, **fields: Any) -> str:
    """``Publisher.publish`` (redis-py, blocking) off the trio thread."""
    return await trio.to_thread.run_sync(functools.partial(publisher.publish, event_type, **fields))
