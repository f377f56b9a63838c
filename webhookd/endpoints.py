"""Vendor endpoints: the model, its validation, and which events an endpoint takes.

Pure: ids, secrets and keys come from the caller's random source, and secrets are
sealed and opened by the ``Sealer`` the caller passes in. What an endpoint holds that
a vendor or an attacker could sign with (its ``whsec_`` secrets, its ``whsk_`` key, its
TLS client key) is stored sealed, never in the clear, and never appears in a ``repr``.
"""

from __future__ import annotations

import ipaddress
import json
import re
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from webhookd.addresses import refusal
from webhookd.errors import EndpointError, SecretsError
from webhookd.events import format_timestamp
from webhookd.options import NO_OPTIONS, DeliveryOptions
from webhookd.signing import public_key, secret_key, signer
from webhookd.urls import EndpointUrl

PATTERN = re.compile(r"\*|[A-Za-z0-9_][A-Za-z0-9_.\-]*(\.\*)?")
MAX_URL_LENGTH = 2048
SIGNING_SCHEMES = ("hmac", "ed25519")


class Sealer(Protocol):
    """Encrypts secrets for storage, bound to a context (``webhookd.vault.Vault``)."""

    def seal(self, plaintext: bytes, context: str) -> str: ...

    def open(self, sealed: str, context: str) -> bytes: ...


@dataclass(frozen=True, slots=True)
class UrlPolicy:
    require_https: bool = True
    allow_private_targets: bool = False


@dataclass(frozen=True, slots=True)
class RetiredSecret:
    """A secret (and ed25519 key) replaced by rotation, signing until ``expires_s`` (epoch)."""

    secret: str = field(repr=False)
    expires_s: float
    signing_key: str | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class EndpointTls:
    """An endpoint's own TLS: a CA trusted instead of the system's, a client certificate."""

    ca_cert: str | None = None  # PEM
    client_cert: str | None = None  # PEM chain, shown to operators
    client_key: str | None = field(default=None, repr=False)  # PEM, sealed at rest


