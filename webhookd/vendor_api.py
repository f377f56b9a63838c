"""The admin API's vendor routes: vendors, their plans and usage, API keys, the catalog.

Plans, usage and API keys are the limiter's (``ratelimiter.vendors``, ``ratelimiter.keys``,
under ``quotas.limiter_prefix``), so a key made here is one the limiter service accepts
and usage is what the service counted. A vendor's usage shows its webhooks against
webhookd's quotas and its API calls against its plan, with the minute burst's headroom.
A vendor with no plan record is on ``quotas.default_plan`` (none: no API-call figures).
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable
from typing import Any, TypeVar

import structlog

from httpserve import Request, Response
from ratelimiter import RateLimiterError, UnknownApiKey
from ratelimiter.keys import KeyStore
from webhookd.catalog import Catalog, example_body
from webhookd.clock import EpochClock
from webhookd.config import Settings
from webhookd.connection import RedisClient
from webhookd.errors import ConfigError, StoreUnavailable
from webhookd.events import VENDOR_ID
from webhookd.principals import Principal, Scope, not_found
from webhookd.quotas import Quotas, load_plans
from webhookd.registry import Registry

log = structlog.get_logger("webhookd.admin")
T = TypeVar("T")
_NONE: frozenset[str] = frozenset()
_VENDOR = r"/v1/vendors/(?P<vendor>[^/]+)"


class VendorApi:
    def __init__(
        self,
        *,
        registry: Registry,
        quotas: Quotas,
        keys: KeyStore,
        catalog: Catalog,
        clock: EpochClock,
    ) -> None:
        self._registry = registry
        self._quotas = quotas
        self._keys = keys
        self._catalog = catalog
        self._clock = clock

    @property
    def plan_names(self) -> list[str]:
        return self._quotas.plan_names

    def routes(self) -> list[tuple[str, re.Pattern[str], Any, frozenset[str], Scope]]:
        """Method, path, handler, query parameters, scope: rows of the admin route table."""
        return [
            ("GET", re.compile(r"/v1/catalog"), self._catalog_route, _NONE, Scope.OWN),
            ("GET", re.compile(r"/v1/vendors"), self._list, _NONE, Scope.OPERATOR),
            ("GET", re.compile(_VENDOR), self._show, _NONE, Scope.VENDOR),
            ("GET", re.compile(_VENDOR + "/keys"), self._list_keys, _NONE, Scope.VENDOR),
            ("POST", re.compile(_VENDOR + "/keys"), self._create_key, _NONE, Scope.VENDOR),
            ("DELETE", re.compile(_VENDOR + r"/keys/(?P<key_id>[^/]+)"), self._revoke_key, _NONE,
             Scope.VENDOR),
        ]  # fmt: skip

    async def _catalog_route(
        self, request: Request, match: re.Match[str], principal: Principal
    ) -> Response:
        return Response.json(200, [
            {"type": event_type, "description": description, "example": example_body(event_type)}
            for event_type, description in self._catalog.types.items()
        ])  # fmt: skip

    async def _list(self, request: Request, match: re.Match[str], principal: Principal) -> Response:
        plans = await _limiter(self._quotas.vendors.plans())
        endpoints: dict[str, int] = {}
        for endpoint in await self._registry.all():
            endpoints[endpoint.vendor] = endpoints.get(endpoint.vendor, 0) + 1
        keys: dict[str, int] = {}
        for key in await _limiter(self._keys.all()):
            if key.revoked is None:
                keys[key.vendor] = keys.get(key.vendor, 0) + 1
        vendors = sorted({*plans, *endpoints, *keys})
        return Response.json(200, [
            {"vendor": v, "plan": plans.get(v), "endpoints": endpoints.get(v, 0),
             "api_keys": keys.get(v, 0)}
            for v in vendors
        ])  # fmt: skip

    async def _show(self, request: Request, match: re.Match[str], principal: Principal) -> Response:
        vendor = _vendor(match)
        webhooks = await self._quotas.usage(vendor)
        plan = webhooks["plan"]
        calls: list[dict[str, object]] = []
        if plan is not None:
            calls = [u.public() for u in await _limiter(self._quotas.vendors.usage(vendor, plan))]
        burst = [c for c in calls if not str(c["limit"]).endswith("/day")]
        return Response.json(200, {
            "vendor": vendor,
            "plan": plan,
            "own_plan": webhooks["own_plan"],
            "webhooks": {"daily_quota": webhooks["daily_quota"], "rate": webhooks["rate"]},
            "api_calls": calls,
            "burst_headroom": min((int(str(c["remaining"])) for c in burst), default=None),
        })  # fmt: skip

    async def _list_keys(
        self, request: Request, match: re.Match[str], principal: Principal
    ) -> Response:
        vendor = _vendor(match)
        keys = await _limiter(self._keys.all())
        return Response.json(200, [k.public() for k in keys if k.vendor == vendor])

    async def _create_key(
        self, request: Request, match: re.Match[str], principal: Principal
    ) -> Response:
        vendor = _vendor(match)
        try:
            body = json.loads(request.body) if request.body else {}
        except (ValueError, RecursionError):
            return Response.error(400, "invalid_json", "body is not JSON")
        if not isinstance(body, dict) or set(body) - {"plan"}:
            return Response.error(400, "invalid_request", 'body: {"plan": a plan or null}')
        plan = body.get("plan")
        known = self.plan_names
        if plan is not None and (not isinstance(plan, str) or plan not in known):
            return Response.error(
                400, "invalid_request", f"plan: one of {', '.join(sorted(known))}, or null"
            )
        key, record = await _limiter(self._keys.create(vendor, plan, now_s=self._clock.now_s()))
        return Response.json(201, {**record.public(), "key": key})

    async def _revoke_key(
        self, request: Request, match: re.Match[str], principal: Principal
    ) -> Response:
        vendor, key_id = _vendor(match), match["key_id"]
        try:
            record = await _limiter(self._keys.get(key_id))
        except UnknownApiKey:
            record = None
        if record is None or record.vendor != vendor or not key_id.startswith("key_"):
            raise not_found(f"API key {key_id} of {vendor}")
        revoked = await _limiter(self._keys.revoke(key_id, now_s=self._clock.now_s()))
        return Response.json(200, revoked.public())


def _vendor(match: re.Match[str]) -> str:
    vendor = match["vendor"]
    if not VENDOR_ID.fullmatch(vendor):
        raise not_found(f"vendor {vendor}")
    return vendor


async def _limiter(call: Awaitable[T]) -> T:
    """The limiter's answer; its Redis failures become ours (the admin API answers 503)."""
    try:
        return await call
    except UnknownApiKey:
        raise
    except RateLimiterError as exc:
        raise StoreUnavailable(f"limiter: {exc}") from None


def vendor_api(
    client: RedisClient, settings: Settings, registry: Registry, clock: EpochClock
) -> VendorApi | None:
    """The vendor routes on the daemon's client; None (no such routes) when the plans
    file cannot be read and quotas are off (with quotas on, start-up refused it)."""
    try:
        policy = load_plans(settings.quotas)
    except ConfigError as exc:
        log.warning("admin.vendor_routes_off", error=str(exc))
        return None
    quotas = Quotas(client, settings.quotas, clock=clock, ops_stream=settings.stream.ops,
                    key_prefix=settings.redis.key_prefix, policy=policy)  # fmt: skip
    keys = KeyStore(client, prefix=settings.quotas.limiter_prefix)
    return VendorApi(registry=registry, quotas=quotas, keys=keys, catalog=registry.catalog,
                     clock=clock)  # fmt: skip
