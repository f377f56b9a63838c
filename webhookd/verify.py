"""Verifying a webhookd delivery on the receiver side.

Standard library only, so vendors can copy this file as it is. Either scheme
(``X-Signature`` or Standard Webhooks ``webhook-signature``) is enough; both are
compared in constant time and the timestamp must be within ``tolerance`` seconds.
Every failure raises :class:`InvalidSignature`, and nothing else.
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
MIN_KEY_BYTES = 24


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
    """The parsed payload of a genuine delivery; raises InvalidSignature otherwise."""
    lowered = {name.lower(): value for name, value in headers.items()}
    key = _key(secret)
    current = time.time() if now is None else now
    if not (_x_signature_ok(key, body, lowered, current, tolerance) or
            _standard_ok(key, body, lowered, current, tolerance)):  # fmt: skip
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


def _standard_ok(
    key: bytes, body: bytes, headers: Mapping[str, str], now: float, tolerance: int
) -> bool:
    stamp = _timestamp(headers.get("webhook-timestamp"), now, tolerance)
    msg_id = headers.get("webhook-id")
    offered = headers.get("webhook-signature")
    if stamp is None or msg_id is None or offered is None:
        return False
    try:
        signed = b"%s.%d.%s" % (msg_id.encode(), stamp, body)
    except UnicodeEncodeError:
        return False
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest())
    found = False
    for candidate in offered.split(" "):
        version, _, signature = candidate.partition(",")
        if version == "v1":
            found |= hmac.compare_digest(_ascii(signature), expected)
    return found