@dataclass(frozen=True, slots=True)
class Endpoint:
    id: str
    vendor: str
    url: str
    secret: str = field(repr=False)
    events: tuple[str, ...] = ("*",)
    enabled: bool = True
    created_at: str = ""
    disabled_reason: str | None = None
    retired: tuple[RetiredSecret, ...] = field(default=(), repr=False)
    signing_key: str | None = field(default=None, repr=False)  # whsk_: also signs v1a
    tls: EndpointTls | None = None
    locked: str | None = None  # why its sealed secrets could not be opened here
    options: DeliveryOptions = NO_OPTIONS
    paused_until: float | None = None  # a 429/503 asked to wait (kept beside the record)
    disabled_by: str | None = None  # gone | failing | operator
    disabled_at: str | None = None
    last_status: int | None = None  # of the last failed attempt, when disabled for failing
    last_error: str | None = None
    _keys: tuple[tuple[bytes, float], ...] = field(
        default=(), init=False, compare=False, repr=False
    )
    _signers: tuple[tuple[Ed25519PrivateKey, float], ...] = field(
        default=(), init=False, compare=False, repr=False
    )

    def __post_init__(self) -> None:
        if self.locked is not None:
            return
        keys = [(secret_key(self.secret), float("inf"))]
        keys += [(secret_key(old.secret), old.expires_s) for old in self.retired]
        object.__setattr__(self, "_keys", tuple(keys))
        signers = [] if self.signing_key is None else [(signer(self.signing_key), float("inf"))]
        signers += [(signer(old.signing_key), old.expires_s) for old in self.retired
                    if old.signing_key is not None]  # fmt: skip
        object.__setattr__(self, "_signers", tuple(signers))

    def subscribes(self, event_type: str) -> bool:
        """Whether the endpoint takes this type, enabled or not: a disabled endpoint's
        deliveries are held, not skipped."""
        return any(matches(p, event_type) for p in self.events)

    def keys_at(self, now_s: float) -> list[bytes]:
        """HMAC keys live at ``now_s``: the current one first, then unexpired retired ones."""
        return [key for key, expires_s in self._keys if expires_s > now_s]

    def signers_at(self, now_s: float) -> list[Ed25519PrivateKey]:
        """ed25519 keys live at ``now_s``, in the same order as ``keys_at``."""
        return [key for key, expires_s in self._signers if expires_s > now_s]

    @property
    def public_key(self) -> str | None:
        """The ``whpk_`` key vendors verify ``v1a`` signatures with; None for HMAC only."""
        return public_key(self._signers[0][0]) if self.signing_key and self._signers else None

    def public(self, *, secret: bool = False) -> dict[str, Any]:
        """The endpoint as shown to operators; with ``secret``, the current one (never a
        retired one): secrets are shown when made, rotated or revealed, not in listings."""
        shown = self._record()
        if secret:
            shown["secret"] = None if self.locked else self.secret
        shown["headers"] = dict(self.options.headers)
        shown["paused_until"] = (
            None if self.paused_until is None else format_timestamp(self.paused_until)
        )
        if self.locked:
            shown["locked"] = self.locked
        return shown

    def _record(self) -> dict[str, Any]:
        """Everything but the secrets: what is stored in the clear and shown."""
        tls = self.tls or EndpointTls()
        return {
            "id": self.id,
            "vendor": self.vendor,
            "url": self.url,
            "events": list(self.events),
            "enabled": self.enabled,
            "disabled_reason": self.disabled_reason,
            "disabled_by": self.disabled_by,
            "disabled_at": self.disabled_at,
            "last_status": self.last_status,
            "last_error": self.last_error,
            "created_at": self.created_at,
            "signing": "hmac" if self.signing_key is None else "ed25519",
            "public_key": self.public_key,
            "ca_cert": tls.ca_cert,
            "client_cert": tls.client_cert,
            **self.options.shown(),
        }

    def to_json(self, sealer: Sealer) -> str:
        """The stored form: public fields in the clear, every secret sealed together."""
        if self.locked:
            raise EndpointError(f"endpoint {self.id} cannot be saved: {self.locked}")
        secrets = {
            "secret": self.secret,
            "retired": [[old.secret, old.expires_s, old.signing_key] for old in self.retired],
            "signing_key": self.signing_key,
            "client_key": self.tls.client_key if self.tls else None,
            "headers": [list(pair) for pair in self.options.headers],
        }
        stored = self._record()
        stored.pop("public_key")
        stored["sealed"] = sealer.seal(json.dumps(secrets).encode(), _sealing_context(self.id))
        return json.dumps(stored, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes, sealer: Sealer) -> Endpoint:
        """The endpoint stored; ``locked`` (with no secrets) if its seal does not open here.

        Records from before secrets were sealed hold them in the clear; they are read as
        they are, and ``webhookd secrets reencrypt`` seals them.
        """
        raw = json.loads(text)
        locked = None
        secrets: dict[str, Any] = raw
        if "sealed" in raw:
            try:
                secrets = json.loads(sealer.open(raw["sealed"], _sealing_context(raw["id"])))
            except SecretsError as exc:
                locked, secrets = str(exc), {"secret": ""}
        options = DeliveryOptions(
            retry_schedule=None if raw.get("retry_schedule") is None
            else tuple(float(d) for d in raw["retry_schedule"]),
            timeout_s=raw.get("timeout"),
            concurrency=raw.get("concurrency"),
            headers=tuple((str(n), str(v)) for n, v in secrets.get("headers") or ()),
        )  # fmt: skip
        tls = None
        if raw.get("ca_cert") or raw.get("client_cert"):
            tls = EndpointTls(raw.get("ca_cert"), raw.get("client_cert"), secrets.get("client_key"))
        return cls(
            id=raw["id"],
            vendor=raw["vendor"],
            url=raw["url"],
            secret=secrets["secret"],
            events=tuple(raw["events"]),
            enabled=raw["enabled"],
            created_at=raw.get("created_at", ""),
            disabled_reason=raw.get("disabled_reason"),
            disabled_by=raw.get("disabled_by"),
            disabled_at=raw.get("disabled_at"),
            last_status=raw.get("last_status"),
            last_error=raw.get("last_error"),
            retired=tuple(
                RetiredSecret(old[0], float(old[1]), old[2] if len(old) > 2 else None)
                for old in secrets.get("retired", [])
            ),
            signing_key=secrets.get("signing_key"),
            tls=tls,
            locked=locked,
            options=options,
        )

    def disabled(
        self,
        reason: str,
        *,
        by: str = "operator",
        at: str | None = None,
        last_status: int | None = None,
        last_error: str | None = None,
    ) -> Endpoint:
        return replace(self, enabled=False, disabled_reason=reason, disabled_by=by,
                       disabled_at=at, last_status=last_status, last_error=last_error)  # fmt: skip

    def enabled_again(self) -> Endpoint:
        return replace(self, enabled=True, disabled_reason=None, disabled_by=None,
                       disabled_at=None, last_status=None, last_error=None)  # fmt: skip

    def rotated(
        self, new_secret: str, now_s: float, grace_s: float, new_signing_key: str | None = None
    ) -> Endpoint:
        """The endpoint signing with new keys, the old ones alive for ``grace_s``.

        ``new_signing_key`` replaces the ed25519 key too; without it that key stays.
        """
        live = tuple(old for old in self.retired if old.expires_s > now_s)
        old_signing_key = self.signing_key if new_signing_key is not None else None
        retiring = RetiredSecret(self.secret, now_s + grace_s, old_signing_key)
        return replace(
            self,
            secret=new_secret,
            signing_key=new_signing_key or self.signing_key,
            retired=(retiring, *live),
        )


def _sealing_context(endpoint_id: str) -> str:
    """What a seal is bound to: opened for another endpoint, it fails."""
    return f"endpoint:{endpoint_id}"


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
    """The URL as it is to be stored and sent; EndpointError naming the problem otherwise.

    What the transport could not send is refused, or normalized as browsers do (see
    ``webhookd.urls``): the result is the URL itself when it is ASCII.
    """
    if len(url) > MAX_URL_LENGTH:
        raise EndpointError(f"url is longer than {MAX_URL_LENGTH} characters")
    parsed = EndpointUrl.parse(url)
    if parsed.origin.scheme == "http" and policy.require_https:
        raise EndpointError("url must use https (delivery.require_https is true)")
    if len(parsed.url) > MAX_URL_LENGTH:
        raise EndpointError(f"url is longer than {MAX_URL_LENGTH} characters once percent-encoded")
    if not policy.allow_private_targets and _is_private_literal(parsed.origin.host):
        raise EndpointError(
            f"url host {parsed.origin.host} is a private or local address "
            "(delivery.allow_private_targets is false)"
        )
    return parsed.url


def _is_private_literal(host: str) -> bool:
    """Refused before any DNS lookup; names that resolve there are refused at connect."""
    if host.lower() == "localhost" or host.lower().endswith(".localhost"):
        return True
    address = ip_literal(host)
    return address is not None and refusal(address) is not None


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
