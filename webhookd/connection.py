"""Which Redis to talk to (the configured one, or the embedded one on ``redis.data_dir``),
and the one place where coredis's and rediswire's errors become webhookd's::

    StoreUnavailable  connection lost, timeout, LOADING, failover, cluster down: retry later
    GroupMissing      NOGROUP: the stream or its consumer group is gone
    StoreRefused      anything else Redis answered with an error: this call will not pass
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from importlib import resources
from typing import cast

import coredis
import coredis.exceptions
import structlog
import trio
from coredis.connection import TCPLocation

from rediswire import ReplyError, Wire, WireUnavailable
from webhookd.config import RedisSettings
from webhookd.embedded import embedded_socket, running_redis
from webhookd.errors import GroupMissing, StoreError, StoreRefused, StoreUnavailable
from webhookd.redis_urls import split_cluster_url

log = structlog.get_logger("webhookd.redis")

_UNAVAILABLE_PREFIXES = ("LOADING", "BUSY", "TRYAGAIN", "CLUSTERDOWN", "MASTERDOWN", "READONLY",
                         "NOREPLICAS", "OOM", "MOVED", "ASK")  # fmt: skip


class Redis(coredis.Redis[bytes]):
    """coredis, with the wire (``rediswire``) to the same Redis for the hot paths: the
    read loops, the recorder, the quota checks. coredis costs about 280 µs of CPU per
    round trip on trio, the wire a quarter of that (docs/decisions.md)."""

    wire: Wire


class RedisCluster(coredis.RedisCluster[bytes]):
    """The cluster client, with its wire."""

    wire: Wire


RedisClient = Redis | RedisCluster


@contextlib.contextmanager
def redis_url(settings: RedisSettings) -> Iterator[str]:
    """The configured URL; else an embedded Redis already running on the data directory;
    else a new embedded ``redis-server`` (AOF under ``redis.data_dir``), stopped on exit."""
    if settings.url:
        yield settings.url
        return
    existing = embedded_socket(settings.data_dir)
    if existing is not None:
        yield f"unix://{existing}"
        return
    with running_redis(settings.data_dir, persistent=True, unix_socket=True) as server:
        log.info("redis.embedded_started", url=server.url, data_dir=str(server.data_dir),
                 pid=server.process.pid)  # fmt: skip
        yield server.url
    log.info("redis.embedded_stopped", data_dir=str(settings.data_dir))


def client_for(url: str) -> RedisClient:
    cluster = split_cluster_url(url)
    client: RedisClient
    if cluster is not None:
        plain, hosts = cluster
        nodes = [TCPLocation(host, port) for host, port in hosts]
        # from_url builds ``cls``; its overloads name the base class
        client = cast(RedisCluster, RedisCluster.from_url(plain, startup_nodes=nodes))
    else:
        client = cast(Redis, Redis.from_url(url))
    client.wire = Wire.from_url(url)
    return client


@contextlib.asynccontextmanager
async def open_client(url: str) -> AsyncIterator[RedisClient]:
    client = client_for(url)
    async with client:
        try:
            yield client
        finally:
            with trio.CancelScope(shield=True):
                await client.wire.aclose()


@contextlib.contextmanager
def translated(operation: str) -> Iterator[None]:
    """The one place where a failed Redis call becomes a StoreError, named by operation."""
    try:
        yield
    except StoreError:
        raise
    except (coredis.exceptions.ConnectionError, coredis.exceptions.ClusterError, OSError,
            TimeoutError, WireUnavailable) as exc:  # fmt: skip
        raise StoreUnavailable(
            f"{operation}: Redis unavailable: {exc or type(exc).__name__}"
        ) from exc
    except (coredis.exceptions.RedisError, ReplyError) as exc:
        message = str(exc)
        # UNBLOCKED: the stream was deleted under a blocked read; XAUTOCLAIM says "No such key"
        if message.startswith(("NOGROUP", "UNBLOCKED")) or "or consumer group" in message:
            raise GroupMissing(f"{operation}: {message}") from exc
        if message.startswith(_UNAVAILABLE_PREFIXES) or isinstance(
            exc, coredis.exceptions.ClusterDownError | coredis.exceptions.TryAgainError
        ):
            raise StoreUnavailable(f"{operation}: {message}") from exc
        raise StoreRefused(f"{operation}: {message}") from exc


def lua_script(name: str) -> str:
    """The text of one of webhookd's Lua scripts (``webhookd/lua``)."""
    return resources.files("webhookd").joinpath("lua", name).read_text()
