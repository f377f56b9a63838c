"""Vendor endpoints: the model, its validation, and which events an endpoint takes.

Pure: ids and secrets come from the caller's random source.
"""

from __future__ import annotations

import ipaddress
import json
import re
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlsplit

from webhookd.errors import EndpointError
from webhookd.signing import secret_key

PATTERN = re.compile(r"\*|[A-Za-z0-9_][A-Za-z0-9_.\-]*(\.\*)?")
MAX_URL_LENGTH = 2048


@dataclass(frozen=True, slots=True)
class UrlPolicy:
    require_https: bool = True
    allow_private_targets: bool = False


@dataclass(frozen=True, slots=True)
class RetiredSecret:
    """A secret replaced by rotation that keeps signing until ``expires_s`` (epoch)."""

    secret: str
    expires_s: float


@dataclass(frozen=True, slots=True)
class Endpoint:
    id: str
    vendor: str
    url: str
    secret: str
    events: tuple[str, ...] = ("*",)
    enabled: bool = True
    created_at: str = ""
    disabled_reason: str | None = None
    retired: tuple[RetiredSecret, ...] = ()
    _keys: tuple[tuple[bytes, float], ...] = field(default=(), compare=False, repr=False)

    def __post_init__(self) -> None:
        keys = [(secret_key(self.secret), float("inf"))]
        keys += [(secret_key(old.secret), old.expires_s) for old in self.retired]
        object.__setattr__(self, "_keys", tuple(keys))

    def wants(self, event_type: str) -> bool:
        return self.enabled and any(matches(p, event_type) for p in self.events)

    def keys_at(self, now_s: float) -> list[bytes]:
        """Signing keys live at ``now_s``: the current one first, then unexpired retired ones."""
        return [key for key, expires_s in self._keys if expires_s > now_s]

    def public(self) -> dict[str, Any]:
        """The endpoint as shown to operators: the current secret, never retired ones."""
        return {
            "id": self.id,
            "vendor": self.vendor,
            "url": self.url,
            "events": list(self.events),
            "enabled": self.enabled,
            "disabled_reason": self.disabled_reason,
            "created_at": self.created_at,
            "secret": self.secret,
        }

    def to_json(self) -> str:
        stored = self.public()
        stored["retired"] = [[old.secret, old.expires_s] for old in self.retired]
        return json.dumps(stored, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> Endpoint:
        raw = json.loads(text)
        return cls(
            id=raw["id"],
            vendor=raw["vendor"],
            url=raw["url"],
            secret=raw["secret"],
            events=tuple(raw["events"]),
            enabled=raw["enabled"],
            created_at=raw.get("created_at", ""),
            disabled_reason=raw.get("disabled_reason"),
            retired=tuple(RetiredSecret(s, float(e)) for s, e in raw.get("retired", [])),
        )

    def disabled(self, reason: str) -> Endpoint:
        return replace(self, enabled=False, disabled_reason=reason)

    def enabled_again(self) -> Endpoint:
        return replace(self, enabled=True, disabled_reason=None)

    def rotated(self, new_secret: str, now_s: float, grace_s: float) -> Endpoint:
        """The endpoint signing with ``new_secret``, the old secret alive for ``grace_s``."""
        live = tuple(old for old in self.retired if old.expires_s > now_s)
        return replace(
            self, secret=new_secret, retired=(RetiredSecret(self.secret, now_s + grace_s), *live)
        )


def matches(pattern: str, event_type: str) -> bool:
    """``*`` takes everything, ``order.*`` every type under ``order.``, else exact."""
    if pattern == "*":
        return True
    if pattern.endswith(".*"):
        return event_type.startswith(pattern[:-1])
    return pattern == event_type


def parse_patterns(text: str | Iterable[str]) -> tuple[str, ...]:
    items = text.split(",") if isinstance(text, str) else list(text)
    patterns = tuple(dict.fromkeys(p.strip() for p in items if p.strip()))
    if not patterns:
        raise EndpointError("events: give at least one event type or pattern")
    for pattern in patterns:
        if not PATTERN.fullmatch(pattern):
            raise EndpointError(
                f"events: {pattern!r} is not an event type, a 'prefix.*' pattern or '*'"
            )
    return patterns


def validate_url(url: str, policy: UrlPolicy) -> str:
    """The URL if webhookd may POST to it; EndpointError naming the problem otherwise."""
    if len(url) > MAX_URL_LENGTH:
        raise EndpointError(f"url is longer than {MAX_URL_LENGTH} characters")
    if any(ch.isspace() or ord(ch) < 0x20 for ch in url):
        raise EndpointError("url must not contain spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise EndpointError(f"url is not valid: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise EndpointError(f"url must start with https:// (got {parts.scheme or 'no'} scheme)")
    if parts.scheme == "http" and policy.require_https:
        raise EndpointError("url must use https (delivery.require_https is true)")
    if not parts.hostname:
        raise EndpointError("url has no host")
    if parts.username is not None or parts.password is not None:
        raise EndpointError("url must not carry credentials; use the signature to authenticate")
    if parts.fragment:
        raise EndpointError("url must not have a #fragment")
    if port == 0:
        raise EndpointError("url port must be 1-65535")
    if not policy.allow_private_targets and _is_private_literal(parts.hostname):
        raise EndpointError(
            f"url host {parts.hostname} is a private or local address "
            "(delivery.allow_private_targets is false)"
        )
    return url


def _is_private_literal(host: str) -> bool:
    if host.lower() == "localhost" or host.lower().endswith(".localhost"):
        return True
    address = ip_literal(host)
    return address is not None and not address.is_global


def ip_literal(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address a host names by itself, in any form a resolver accepts.

    Besides dotted quads that includes the shorthand, decimal, octal and hex forms of
    IPv4 (``127.1``, ``2130706433``, ``0x7f000001``, ``0177.0.0.1``), which connect to
    the same place and must be judged the same way.
    """
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        pass
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        return None


def select(endpoints: Sequence[Endpoint], event_type: str) -> list[Endpoint]:
    return [endpoint for endpoint in endpoints if endpoint.wants(event_type)]
