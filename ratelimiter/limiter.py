"""``Limiter``, the synchronous front (memory or redis-py), and what it shares with
``AsyncLimiter``: turning ``hit`` arguments into a check, and an outcome into a decision.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType

import redis

from ratelimiter.backend import Backend, Check, Outcome
from ratelimiter.decision import Decision, decide
from ratelimiter.errors import BackendError, ConfigError, InvalidRequest
from ratelimiter.limit import Limit
from ratelimiter.memory import MemoryBackend
from ratelimiter.policy import Plan, Policy, load_policy
from ratelimiter.sync_redis import RedisBackend, RedisClient

Clock = Callable[[], float]
"""Unix time in seconds; injected for tests, else the store's own clock is used."""

PlansSource = str | Path | Policy | None


class Rules:
    """The plans, routes and clock of a limiter, shared by the sync and async fronts."""

    def __init__(
        self,
        plans: PlansSource,
        routes: Mapping[str, str | Limit] | None,
        clock: Clock | None,
    ) -> None:
        policy = plans if isinstance(plans, Policy) else load_policy(plans)
        self.policy = policy.with_routes(routes) if routes else policy
        self.clock = clock
        self._limits_for = functools.lru_cache(maxsize=1024)(self.policy.limits_for)

    def check(
        self,
        key: str,
        limits: tuple[str | Limit, ...],
        plan: str | None,
        route: str | None,
        cost: int,
        consume: bool,
    ) -> Check:
        if not isinstance(key, str) or not key:
            raise InvalidRequest(f"a key must be a non-empty string, got {key!r}")
        if type(cost) is not int or cost < 1:
            raise InvalidRequest(f"cost must be a positive integer, got {cost!r}")
        now_ms = None if self.clock is None else round(self.clock() * 1000)
        return Check(key, self._limits_for(limits, plan, route), cost, consume, now_ms)

    def unlimited(self, check: Check) -> Decision:
        """The decision of a hit with no limit at all, taken without the store."""
        now_ms = round(time.time() * 1000) if check.now_ms is None else check.now_ms
        return decide((), (), True, now_ms)


def decision(check: Check, outcome: Outcome) -> Decision:
    return decide(check.limits, outcome.states, outcome.allowed, outcome.now_ms)


def split_url(url: str) -> tuple[str, str]:
    """``(kind, client URL)``: kind is memory, redis or cluster."""
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
            return self._rules.unlimited(check)
        return decision(check, self.backend.decide(check))

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
