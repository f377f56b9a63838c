"""Running the limiter service inside a test's trio run, on a free loopback port; counting
its script calls."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import coredis
import redis
import trio

from ratelimiter.config import Settings, service_policy, settings_from_mapping
from ratelimiter.keys import KeyStore
from ratelimiter.service import run

# Two small plans, so that tests reach a limit in a few requests.
TEST_PLANS = """
[plans.small]
limits = ["3/minute"]
[plans.large]
limits = ["5/minute"]
[plans.basic]
limits = ["10000/day", "50/minute"]
"""


def service_settings(
    redis_url: str | None,
    key_prefix: str,
    plans: Path | None = None,
    routes: dict[str, str] | None = None,
    **service: Any,
) -> Settings:
    """Settings for a service of this test: its own key prefix, port 0, short timeouts."""
    data: dict[str, Any] = {
        "routes": routes or {},
        "redis": {"key_prefix": key_prefix},
        "service": {"listen": "127.0.0.1:0", "redis_timeout": 0.5, **service},
        "keys": {"cache_ttl": 0},
    }
    if redis_url is not None:
        data["redis"]["url"] = redis_url
    if plans is not None:
        data["plans"] = {"file": str(plans)}
    return settings_from_mapping(data)


def write_plans(directory: Path) -> Path:
    path = directory / "plans.toml"
    path.write_text(TEST_PLANS)
    return path


@contextlib.asynccontextmanager
async def running_service(settings: Settings) -> AsyncIterator[str]:
    """The service, serving until the block ends; yields its base URL."""
    async with trio.open_nursery() as nursery:
        port = await nursery.start(run, settings, service_policy(settings))
        yield f"http://127.0.0.1:{port}"
        nursery.cancel_scope.cancel()


@contextlib.asynccontextmanager
async def key_store(redis_url: str, key_prefix: str) -> AsyncIterator[KeyStore]:
    async with coredis.Redis.from_url(redis_url) as client:
        yield KeyStore(client, prefix=key_prefix, cache_ttl_s=0)


def evalsha_calls(client: redis.Redis) -> int:
    """The script calls Redis ran. A NOSCRIPT is not one: the client loads the script and
    sends the call again, once per script and server."""
    stats: dict[str, Any] = client.info("commandstats")  # type: ignore[assignment]
    evalsha = stats.get("cmdstat_evalsha", {})
    return int(evalsha.get("calls", 0)) - int(evalsha.get("failed_calls", 0))
