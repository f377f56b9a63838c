"""``webhookd vendor``: vendors' plans and webhook quotas, on the plan record the limiter
service shares (``ratelimiter vendor set-plan`` writes the same one)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import click

from ratelimiter import Policy, RateLimiterError
from webhookd.cli import config_failure, echo_json, fail, with_client
from webhookd.clock import EpochClock
from webhookd.config import Settings
from webhookd.connection import RedisClient
from webhookd.errors import ConfigError, StoreError, StoreUnavailable
from webhookd.events import VENDOR_ID
from webhookd.quotas import Quotas, load_plans
from webhookd.store import store_for

T = TypeVar("T")


@click.group()
def vendor() -> None:
    """Vendors' plans and webhook quotas (the plan record the limiter service shares)."""


def plans_of(settings: Settings) -> Policy:
    try:
        return load_plans(settings.quotas)
    except ConfigError as exc:
        config_failure(exc)


def with_quotas(settings: Settings, action: Callable[[Quotas, RedisClient], Awaitable[T]]) -> T:
    """Run one operation with the quotas as configured (plans file checked first)."""
    policy = plans_of(settings)

    async def run(client: RedisClient) -> T:
        quotas = Quotas(client, settings.quotas, clock=EpochClock(), ops_stream=settings.stream.ops,
                        key_prefix=settings.redis.key_prefix, policy=policy)  # fmt: skip
        return await action(quotas, client)

    try:
        return with_client(settings, run)
    except StoreError as exc:
        fail(str(exc))


@vendor.command("set-plan")
@click.argument("vendor_id")
@click.argument("plan")
@click.pass_obj
def vendor_set_plan(settings: Settings, vendor_id: str, plan: str) -> None:
    """Put a vendor on a plan of quotas.plans (the record `ratelimiter vendor set-plan`
    writes); its webhooks_per_day becomes the vendor's daily webhook quota."""

    if not VENDOR_ID.fullmatch(vendor_id):
        raise click.BadParameter(f"{vendor_id!r} is not a vendor id", param_hint="'VENDOR_ID'")

    async def set_plan(quotas: Quotas, _: RedisClient) -> None:
        try:
            await quotas.vendors.set_plan(vendor_id, plan)
        except RateLimiterError as exc:  # the plan was checked: Redis failed
            raise StoreUnavailable(f"set the plan of {vendor_id}: {exc}") from None

    known = plans_of(settings).plans
    if plan not in known:
        message = f"unknown plan {plan!r} (plans in {settings.quotas.plans}: {', '.join(known)})"
        raise click.BadParameter(message, param_hint="'PLAN'")
    with_quotas(settings, set_plan)
    echo_json({"vendor": vendor_id, "plan": plan})


@vendor.command("show")
@click.argument("vendor_id")
@click.pass_obj
def vendor_show(settings: Settings, vendor_id: str) -> None:
    """Print a vendor's plan, its webhook usage today and this minute, and how many of its
    deliveries wait deferred, as JSON."""

    async def show(quotas: Quotas, client: RedisClient) -> dict[str, Any]:
        shown: dict[str, Any] = await quotas.usage(vendor_id)
        store = store_for(client, settings)
        shown["deferred"] = await store.deferred(vendor_id)
        return shown

    echo_json(with_quotas(settings, show))
