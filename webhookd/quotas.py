"""The quota gate: counts deliveries against their vendors' webhook quotas before they
are attempted, through the rate limiter's library on the daemon's own Redis client.

What the limits are and what a refusal means is ``webhookd.quota``'s; this module asks
the limiter and keeps two small things in memory: each vendor's quota (its plan read
from the vendor record the limiter service shares, kept ``PLAN_TTL_S``), and where this
process's deferrals for each vendor end. A batch costs one hit per vendor in it; the
hits of several vendors run concurrently, so the limiter coalesces them into one round
trip (two when nothing else is in flight: its first check always goes out alone).

``quota.exceeded`` is announced once per vendor, limit and window across every daemon:
a ``SET NX`` on a guard key decides who writes the log event, the metric and the entry
on ``stream.ops``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import structlog
import trio
from coredis.tokens import PureToken

import fastjson
from ratelimiter import (
    AsyncLimiter,
    AsyncVendorPlans,
    BackendError,
    Limit,
    Policy,
    RateLimiterError,
    load_policy,
)
from ratelimiter import ConfigError as PlansError
from webhookd.catalog import catalog_path
from webhookd.clock import EpochClock
from webhookd.config import QuotaSettings
from webhookd.connection import RedisClient, translated
from webhookd.errors import ConfigError, StoreError, StoreUnavailable
from webhookd.metrics import QUOTA_EXCEEDED
from webhookd.model import Delivery
from webhookd.quota import (
    DAY_S,
    Refusal,
    VendorQuota,
    Verdict,
    reason,
    refused_verdicts,
    vendor_quota,
)

log = structlog.get_logger("webhookd.quotas")

PLAN_TTL_S = 10.0  # how long a vendor's plan is trusted before the record is read again


def load_plans(settings: QuotaSettings) -> Policy:
    """The plans file, checked against ``quotas.default_plan``; ConfigError naming the key."""
    try:
        policy = load_policy(catalog_path(settings.plans))
    except PlansError as exc:
        raise ConfigError(f"quotas.plans: {exc}") from None
    if settings.default_plan is not None and settings.default_plan not in policy.plans:
        known = ", ".join(sorted(policy.plans)) or "none"
        raise ConfigError(
            f"quotas.default_plan: unknown plan {settings.default_plan!r} "
            f"(plans in {settings.plans}: {known})"
        )
    return policy


class Quotas:
    def __init__(
        self,
        client: RedisClient,
        settings: QuotaSettings,
        *,
        clock: EpochClock,
        ops_stream: str,
        key_prefix: str,
        policy: Policy | None = None,
    ) -> None:
        policy = policy or load_plans(settings)
        self._settings = settings
        self._redis = client
        self._clock = clock
        self._ops_stream = ops_stream
        self._guard_prefix = f"{key_prefix}:announced"
        self._limiter = AsyncLimiter(client.wire, plans=policy, clock=clock.now_s,
                                     prefix=settings.limiter_prefix)  # fmt: skip
        self.vendors = AsyncVendorPlans(client, plans=policy, prefix=settings.limiter_prefix)
        self._daily = {name: plan.webhooks_per_day for name, plan in policy.plans.items()}
        self._known: dict[str, tuple[VendorQuota, float]] = {}  # vendor -> quota, read at
        self._horizon: dict[str, float] = {}  # vendor -> end of this process's deferrals
        self._announced: dict[tuple[str, str], int] = {}  # (vendor, limit) -> window announced

    @property
    def plan_names(self) -> list[str]:
        """The plans of the plans file."""
        return sorted(self._daily)

    async def judge(self, deliveries: Sequence[Delivery]) -> list[Verdict]:
        """Count ``deliveries`` against their vendors' quotas: None for each that may go
        now, else what to do with it. Raises StoreUnavailable when Redis fails."""
        groups: dict[str, list[int]] = {}
        for index, delivery in enumerate(deliveries):
            groups.setdefault(delivery.event.vendor, []).append(index)
        verdicts: list[Verdict] = [None] * len(deliveries)
        quotas = [await self.quota_of(vendor) for vendor in groups]
        counted = [(q, groups[q.vendor]) for q in quotas if q.limits or q.closed]
        if not counted:
            return verdicts
        results: list[tuple[int, Refusal | None]] = [(0, None)] * len(counted)

        async def count(slot: int) -> None:
            quota, members = counted[slot]
            results[slot] = await self._count(quota, len(members))

        try:
            retry = await self._count_at_once(counted, results)
        except RateLimiterError as exc:
            raise StoreUnavailable(f"quota check: {exc}") from None
        try:
            if len(retry) == 1:
                await count(retry[0])
            elif retry:
                async with trio.open_nursery() as nursery:
                    for slot in retry:
                        nursery.start_soon(count, slot)
        except* RateLimiterError as group:
            raise StoreUnavailable(f"quota check: {group.exceptions[0]}") from None
        now_s = self._clock.now_s()
        for (quota, members), (granted, refusal) in zip(counted, results, strict=True):
            if refusal is None:
                continue
            refused = members[granted:]
            outcome, self._horizon[quota.vendor] = refused_verdicts(
                quota, refusal, len(refused), now_s=now_s,
                horizon_s=self._horizon.get(quota.vendor, 0.0),
                dead_letter_daily=self._settings.exceeded == "dead_letter",
            )  # fmt: skip
            for index, verdict in zip(refused, outcome, strict=True):
                verdicts[index] = verdict
            await self._announce(quota, refusal.limit, now_s)
        return verdicts

    async def quota_of(self, vendor: str) -> VendorQuota:
        """The vendor's limits, its plan read again once ``PLAN_TTL_S`` has passed."""
        known = self._known.get(vendor)
        now = trio.current_time()
        if known is not None and known[1] > now:
            return known[0]
        own = None
        if self._daily:
            try:
                own = await self.vendors.plan_of(vendor)
            except RateLimiterError as exc:
                raise StoreUnavailable(f"vendor plan of {vendor}: {exc}") from None
        quota = self._quota(vendor, own)
        if own is not None and quota.defaulted:
            log.warning("quota.unknown_plan", vendor=vendor, plan=own, applied=quota.plan)
        self._known[vendor] = (quota, now + PLAN_TTL_S)
        return quota

    def _quota(self, vendor: str, own_plan: str | None) -> VendorQuota:
        return vendor_quota(
            vendor,
            own_plan,
            default_plan=self._settings.default_plan,
            daily_by_plan=self._daily,
            vendor_rate=self._settings.vendor_rate,
        )

    async def _count_at_once(
        self,
        counted: list[tuple[VendorQuota, list[int]]],
        results: list[tuple[int, Refusal | None]],
    ) -> list[int]:
        """Count every vendor's whole batch in one round trip; the slots (indexes into
        ``counted``) refused or closed, which ``_count`` then settles one by one."""
        open_slots = [slot for slot, (quota, _) in enumerate(counted) if not quota.closed]
        wanted = [len(counted[slot][1]) for slot in open_slots]
        hits = [(counted[slot][0].key, counted[slot][0].limits, n)
                for slot, n in zip(open_slots, wanted, strict=True)
                if n <= counted[slot][0].largest_hit]  # fmt: skip
        fits = [slot for slot, n in zip(open_slots, wanted, strict=True)
                if n <= counted[slot][0].largest_hit]  # fmt: skip
        decisions = await self._limiter.hit_many(hits) if hits else []
        for slot, (_, _, n), decision in zip(fits, hits, decisions, strict=True):
            if decision.allowed:
                results[slot] = (n, None)
        return [slot for slot in range(len(counted))
                if slot not in fits or results[slot][0] == 0]  # fmt: skip

    async def _count(self, quota: VendorQuota, wanted: int) -> tuple[int, Refusal | None]:
        """(how many of ``wanted`` deliveries were counted, the refusal of the rest).

        After a partial grant the refusal that led to it is stale (it was for more units,
        before the grant); a peek of one unit tells exactly when the next one fits."""
        if quota.closed:
            return 0, Refusal(quota.daily, float(DAY_S), 1)
        cost = min(wanted, quota.largest_hit)
        refusal = None
        while cost > 0:
            decision = await self._limiter.hit(quota.key, *quota.limits, cost=cost)
            if decision.allowed:
                if cost == wanted:
                    return cost, None
                after = await self._limiter.peek(quota.key, *quota.limits)
                return cost, Refusal(after.binding, after.retry_after, 1)
            refusal = Refusal(decision.binding, decision.retry_after, cost)
            cost = min(decision.remaining, cost - 1)
        return 0, refusal

    async def _announce(self, quota: VendorQuota, limit: Limit | None, now_s: float) -> None:
        """``quota.exceeded``, once per vendor, limit and window across every daemon."""
        window_s = DAY_S if limit is None else limit.window_s
        index = math.floor(now_s / window_s)
        storage = "closed" if limit is None else limit.storage_id
        if self._announced.get((quota.vendor, storage)) == index:
            return
        self._announced[quota.vendor, storage] = index
        guard = f"{self._guard_prefix}:{quota.vendor}:{storage}:{index}"
        data = {
            "plan": quota.plan,
            "limit": None if limit is None else f"{limit.amount}/{limit.unit}",
            "reason": reason(quota, limit),
            "window_reset": (index + 1) * window_s,
        }
        try:
            with translated("announce quota.exceeded"):
                if not await self._redis.set(guard, "1", ex=window_s * 2, condition=PureToken.NX):
                    return
                await self._redis.xadd(self._ops_stream, {
                    "type": "quota.exceeded", "vendor": quota.vendor,
                    "data": fastjson.dumps_text(data), "id": f"quota.exceeded:{guard}",
                })  # fmt: skip
        except StoreError as exc:
            log.warning("quota.announce_failed", vendor=quota.vendor, error=str(exc))
            return
        QUOTA_EXCEEDED.labels("daily" if quota.is_daily(limit) else "rate").inc()
        log.warning("quota.exceeded", vendor=quota.vendor, **data)

    async def usage(self, vendor: str) -> dict[str, Any]:
        """The vendor's plan and what it used of each limit (nothing is counted)."""
        settings = self._settings
        try:
            own = await self.vendors.plan_of(vendor)
        except RateLimiterError as exc:
            raise StoreUnavailable(f"vendor plan of {vendor}: {exc}") from None
        quota = self._quota(vendor, own)

        async def used(limit: Limit | None) -> dict[str, Any] | None:
            if limit is None:
                return None
            decision = await self._limiter.peek(quota.key, limit)
            return {"limit": f"{limit.amount}/{limit.unit}", "amount": limit.amount,
                    "used": limit.amount - decision.remaining, "remaining": decision.remaining,
                    "reset": decision.reset}  # fmt: skip

        try:
            return {
                "vendor": vendor,
                "plan": quota.plan,
                "own_plan": own,
                "default": quota.defaulted,
                "quotas_enabled": settings.enabled,
                "daily_quota": await used(quota.daily),
                "rate": await used(quota.rate),
            }
        except BackendError as exc:
            raise StoreUnavailable(f"vendor usage of {vendor}: {exc}") from None
