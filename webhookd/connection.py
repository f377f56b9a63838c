"""Which Redis to talk to: the configured one, or the embedded one on ``redis.data_dir``."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator

import coredis
import structlog

from webhookd.config import RedisSettings
from webhookd.embedded import embedded_socket, running_redis

log = structlog.get_logger("webhookd.redis")


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


@contextlib.asynccontextmanager
async def open_client(url: str) -> AsyncIterator[coredis.Redis[bytes]]:
    client: coredis.Redis[bytes] = coredis.Redis.from_url(url, decode_responses=False)
    async with client:
        yield client
