"""Vendor portal tokens: short-lived bearer tokens scoped to one vendor, kept nowhere.

A token is ``wpt_`` + base64url(payload) + ``.`` + base64url(HMAC-SHA256(key, the part
before the dot)); the payload is the JSON ``{"v": vendor, "exp": unix seconds}``. The key
is derived from ``admin.token`` (HMAC of a fixed label under it), so whoever may issue
tokens is whoever holds the admin token, no token ever needs storing, and changing
``admin.token`` revokes every token issued under the old one. Pure: the time is passed in.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from dataclasses import dataclass

from webhookd.events import VENDOR_ID

PREFIX = "wpt_"
DEFAULT_TTL_S = 3600
MAX_TTL_S = 7 * 24 * 3600
_LABEL = b"webhookd portal token v1"
_MAX_TOKEN_CHARS = 1024


class InvalidPortalToken(Exception):
    """A token that is malformed, tampered with or expired; the message says which."""


@dataclass(frozen=True, slots=True)
class PortalClaims:
    """Who a valid token speaks for, and until when (unix seconds)."""

    vendor: str
    expires_s: int


def _key(admin_token: str) -> bytes:
    return hmac.new(admin_token.encode(), _LABEL, hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(admin_token: str, signed: str) -> bytes:
    return hmac.new(_key(admin_token), signed.encode(), hashlib.sha256).digest()


def issue(vendor: str, *, admin_token: str, now_s: float, ttl_s: int = DEFAULT_TTL_S) -> str:
    """A token for ``vendor`` valid ``ttl_s`` seconds from ``now_s``; ValueError for a bad
    vendor id or a ttl outside 1 s .. ``MAX_TTL_S``."""
    if not VENDOR_ID.fullmatch(vendor):
        raise ValueError(f"{vendor!r} is not a vendor id")
    if not 1 <= ttl_s <= MAX_TTL_S:
        raise ValueError(f"ttl: from 1 to {MAX_TTL_S} seconds, got {ttl_s}")
    payload = json.dumps({"v": vendor, "exp": int(now_s) + ttl_s}, separators=(",", ":"))
    signed = PREFIX + _b64(payload.encode())
    return f"{signed}.{_b64(_mac(admin_token, signed))}"


def is_portal_token(offered: str) -> bool:
    return offered.startswith(PREFIX)


def verify(token: str, *, admin_token: str, now_s: float) -> PortalClaims:
    """The claims of a token this admin token issued and that has not expired; else
    ``InvalidPortalToken``. The signature is checked before the payload is read."""
    if len(token) > _MAX_TOKEN_CHARS or not token.startswith(PREFIX) or token.count(".") != 1:
        raise InvalidPortalToken("not a portal token")
    signed, _, mac_text = token.partition(".")
    try:
        offered_mac = _unb64(mac_text)
    except (binascii.Error, ValueError):
        raise InvalidPortalToken("not a portal token") from None
    if _b64(offered_mac) != mac_text:  # base64 decoding ignores stray bits; a token has none
        raise InvalidPortalToken("not a portal token")
    if not hmac.compare_digest(offered_mac, _mac(admin_token, signed)):
        raise InvalidPortalToken("the token's signature does not check out")
    try:
        payload = json.loads(_unb64(signed[len(PREFIX) :]))
        vendor, expires_s = payload["v"], payload["exp"]
    except (binascii.Error, ValueError, KeyError, TypeError):
        raise InvalidPortalToken("the token's payload is unreadable") from None
    if not isinstance(vendor, str) or not VENDOR_ID.fullmatch(vendor):
        raise InvalidPortalToken("the token names no vendor")
    if not isinstance(expires_s, int) or isinstance(expires_s, bool) or expires_s <= now_s:
        raise InvalidPortalToken("the token has expired")
    return PortalClaims(vendor, expires_s)
