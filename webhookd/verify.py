"""Verifying a webhookd delivery on the receiver side.

Standard library only, so vendors can copy this file as it is. With the endpoint's
``whsec_`` secret, either HMAC scheme (``X-Signature``, or a Standard Webhooks ``v1,``
entry of ``webhook-signature``) is enough; both are compared in constant time. With
the endpoint's ``whpk_`` public key, a ``v1a,`` (ed25519) entry must check out; that
alone needs the ``cryptography`` package, imported only then. The timestamp must be
within ``tolerance`` seconds either way. Every failure raises
:class:`InvalidSignature`, and nothing else.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from typing import Any

SECRET_PREFIX = "whsec_"
PUBLIC_KEY_PREFIX = "whpk_"
MIN_KEY_BYTES = 24
ED25519_PUBLIC_KEY_BYTES = 32
ED25519_SIGNATURE_BYTES = 64


class InvalidSignature(Exception):
    """The delivery is not genuine, is too old or too new, or is not a webhookd payload."""


def verify(
    body: bytes,
    headers: Mapping[str, str],
    secret: str,
    tolerance: int = 300,
    *,
    now: float | None = None,
) -> dict[str, Any]:
    """The parsed payload of a genuine delivery; raises InvalidSignature otherwise.

    ``secret`` is the endpoint's ``whsec_`` secret, or its ``whpk_`` public key.
    """
    lowered = {name.lower(): value for name, value in headers.items()}
    current = time.time() if now is None else now
    if secret.startswith(PUBLIC_KEY_PREFIX):
        genuine = _asymmetric_ok(_public_key(secret), body, lowered, current, tolerance)
    else:
        key = _key(secret)
        genuine = (_x_signature_ok(key, body, lowered, current, tolerance) or
                   _standard_ok(key, body, lowered, current, tolerance))  # fmt: skip
    if not genuine:
        raise InvalidSignature("no valid signature within the timestamp tolerance")
    try:
        payload = json.loads(body)
    except ValueError:
        raise InvalidSignature("body is not JSON") from None
    if not isinstance(payload, dict):
        raise InvalidSignature("body is not a JSON object")
    return payload


def _key(secret: str) -> bytes:
    """The signing key; an empty or short one would let anyone sign, so it verifies nothing."""
    encoded = secret.removeprefix(SECRET_PREFIX)
    try:
        key = base64.b64decode(encoded, validate=True)
    except ValueError:
        raise InvalidSignature("secret is not a whsec_ base64 secret") from None
    if len(key) < MIN_KEY_BYTES:
        raise InvalidSignature(f"secret is shorter than {MIN_KEY_BYTES} bytes")
    return key


MAX_TIMESTAMP_DIGITS = 12


def _timestamp(value: str | None, now: float, tolerance: int) -> int | None:
    if value is None or not value.isascii() or not value.isdigit():
        return None
    if len(value) > MAX_TIMESTAMP_DIGITS:
        return None
    stamp = int(value)
    return stamp if abs(now - stamp) <= tolerance else None


def _x_signature_ok(
    key: bytes, body: bytes, headers: Mapping[str, str], now: float, tolerance: int
) -> bool:
    stamp = _timestamp(headers.get("x-timestamp"), now, tolerance)
    offered = headers.get("x-signature")
    if stamp is None or offered is None:
        return False
    expected = "sha256=" + hmac.new(key, b"%d.%s" % (stamp, body), hashlib.sha256).hexdigest()
    found = False
    for candidate in offered.split(","):
        found |= hmac.compare_digest(_ascii(candidate.strip()), expected.encode())
    return found


def _ascii(text: str) -> bytes:
    """Header text as bytes for comparison; anything not ASCII cannot match a signature."""
    return text.encode("ascii", "replace")


def _standard_signed(
    body: bytes, headers: Mapping[str, str], now: float, tolerance: int
) -> tuple[bytes, str] | None:
    """What Standard Webhooks signs (``"{id}.{timestamp}.{body}"``) and the signatures
    offered, or None when a header is missing or the timestamp is out of tolerance."""
    stamp = _timestamp(headers.get("webhook-timestamp"), now, tolerance)
    msg_id = headers.get("webhook-id")
    offered = headers.get("webhook-signature")
    if stamp is None or msg_id is None or offered is None:
        return None
    try:
        return b"%s.%d.%s" % (msg_id.encode(), stamp, body), offered
    except UnicodeEncodeError:
        return None


def _standard_ok(
    key: bytes, body: bytes, headers: Mapping[str, str], now: float, tolerance: int
) -> bool:
    standard = _standard_signed(body, headers, now, tolerance)
    if standard is None:
        return False
    signed, offered = standard
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest())
    found = False
    for candidate in offered.split(" "):
        version, _, signature = candidate.partition(",")
        if version == "v1":
            found |= hmac.compare_digest(_ascii(signature), expected)
    return found


def _public_key(text: str) -> Any:
    """The ed25519 public key of a ``whpk_`` key (cryptography is needed from here on)."""
    try:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    except ImportError:
        raise InvalidSignature(
            "verifying whpk_ (ed25519) signatures needs the cryptography package"
        ) from None
    try:
        raw = base64.b64decode(text.removeprefix(PUBLIC_KEY_PREFIX), validate=True)
    except ValueError:
        raise InvalidSignature("public key is not a whpk_ base64 key") from None
    if len(raw) != ED25519_PUBLIC_KEY_BYTES:
        raise InvalidSignature(f"public key is not {ED25519_PUBLIC_KEY_BYTES} bytes")
    try:
        return Ed25519PublicKey.from_public_bytes(raw)
    except ValueError:
        raise InvalidSignature("public key is not an ed25519 key") from None


def _asymmetric_ok(
    public_key: Any, body: bytes, headers: Mapping[str, str], now: float, tolerance: int
) -> bool:
    from cryptography.exceptions import InvalidSignature as BadSignature

    standard = _standard_signed(body, headers, now, tolerance)
    if standard is None:
        return False
    signed, offered = standard
    for candidate in offered.split(" "):
        version, _, encoded = candidate.partition(",")
        if version != "v1a":
            continue
        try:
            signature = base64.b64decode(_ascii(encoded), validate=True)
        except ValueError:
            continue
        if len(signature) != ED25519_SIGNATURE_BYTES:
            continue
        try:
            public_key.verify(signature, signed)
        except BadSignature:
            continue
        return True
    return False
