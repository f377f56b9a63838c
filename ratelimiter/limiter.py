"""``Limiter``, the synchronous front: memory or redis-py.

What it shares with ``AsyncLimiter`` is in ``hits.py``; this module is the edge that
reads the wall clock, for a hit with no limit (which no store times).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from types import TracebackType

import redis

from ratelimiter.backend import Backend, Check, split_url
from ratelimiter.decision import Decision
from ratelimiter.errors import BackendError
from ratelimiter.hits import Clock, PlansSource, Rules, decision_of, unlimited
from ratelimiter.limit import Limit
from ratelimiter.memory import MemoryBackend
from ratelimiter.policy import Plan, Policy
from ratelimiter.sync_redis import RedisBackend, RedisClient


class Limiter:
    """Synchronous rate limiter; thread-safe.

    ``backend`` is a store, or the application's ``redis.Redis`` / ``redis.RedisCluster``
    (keys go under ``prefix``), or None for the in-process memory store. ``plans`` is a
    plans file or a ``Policy`` (default: the shipped ``config/plans.toml``); ``routes``
    adds route limits. ``clock`` replaces the store's clock (tests).
    """

    def __init__(
        self,
        backend: Backend | RedisClient | None = None,
        *,
        plans: PlansSource = None,
        routes: Mapping[str, str | Limit] | None = None,
        clock: Clock | None = None,
        prefix: str = "rl",
    ) -> None:
        if backend is None:
            backend = MemoryBackend()
        elif isinstance(backend, redis.Redis | redis.RedisCluster):
            backend = RedisBackend(backend, prefix=prefix)
        self.backend: Backend = backend
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
    ) -> Limiter:
        """A limiter on ``memory://``, ``redis://``, ``rediss://`` or ``redis+cluster://``."""
        kind, client_url = split_url(url)
        backend: Backend
        if kind == "memory":
            backend = MemoryBackend()
        else:
            try:
                client: RedisClient = (
                    redis.Redis.from_url(client_url)
                    if kind == "redis"
                    else redis.RedisCluster.from_url(client_url)
                )
            except (redis.RedisError, OSError, ValueError) as error:
                raise BackendError(f"cannot use Redis at {url!r}: {error}") from error
            backend = RedisBackend(client, prefix=prefix, owns_client=True)
        return cls(backend, plans=plans, routes=routes, clock=clock)

    @property
    def policy(self) -> Policy:
        return self._rules.policy

    def plan(self, name: str) -> Plan:
        """A plan by name (e.g. to read ``webhooks_per_day``); ``UnknownPlan`` if none."""
        return self._rules.policy.plan(name)

    def hit(
        self,
        key: str,
        *limits: str | Limit,
        plan: str | None = None,
        route: str | None = None,
        cost: int = 1,
    ) -> Decision:
        """Count ``cost`` units against every limit of the hit, or none if one refuses."""
        return self._decide(self._rules.check(key, limits, plan, route, cost, True))

    def peek(
        self,
        key: str,
        *limits: str | Limit,
        plan: str | None = None,
        route: str | None = None,
        cost: int = 1,
    ) -> Decision:
        """What ``hit`` would decide, counting nothing."""
        return self._decide(self._rules.check(key, limits, plan, route, cost, False))

    def _decide(self, check: Check) -> Decision:
        if not check.limits:
            return unlimited(check, self._rules.clock or time.time)
        return decision_of(check, self.backend.decide(check))

    def reset(self, key: str) -> None:
        """Forget every window of ``key``."""
        self.backend.reset(key)

    def close(self) -> None:
        """Release the store (a Redis client the limiter created itself is closed)."""
        self.backend.close()

    def __enter__(self) -> Limiter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
