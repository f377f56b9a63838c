"""Endpoints in Redis, and the daemon's in-process view of them.

``p:endpoints`` (HASH id -> endpoint JSON, secrets sealed by the vault) holds every
endpoint; ``{p:endpoints}:version`` is a random token replaced on every change, so a
daemon re-reads the table only when it moved (a token, not a counter: a Redis that comes
back empty and counts again from 0 would repeat old versions). The two share a slot
(the version's hash tag is the table's name), so writing both in one transaction works
on Redis Cluster too; every daemon reads them with plain commands, from whichever
partition's work needs them.

Pauses (a 429 or 503 with Retry-After) are operational state, not configuration, and
are kept beside the table: ``{p:endpoints}:paused`` (HASH id -> JSON ``until``, epoch
seconds, and ``reason``) with its own token, ``{p:endpoints}:paused:version``. A pause
neither re-reads every endpoint on every daemon nor races an operator's edit of the
record; daemons read both tokens with one MGET and the pauses only when theirs moved.

Endpoint health is kept the same way: ``{p:endpoints}:failing`` (HASH id -> JSON
``since``, epoch seconds of the first failed attempt in a row) with its token
``{p:endpoints}:failing:version``. The first daemon to see an endpoint fail writes
``since`` (HSETNX: later failures keep it); the first success anywhere drops it; an
endpoint failing for ``health.disable_after`` is disabled. State changes of an endpoint
(disable, enable, an operator's edit) are compare-and-swaps of its record
(``lua/swap_endpoint.lua``): of several daemons disabling one endpoint exactly one wins,
and the winner alone writes ``endpoint.disabled`` to the ops stream.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import secrets
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

import structlog

from webhookd import ops
from webhookd.catalog import Catalog, load_catalog
from webhookd.config import Settings
from webhookd.connection import RedisClient, lua_script, translated
from webhookd.endpoints import (
    SIGNING_SCHEMES,
    Endpoint,
    EndpointTls,
    UrlPolicy,
    parse_patterns,
    validate_url,
)
from webhookd.errors import EndpointError, EndpointNotFound, StoreError
from webhookd.events import VENDOR_ID, Event, format_timestamp
from webhookd.options import NO_OPTIONS, DeliveryOptions, delivery_options
from webhookd.signing import ED25519_SEED_BYTES, SECRET_MIN_BYTES, new_secret, new_signing_key
from webhookd.signing import secret_key as check_secret
from webhookd.tls import endpoint_context
from webhookd.vault import Vault, open_vault

log = structlog.get_logger("webhookd.registry")

ROTATION_GRACE_S = 24 * 3600.0


def new_endpoint_id() -> str:
    return "ep_" + base64.b32encode(secrets.token_bytes(10)).decode().lower()


def random_secret() -> str:
    return new_secret(secrets.token_bytes(SECRET_MIN_BYTES))


def random_signing_key() -> str:
    return new_signing_key(secrets.token_bytes(ED25519_SEED_BYTES))


def registry_for(
    client: RedisClient, settings: Settings, clock: Callable[[], float] = time.time
) -> Registry:
    """The registry as configured: URL policy, event catalog, master key, rotation grace."""
    policy = UrlPolicy(
        require_https=settings.delivery.require_https,
        allow_private_targets=settings.delivery.allow_private_targets,
    )
    return Registry(
        client,
        settings.redis.key_prefix,
        policy,
        vault=open_vault(settings.secrets, settings.redis),
        catalog=load_catalog(settings.events.catalog),
        rotation_grace_s=settings.delivery.rotation_grace_s,
        clock=clock,
        ops_stream=settings.stream.ops,
    )


def endpoint_tls(
    ca_cert: str | None, client_cert: str | None, client_key: str | None
) -> EndpointTls | None:
    """Checked TLS settings (they must load); None when the endpoint brings none."""
    if not (ca_cert or client_cert or client_key):
        return None
    if bool(client_cert) != bool(client_key):
        raise EndpointError("tls: a client certificate needs its key, and a key its certificate")
    tls = EndpointTls(ca_cert or None, client_cert or None, client_key or None)
    endpoint_context(tls)  # raises EndpointError if the PEM does not load
    return tls


class Registry:
    def __init__(
        self,
        client: RedisClient,
        key_prefix: str,
        policy: UrlPolicy,
        *,
        vault: Vault,
        catalog: Catalog,
        rotation_grace_s: float = ROTATION_GRACE_S,
        clock: Callable[[], float] = time.time,
        ops_stream: str | None = None,
    ) -> None:
        self._redis = client
        self._key = f"{key_prefix}:endpoints"
        self._version_key = "{" + self._key + "}:version"
        self._paused_key = "{" + self._key + "}:paused"
        self._pauses_version_key = "{" + self._key + "}:paused:version"
        self._failing_key = "{" + self._key + "}:failing"
        self._failing_version_key = "{" + self._key + "}:failing:version"
        self._swap = client.register_script(lua_script("swap_endpoint.lua"))
        self.ops_stream = ops_stream
        self.clock = clock  # epoch seconds: which pauses are still on
        self.policy = policy
        self.vault = vault
        self.catalog = catalog
        self.rotation_grace_s = rotation_grace_s

    def patterns(self, events: str | Sequence[str]) -> tuple[str, ...]:
        """Subscription patterns, each matching at least one catalogued event type."""
        patterns = parse_patterns(events)
        self.catalog.check(patterns)
        return patterns

    async def add(
        self,
        vendor: str,
        url: str,
        events: str | Sequence[str] = "*",
        secret: str | None = None,
        *,
        now_s: float,
        signing: str = "hmac",
        tls: EndpointTls | None = None,
        options: DeliveryOptions = NO_OPTIONS,
    ) -> Endpoint:
        if not VENDOR_ID.fullmatch(vendor):
            raise EndpointError(f"vendor: {vendor!r} is not a valid vendor id")
        if signing not in SIGNING_SCHEMES:
            raise EndpointError(f"signing: {signing!r} is not one of {', '.join(SIGNING_SCHEMES)}")
        if secret is not None:
            check_secret(secret)
        endpoint = Endpoint(
            id=new_endpoint_id(),
            vendor=vendor,
            url=validate_url(url, self.policy),
            secret=secret or random_secret(),
            events=self.patterns(events),
            created_at=format_timestamp(now_s),
            signing_key=random_signing_key() if signing == "ed25519" else None,
            tls=tls,
            options=options,
        )
        await self.save(endpoint)
        return endpoint

    async def save(self, endpoint: Endpoint) -> None:
        with translated("save endpoint"):
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.hset(self._key, {endpoint.id: endpoint.to_json(self.vault)})
                pipe.set(self._version_key, secrets.token_hex(8))

    async def get(self, endpoint_id: str) -> Endpoint:
        """The endpoint, with its pause if one is on."""
        return (await self._read(endpoint_id))[1]

    async def _read(self, endpoint_id: str) -> tuple[str, Endpoint]:
        """The stored record (what a swap compares) and the endpoint it holds."""
        with translated("read endpoint"):
            raw = await self._redis.hget(self._key, endpoint_id)
            paused = await self._redis.hget(self._paused_key, endpoint_id)
        if raw is None:
            raise EndpointNotFound(f"no endpoint with id {endpoint_id!r}")
        until = _pause_end(paused) if paused is not None else None
        if until is not None and until <= self.clock():
            until = None
        endpoint = Endpoint.from_json(raw, self.vault)
        return _text(raw), dataclasses.replace(endpoint, paused_until=until)

    async def _swapped(self, endpoint_id: str, read: str, endpoint: Endpoint) -> bool:
        """Store ``endpoint`` if its record is still ``read``; False if it moved meanwhile."""
        keys = [self._key, self._version_key, self._failing_key, self._failing_version_key]
        with translated("swap endpoint"):
            done: int = await self._swap(
                keys=keys,
                args=[endpoint_id, read, endpoint.to_json(self.vault), secrets.token_hex(8)],
            )
        return bool(done)

    async def _changed(
        self, endpoint_id: str, change: Callable[[Endpoint], Endpoint]
    ) -> tuple[Endpoint, Endpoint]:
        """(before, after) of applying ``change`` to the endpoint as stored, atomically."""
        while True:
            read, before = await self._read(endpoint_id)
            after = change(before)
            if after == before or await self._swapped(endpoint_id, read, after):
                await self._announce(before, after)
                return before, after

    async def _announce(self, before: Endpoint, after: Endpoint) -> None:
        """``endpoint.disabled`` / ``endpoint.enabled`` for a change this call made; a
        failure to write it is logged (the change itself has landed)."""
        if before.enabled == after.enabled or self.ops_stream is None:
            return
        now_s = self.clock()
        notice = (
            ops.endpoint_enabled(after, format_timestamp(now_s), int(now_s * 1000))
            if after.enabled
            else ops.endpoint_disabled(after, int(now_s * 1000))
        )
        try:
            await ops.emit(self._redis, self.ops_stream, notice)
        except StoreError as exc:
            log.warning("endpoint.announce_failed", endpoint_id=after.id,
                        type=notice["type"], error=str(exc))  # fmt: skip
            return
        log.info(notice["type"], endpoint_id=after.id, vendor=after.vendor,
                 reason=after.disabled_by, detail=after.disabled_reason)  # fmt: skip

    async def all(self) -> list[Endpoint]:
        with translated("read endpoints"):
            raw = await self._redis.hgetall(self._key)
        pauses = await self.pauses()
        endpoints = [Endpoint.from_json(value, self.vault) for value in raw.values()]
        endpoints = [
            dataclasses.replace(e, paused_until=pauses[e.id]) if e.id in pauses else e
            for e in endpoints
        ]
        return sorted(endpoints, key=lambda e: (e.vendor, e.created_at, e.id))

    async def subscribed(self, event: Event) -> list[str]:
        """Ids of the endpoints subscribed to the event now, disabled ones too."""
        return [e.id for e in await self.all() if e.vendor == event.vendor
                and e.subscribes(event.type)]  # fmt: skip

    async def pause(self, endpoint_id: str, until_s: float, reason: str) -> None:
        """Hold deliveries to the endpoint until ``until_s`` (epoch); pauses already over
        are dropped on the way."""
        now_s = self.clock()
        with translated("pause endpoint"):
            stored = await self._redis.hgetall(self._paused_key)
            over = [_text(k) for k, v in stored.items() if (_pause_end(v) or 0.0) <= now_s]
            async with self._redis.pipeline(transaction=True) as pipe:
                if over:
                    pipe.hdel(self._paused_key, over)
                pause = json.dumps({"until": until_s, "reason": reason})
                pipe.hset(self._paused_key, {endpoint_id: pause})
                pipe.set(self._pauses_version_key, secrets.token_hex(8))

    async def pauses(self) -> dict[str, float]:
        """Endpoint id -> end of its pause, for pauses still on."""
        with translated("read pauses"):
            stored = await self._redis.hgetall(self._paused_key)
        now_s = self.clock()
        ends = {_text(k): _pause_end(v) for k, v in stored.items()}
        return {k: end for k, end in ends.items() if end is not None and end > now_s}

    async def remove(self, endpoint_id: str) -> None:
        with translated("remove endpoint"):
            async with self._redis.pipeline(transaction=True) as pipe:
                removed = pipe.hdel(self._key, [endpoint_id])
                pipe.hdel(self._paused_key, [endpoint_id])
                pipe.set(self._version_key, secrets.token_hex(8))
            gone = await removed
        if not gone:
            raise EndpointNotFound(f"no endpoint with id {endpoint_id!r}")

    async def set_enabled(
        self,
        endpoint_id: str,
        enabled: bool,
        reason: str = "",
        *,
        by: str = "operator",
        last_status: int | None = None,
        last_error: str | None = None,
    ) -> Endpoint:
        """Enable or disable the endpoint (a no-op if it already is); the change, when
        this call made it, is announced on the ops stream."""
        at = format_timestamp(self.clock())

        def change(endpoint: Endpoint) -> Endpoint:
            if endpoint.enabled == enabled:
                return endpoint
            if enabled:
                return endpoint.enabled_again()
            return endpoint.disabled(reason or "disabled by operator", by=by, at=at,
                                     last_status=last_status, last_error=last_error)  # fmt: skip

        return (await self._changed(endpoint_id, change))[1]

    async def note_failing(self, endpoint_id: str, since_s: float) -> float:
        """The endpoint failed: the start of its run of failures (this one's, unless
        another attempt started the run already)."""
        with translated("note failing endpoint"):
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.hsetnx(self._failing_key, endpoint_id, json.dumps({"since": since_s}))
                pipe.set(self._failing_version_key, secrets.token_hex(8))
                stored = pipe.hget(self._failing_key, endpoint_id)
            value = await stored
        return since_s if value is None else (_failing_since(value) or since_s)

    async def clear_failing(self, endpoint_id: str) -> None:
        """The endpoint answered with success: its run of failures is over."""
        with translated("clear failing endpoint"):
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.hdel(self._failing_key, [endpoint_id])
                pipe.set(self._failing_version_key, secrets.token_hex(8))

    async def failing(self) -> dict[str, float]:
        """Endpoint id -> start of its run of failed attempts."""
        with translated("read failing endpoints"):
            stored = await self._redis.hgetall(self._failing_key)
        since = {_text(k): _failing_since(v) for k, v in stored.items()}
        return {k: v for k, v in since.items() if v is not None}

    async def update(self, endpoint_id: str, changes: Mapping[str, Any]) -> Endpoint:
        """Apply an operator's changes (url, events, enabled, TLS, delivery options), each
        checked as on add."""
        at = format_timestamp(self.clock())

        def change(endpoint: Endpoint) -> Endpoint:
            return self._edited(endpoint, changes, at)

        return (await self._changed(endpoint_id, change))[1]

    def _edited(self, endpoint: Endpoint, changes: Mapping[str, Any], at: str) -> Endpoint:
        endpoint = dataclasses.replace(
            endpoint, options=delivery_options(changes, endpoint.options)
        )
        if "url" in changes:
            if not isinstance(changes["url"], str):
                raise EndpointError("url must be a string")
            endpoint = dataclasses.replace(endpoint, url=validate_url(changes["url"], self.policy))
        if "events" in changes:
            if not isinstance(changes["events"], str | list):
                raise EndpointError("events must be a list of patterns")
            endpoint = dataclasses.replace(endpoint, events=self.patterns(changes["events"]))
        if "enabled" in changes:
            if not isinstance(changes["enabled"], bool):
                raise EndpointError("enabled must be true or false")
            if changes["enabled"] != endpoint.enabled:
                endpoint = (
                    endpoint.enabled_again()
                    if changes["enabled"]
                    else endpoint.disabled("disabled by operator", by="operator", at=at)
                )
        tls_fields = ("ca_cert", "client_cert", "client_key")
        if any(name in changes for name in tls_fields):
            current = endpoint.tls or EndpointTls()
            values = [changes.get(name, getattr(current, name)) for name in tls_fields]
            if not all(isinstance(value, str | None) for value in values):
                raise EndpointError("tls: ca_cert, client_cert and client_key are PEM strings")
            endpoint = dataclasses.replace(endpoint, tls=endpoint_tls(*values))
        return endpoint

    async def rotate_secret(
        self, endpoint_id: str, *, now_s: float, grace_s: float | None = None
    ) -> Endpoint:
        """New secret (and ed25519 key); the old ones keep signing for the grace period."""
        endpoint = await self.get(endpoint_id)
        new_key = random_signing_key() if endpoint.signing_key else None
        grace = self.rotation_grace_s if grace_s is None else grace_s
        endpoint = endpoint.rotated(random_secret(), now_s, grace, new_key)
        await self.save(endpoint)
        return endpoint

    async def reencrypt(self) -> int:
        """Seal every endpoint under the current master key; how many were re-sealed.

        An endpoint that no configured key opens stops the run, naming it, before
        anything is written.
        """
        with translated("read endpoints"):
            raw = await self._redis.hgetall(self._key)
        endpoints = [Endpoint.from_json(value, self.vault) for value in raw.values()]
        locked = [e for e in endpoints if e.locked]
        if locked:
            raise EndpointError(
                f"{len(locked)} endpoint(s) cannot be opened, e.g. {locked[0].id}: "
                f"{locked[0].locked}"
            )
        stale = [e for e, value in zip(endpoints, raw.values(), strict=True)
                 if not self.vault.is_current(_sealed_of(value))]  # fmt: skip
        if stale:
            with translated("save endpoints"):
                async with self._redis.pipeline(transaction=True) as pipe:
                    pipe.hset(self._key, {e.id: e.to_json(self.vault) for e in stale})
                    pipe.set(self._version_key, secrets.token_hex(8))
        return len(stale)

    async def versions(self) -> tuple[str, str, str]:
        """The tokens of the table, the pauses and the failing states, in one round trip."""
        with translated("read endpoints version"):
            tokens = await self._redis.wire.call(
                "MGET", self._version_key, self._pauses_version_key, self._failing_version_key,
                route=self._version_key,
            )  # fmt: skip
        table, pauses, failing = (
            "" if t is None else _text(t) for t in cast("list[bytes]", tokens)
        )
        return table, pauses, failing


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _stored_time(stored: bytes | str, name: str) -> float | None:
    """The epoch seconds under ``name`` in a stored JSON object; None if it holds none."""
    try:
        value = json.loads(stored)[name]
    except (ValueError, KeyError, TypeError):
        return None
    return float(value) if isinstance(value, int | float) else None


def _pause_end(stored: bytes | str) -> float | None:
    return _stored_time(stored, "until")


def _failing_since(stored: bytes | str) -> float | None:
    return _stored_time(stored, "since")


def _sealed_of(stored: bytes | str) -> str:
    """The sealed part of a stored endpoint; empty for one stored in the clear."""
    sealed = json.loads(stored).get("sealed")
    return sealed if isinstance(sealed, str) else ""


class EndpointTable:
    """The daemon's copy of the registry, re-read only when its version changed."""

    def __init__(self, registry: Registry) -> None:
        self._registry = registry
        self._version: str | None = None
        self._pauses_version: str | None = None
        self._by_id: dict[str, Endpoint] = {}
        self._by_vendor: dict[str, list[Endpoint]] = {}
        self._failing_version: str | None = None
        self.paused: dict[str, float] = {}  # endpoint id -> end of its pause (epoch)
        self.failing: dict[str, float] = {}  # endpoint id -> start of its failures (epoch)

    async def refresh(self) -> None:
        version, pauses_version, failing_version = await self._registry.versions()
        if pauses_version != self._pauses_version:
            self.paused = await self._registry.pauses()
            self._pauses_version = pauses_version
        if failing_version != self._failing_version:
            self.failing = await self._registry.failing()
            self._failing_version = failing_version
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
        """Every endpoint subscribed to the type, disabled ones too (theirs are held)."""
        return [e for e in self._by_vendor.get(vendor, ()) if e.subscribes(event_type)]

    def get(self, endpoint_id: str) -> Endpoint | None:
        return self._by_id.get(endpoint_id)

    def pause(self, endpoint_id: str, until_s: float) -> None:
        """Take a pause set here at once, before the next refresh reads it back."""
        self.paused[endpoint_id] = max(until_s, self.paused.get(endpoint_id, 0.0))

    def paused_until(self, endpoint_id: str, now_s: float) -> float | None:
        until = self.paused.get(endpoint_id)
        if until is None:
            return None
        if until <= now_s:
            del self.paused[endpoint_id]
            return None
        return until

    def disabled_count(self) -> int:
        """How many known endpoints are disabled (the disabled-endpoints gauge)."""
        return sum(not endpoint.enabled for endpoint in self._by_id.values())

    def update(self, endpoint: Endpoint) -> None:
        """Take a change made here (a 410 disabling an endpoint) at once, before the next
        refresh reads it back from Redis."""
        self._by_id[endpoint.id] = endpoint
        self._by_vendor[endpoint.vendor] = [
            endpoint if e.id == endpoint.id else e for e in self._by_vendor.get(endpoint.vendor, [])
        ]
