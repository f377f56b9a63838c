"""``AsyncLimiter``: the same limiter for trio and asyncio code, on coredis or memory.

Concurrent hits are coalesced (see ``batcher.py``), so a server with many requests in
flight pays one Redis round trip per batch, not per hit.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from types import TracebackType
from urllib.parse import urlsplit

import anyio
import coredis
from coredis.connection import TCPLocation

from ratelimiter.async_redis import AsyncRedisBackend, AsyncRedisClient
from ratelimiter.backend import AsyncBackend, Check, Outcome, split_url
from ratelimiter.decision import Decision
from ratelimiter.errors import BackendError
from ratelimiter.hits import Clock, PlansSource, Rules, decision_of, unlimited
from ratelimiter.limit import Limit
from ratelimiter.memory import MemoryBackend
from ratelimiter.policy import Plan, Policy
from ratelimiter.wire_backend import WireBackend
from rediswire import Wire


def coredis_client(url: str) -> AsyncRedisClient:
    """The coredis client of a ``redis://``, ``rediss://``, ``unix://`` or
    ``redis+cluster://`` URL (not yet entered); BackendError for one coredis refuses."""
    kind, client_url = split_url(url)
    try:
        if kind == "redis":
            return coredis.Redis.from_url(client_url)
        parts = urlsplit(client_url)  # the startup node, the way coredis 6 expects it
        node = TCPLocation(parts.hostname or "localhost", parts.port or 6379)
        return coredis.RedisCluster.from_url(client_url, startup_nodes=[node])
    except (coredis.exceptions.RedisError, OSError, ValueError) as error:
        raise BackendError(f"cannot use Redis at {url!r}: {error}") from error


class AsyncMemoryBackend:
    """The memory store behind the async interface (it never blocks)."""

    def __init__(self, memory: MemoryBackend | None = None) -> None:
        self.memory = memory or MemoryBackend()

    async def decide(self, check: Check) -> Outcome:
        await anyio.lowlevel.checkpoint()
        return self.memory.decide(check)

    async def decide_many(self, checks: Sequence[Check]) -> list[Outcome | BackendError]:
        await anyio.lowlevel.checkpoint()
        return [self.memory.decide(check) for check in checks]

    async def open(self) -> None:
        await anyio.lowlevel.checkpoint()

    async def reset(self, key: str) -> None:
        await anyio.lowlevel.checkpoint()
        self.memory.reset(key)

    async def aclose(self) -> None:
        self.memory.close()


class AsyncLimiter:
    """Asynchronous rate limiter, for trio and asyncio alike.

    ``backend`` is a store, or the application's ``coredis.Redis`` / ``RedisCluster``
    (already entered; keys go under ``prefix``), or a ``rediswire.Wire`` (trio only, a
    quarter of coredis's CPU per round trip), or None for the memory store. Use it as
    ``async with AsyncLimiter.from_url(url) as limiter:``, which opens and closes the
    Redis client it created. ``timeout_s`` bounds each Redis round trip.
    """

    def __init__(
        self,
        backend: AsyncBackend | AsyncRedisClient | Wire | None = None,
        *,
        plans: PlansSource = None,
        routes: Mapping[str, str | Limit] | None = None,
        clock: Clock | None = None,
        prefix: str = "rl",
        timeout_s: float = 5.0,
    ) -> None:
        if backend is None:
            backend = AsyncMemoryBackend()
        elif isinstance(backend, Wire):
            backend = WireBackend(backend, prefix=prefix, timeout_s=timeout_s)
        elif isinstance(backend, coredis.Redis | coredis.RedisCluster):
            backend = AsyncRedisBackend(backend, prefix=prefix, timeout_s=timeout_s)
        self.backend: AsyncBackend = backend
        self._rules = Rules(plans, routes, clock)

    @classmethod
    def from_url(
        cls,
        url: str,
        plans: PlansSource = None,
        *,
        routes: Mapping[str, str | Limit] | None = None,
        clock: Clock | None = None,
        prefix: str = "rl",
        timeout_s: float = 5.0,
    ) -> AsyncLimiter:
        """A limiter on ``memory://``, ``redis://``, ``rediss://`` or ``redis+cluster://``;
        enter it with ``async with`` before use."""
        backend: AsyncBackend
        if split_url(url)[0] == "memory":
            backend = AsyncMemoryBackend()
        else:
            backend = AsyncRedisBackend(
                coredis_client(url), prefix=prefix, owns_client=True, timeout_s=timeout_s
            )
        return cls(backend, plans=plans, routes=routes, clock=clock)

    @property
    def policy(self) -> Policy:
        return self._rules.policy

    def plan(self, name: str) -> Plan:
        """A plan by name (e.g. to read ``webhooks_per_day``); ``UnknownPlan`` if none."""
        return self._rules.policy.plan(name)

    async def hit(
        self,
        key: str,
        *limits: str | Limit,
        plan: str | None = None,
        route: str | None = None,
        cost: int = 1,
    ) -> Decision:
        """Count ``cost`` units against every limit of the hit, or none if one refuses."""
        return await self._decide(self._rules.check(key, limits, plan, route, cost, True))

    async def hit_many(
        self, hits: Sequence[tuple[str, Sequence[str | Limit], int]]
    ) -> list[Decision]:
        """Several hits, each ``(key, limits, cost)``, decided together: one round trip on
        Redis, where one task's ``hit`` calls would take one each. Each is atomic on its
        own, as ``hit`` is; raises BackendError if any failed."""
        checks = [self._rules.check(key, tuple(limits), None, None, cost, True)
                  for key, limits, cost in hits]  # fmt: skip
        limited = [check for check in checks if check.limits]
        outcomes = iter(await self.backend.decide_many(limited) if limited else [])
        decisions = []
        for check in checks:
            if not check.limits:
                decisions.append(unlimited(check, self._rules.clock or time.time))
                continue
            outcome = next(outcomes)
            if isinstance(outcome, BackendError):
                raise outcome
            decisions.append(decision_of(check, outcome))
        return decisions

    async def peek(
        self,
        key: str,
        *limits: str | Limit,
        plan: str | None = None,
        route: str | None = None,
        cost: int = 1,
    ) -> Decision:
        """What ``hit`` would decide, counting nothing."""
        return await self._decide(self._rules.check(key, limits, plan, route, cost, False))

    async def _decide(self, check: Check) -> Decision:
        if not check.limits:
            await anyio.lowlevel.checkpoint()
            return unlimited(check, self._rules.clock or time.time)
        return decision_of(check, await self.backend.decide(check))

    async def reset(self, key: str) -> None:
        """Forget every window of ``key``."""
        await self.backend.reset(key)

    async def aclose(self) -> None:
        await self.backend.aclose()

    async def __aenter__(self) -> AsyncLimiter:
        await self.backend.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()
