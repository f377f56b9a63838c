"""A vendor's plan: one record per vendor, read by the limiter service and by webhookd.

Redis layout, under the limiter's prefix (``rl``)::

    rl:vendor:<vendor>     hash   plan, updated (unix seconds)

A vendor with no record has no plan of its own; whoever reads it applies a default
(the service its ``service.default_plan``). All of a vendor's API keys count against
its plan under one counter key, ``quota_key(vendor)``: five keys share one quota.
``usage`` reads that counter without counting anything.

``VendorPlans`` is the synchronous front (redis-py), ``AsyncVendorPlans`` the
asynchronous one (coredis, trio or asyncio); both take the application's client,
which stays the application's to close. Every Redis failure comes out as
``BackendError``.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import anyio
import redis
from coredis.exceptions import RedisError

from ratelimiter.async_limiter import AsyncLimiter
from ratelimiter.async_redis import AsyncRedisClient
from ratelimiter.decision import Decision
from ratelimiter.errors import BackendError, InvalidRequest
from ratelimiter.hits import PlansSource
from ratelimiter.limit import Limit
from ratelimiter.limiter import Limiter
from ratelimiter.sync_redis import RedisClient

PLAN_FIELD = "plan"
MAX_VENDOR_CHARS = 256
_ASYNC_FAILURES = (RedisError, OSError, anyio.BrokenResourceError, anyio.ClosedResourceError)


def quota_key(vendor: str) -> str:
    """The counter key of a vendor's plan quota, shared by all of its API keys."""
    return f"vendor:{vendor}"


def record_key(prefix: str, vendor: str) -> str:
    """The Redis hash holding ``vendor``'s plan."""
    return f"{prefix}:vendor:{vendor}"


@dataclass(frozen=True, slots=True)
class LimitUsage:
    """How much of one limit of a plan a vendor has used; ``reset`` in unix seconds."""

    limit: str
    policy: str
    amount: int
    used: int
    remaining: int
    reset: int

    def public(self) -> dict[str, object]:
        return {
            "limit": self.limit,
            "policy": self.policy,
            "amount": self.amount,
            "used": self.used,
            "remaining": self.remaining,
            "reset": self.reset,
        }


def _vendor(vendor: str) -> str:
    if not isinstance(vendor, str) or not vendor or len(vendor) > MAX_VENDOR_CHARS:
        raise InvalidRequest(f"a vendor id is 1 to {MAX_VENDOR_CHARS} characters, got {vendor!r}")
    return vendor


def _usage(limit: Limit, decision: Decision) -> LimitUsage:
    return LimitUsage(
        str(limit), limit.policy, limit.amount, limit.amount - decision.remaining,
        decision.remaining, decision.reset,
    )  # fmt: skip


def _text(value: str | bytes | None) -> str | None:
    if isinstance(value, bytes):
        value = value.decode()
    return value or None


class VendorPlans:
    """The vendor → plan record and vendors' usage, on redis-py."""

    def __init__(self, client: RedisClient, *, plans: PlansSource = None, prefix: str = "rl"):
        self._client = client
        self._prefix = prefix
        self._limiter = Limiter(client, plans=plans, prefix=prefix)

    def set_plan(self, vendor: str, plan: str) -> None:
        """Put ``vendor`` on ``plan`` (``UnknownPlan`` unless the plans file has it)."""
        self._limiter.plan(plan)
        fields = {PLAN_FIELD: plan, "updated": str(int(time.time()))}
        with _translated_sync():
            self._client.hset(record_key(self._prefix, _vendor(vendor)), mapping=fields)

    def plan_of(self, vendor: str) -> str | None:
        """The plan of ``vendor``'s record; None when it has none."""
        with _translated_sync():
            found: Any = self._client.hget(record_key(self._prefix, _vendor(vendor)), PLAN_FIELD)
        return _text(found)

    def usage(self, vendor: str, plan: str) -> tuple[LimitUsage, ...]:
        """Per limit of ``plan``: what ``vendor``'s keys used of it (nothing is counted)."""
        key = quota_key(_vendor(vendor))
        return tuple(
            _usage(limit, self._limiter.peek(key, limit))
            for limit in self._limiter.plan(plan).limits
        )


class AsyncVendorPlans:
    """The vendor → plan record and vendors' usage, on coredis (trio or asyncio)."""

    def __init__(
        self, client: AsyncRedisClient, *, plans: PlansSource = None, prefix: str = "rl"
    ) -> None:
        self._client: Any = client
        self._prefix = prefix
        self._limiter = AsyncLimiter(client, plans=plans, prefix=prefix)

    async def set_plan(self, vendor: str, plan: str) -> None:
        """Put ``vendor`` on ``plan`` (``UnknownPlan`` unless the plans file has it)."""
        self._limiter.plan(plan)
        fields = {PLAN_FIELD: plan, "updated": str(int(time.time()))}
        with _translated_async():
            await self._client.hset(record_key(self._prefix, _vendor(vendor)), fields)

    async def plan_of(self, vendor: str) -> str | None:
        """The plan of ``vendor``'s record; None when it has none."""
        with _translated_async():
            found = await self._client.hget(record_key(self._prefix, _vendor(vendor)), PLAN_FIELD)
        return _text(found)

    async def plans(self) -> dict[str, str]:
        """Every vendor that has a record, with its plan (SCAN: for listings, not hot paths)."""
        head = record_key(self._prefix, "")
        found: dict[str, str] = {}
        with _translated_async():
            async for name in self._client.scan_iter(match=f"{head}*", type_="hash"):
                key = _text(name) or ""
                plan = _text(await self._client.hget(key, PLAN_FIELD))
                if plan is not None:
                    found[key[len(head) :]] = plan
        return dict(sorted(found.items()))

    async def usage(self, vendor: str, plan: str) -> tuple[LimitUsage, ...]:
        """Per limit of ``plan``: what ``vendor``'s keys used of it (nothing is counted)."""
        key = quota_key(_vendor(vendor))
        return tuple(
            [
                _usage(limit, await self._limiter.peek(key, limit))
                for limit in self._limiter.plan(plan).limits
            ]
        )


@contextlib.contextmanager
def _translated_sync() -> Iterator[None]:
    try:
        yield
    except (redis.RedisError, OSError) as error:
        raise BackendError(f"Redis failed: {error}") from error


@contextlib.contextmanager
def _translated_async() -> Iterator[None]:
    try:
        yield
    except _ASYNC_FAILURES as error:
        raise BackendError(f"Redis failed: {error}") from error
