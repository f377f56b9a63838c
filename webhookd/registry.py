"""Endpoints in Redis, and the daemon's in-process view of them.

``p:endpoints`` (HASH id -> endpoint JSON) holds every endpoint; ``p:endpoints:version``
counts changes, so a daemon re-reads the table only when it moved.
"""

from __future__ import annotations

import base64
import secrets
from collections import defaultdict
from collections.abc import Sequence

import coredis

from webhookd.config import Settings
from webhookd.endpoints import Endpoint, UrlPolicy, parse_patterns, validate_url
from webhookd.errors import EndpointError, EndpointNotFound
from webhookd.events import VENDOR_ID, format_timestamp
from webhookd.signing import SECRET_MIN_BYTES, new_secret, secret_key

ROTATION_GRACE_S = 24 * 3600.0


def new_endpoint_id() -> str:
    return "ep_" + base64.b32encode(secrets.token_bytes(10)).decode().lower()


def random_secret() -> str:
    return new_secret(secrets.token_bytes(SECRET_MIN_BYTES))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def registry_for(client: coredis.Redis[bytes], settings: Settings) -> Registry:
    policy = UrlPolicy(
        require_https=settings.delivery.require_https,
        allow_private_targets=settings.delivery.allow_private_targets,
    )
    return Registry(client, settings.redis.key_prefix, policy)


class Registry:
    def __init__(self, client: coredis.Redis[bytes], key_prefix: str, policy: UrlPolicy) -> None:
        self._redis = client
        self._key = f"{key_prefix}:endpoints"
        self._version_key = f"{key_prefix}:endpoints:version"
        self.policy = policy

    async def add(
        self,
        vendor: str,
        url: str,
        events: str | Sequence[str] = "*",
        secret: str | None = None,
        *,
        now_s: float,
    ) -> Endpoint:
        if not VENDOR_ID.fullmatch(vendor):
            raise EndpointError(f"vendor: {vendor!r} is not a valid vendor id")
        if secret is not None:
            secret_key(secret)
        endpoint = Endpoint(
            id=new_endpoint_id(),
            vendor=vendor,
            url=validate_url(url, self.policy),
            secret=secret or random_secret(),
            events=parse_patterns(events),
            created_at=format_timestamp(now_s),
        )
        await self.save(endpoint)
        return endpoint

    async def save(self, endpoint: Endpoint) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(self._key, {endpoint.id: endpoint.to_json()})
            pipe.incr(self._version_key)

    async def get(self, endpoint_id: str) -> Endpoint:
        raw = await self._redis.hget(self._key, endpoint_id)
        if raw is None:
            raise EndpointNotFound(f"no endpoint with id {endpoint_id!r}")
        return Endpoint.from_json(raw)

    async def all(self) -> list[Endpoint]:
        raw = await self._redis.hgetall(self._key)
        endpoints = [Endpoint.from_json(value) for value in raw.values()]
        return sorted(endpoints, key=lambda e: (e.vendor, e.created_at, e.id))

    async def remove(self, endpoint_id: str) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            removed = pipe.hdel(self._key, [endpoint_id])
            pipe.incr(self._version_key)
        if not await removed:
            raise EndpointNotFound(f"no endpoint with id {endpoint_id!r}")

    async def set_enabled(self, endpoint_id: str, enabled: bool, reason: str = "") -> Endpoint:
        endpoint = await self.get(endpoint_id)
        changed = endpoint.enabled_again() if enabled else endpoint.disabled(reason or "disabled")
        await self.save(changed)
        return changed

    async def rotate_secret(
        self, endpoint_id: str, *, now_s: float, grace_s: float = ROTATION_GRACE_S
    ) -> Endpoint:
        endpoint = (await self.get(endpoint_id)).rotated(random_secret(), now_s, grace_s)
        await self.save(endpoint)
        return endpoint

    async def version(self) -> int:
        return int(await self._redis.get(self._version_key) or 0)


class EndpointTable:
    """The daemon's copy of the registry, re-read only when its version changed."""

    def __init__(self, registry: Registry) -> None:
        self._registry = registry
        self._version = -1
        self._by_id: dict[str, Endpoint] = {}
        self._by_vendor: dict[str, list[Endpoint]] = {}

    async def refresh(self) -> None:
        version = await self._registry.version()
        if version == self._version:
            return
        endpoints = await self._registry.all()
        by_vendor: defaultdict[str, list[Endpoint]] = defaultdict(list)
        for endpoint in endpoints:
            by_vendor[endpoint.vendor].append(endpoint)
        self._by_id = {e.id: e for e in endpoints}
        self._by_vendor = dict(by_vendor)
        self._version = version

    def for_event(self, vendor: str, event_type: str) -> list[Endpoint]:
        return [e for e in self._by_vendor.get(vendor, ()) if e.wants(event_type)]

    def get(self, endpoint_id: str) -> Endpoint | None:
        return self._by_id.get(endpoint_id)

    def forget(self, endpoint: Endpoint) -> None:
        """Drop a just-disabled endpoint at once, before the next refresh."""
        self._by_id[endpoint.id] = endpoint
        self._by_vendor[endpoint.vendor] = [
            endpoint if e.id == endpoint.id else e for e in self._by_vendor.get(endpoint.vendor, [])
        ]
