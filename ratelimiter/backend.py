"""The one seam between the limiters and a store: checks in, outcomes out; and which
store a limiter URL names.

A store evaluates each check atomically: every limit of the check is evaluated first,
and only when all of them fit (and the check consumes) are they all counted. A check's
``now_ms`` is the injected clock's reading, or None for the store's own clock (Redis
``TIME``, or the memory store's clock).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple, Protocol

from ratelimiter.decision import LimitState
from ratelimiter.errors import BackendError, ConfigError
from ratelimiter.limit import Limit


class Check(NamedTuple):
    """One hit (or peek) to evaluate: a key, its limits in order, the units it costs."""

    key: str
    limits: tuple[Limit, ...]
    cost: int
    consume: bool
    now_ms: int | None


class Outcome(NamedTuple):
    """What the store decided for one check; ``states`` follow the check's limits."""

    now_ms: int
    allowed: bool
    states: tuple[LimitState, ...]


class Backend(Protocol):
    """A synchronous store (memory, redis-py)."""

    def decide(self, check: Check) -> Outcome: ...

    def reset(self, key: str) -> None: ...

    def close(self) -> None: ...


class AsyncBackend(Protocol):
    """An asynchronous store (coredis), usable under trio and asyncio.

    It takes one check per call and is free to coalesce concurrent calls. ``open`` and
    ``aclose`` bracket its use, in one task (``async with`` on the limiter).
    """

    async def open(self) -> None: ...

    async def decide(self, check: Check) -> Outcome: ...

    async def decide_many(self, checks: Sequence[Check]) -> list[Outcome | BackendError]:
        """Several checks in one go (one round trip on Redis), each its own outcome or error."""
        ...

    async def reset(self, key: str) -> None: ...

    async def aclose(self) -> None: ...


def split_url(url: str) -> tuple[str, str]:
    """``(kind, client URL)`` of a limiter URL: kind is memory, redis or cluster."""
    scheme, separator, rest = url.partition("://")
    if not separator:
        raise ConfigError(
            f"bad limiter URL {url!r}: expected memory://, redis://, rediss://, unix:// "
            "or redis+cluster://"
        )
    if scheme == "memory":
        return "memory", url
    if scheme in ("redis", "rediss", "unix"):
        return "redis", url
    if scheme in ("redis+cluster", "rediss+cluster"):
        return "cluster", f"{scheme.removesuffix('+cluster')}://{rest}"
    raise ConfigError(f"bad limiter URL {url!r}: unknown scheme {scheme!r}")
