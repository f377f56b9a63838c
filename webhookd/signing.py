"""Webhook secrets and the signature headers of a delivery.

Pure: the timestamp and the random bytes of new secrets are passed in.
Two schemes are sent side by side: ``X-Signature`` (hex HMAC-SHA256 over
``"{timestamp}.{body}"``) and Standard Webhooks v1 (base64 HMAC-SHA256 over
``"{id}.{timestamp}.{body}"``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Sequence

from webhookd.errors import EndpointError

SECRET_PREFIX = "whsec_"
SECRET_MIN_BYTES = 24
SECRET_MAX_BYTES = 64


def new_secret(random_bytes: bytes) -> str:
    """A Standard Webhooks secret from 24-64 random bytes the caller drew."""
    if not SECRET_MIN_BYTES <= len(random_bytes) <= SECRET_MAX_BYTES:
        raise ValueError("a secret takes 24 to 64 random bytes")
    return SECRET_PREFIX + base64.b64encode(random_bytes).decode()


def secret_key(secret: str) -> bytes:
    """The signing key of a ``whsec_`` secret: its decoded bytes."""
    if not secret.startswith(SECRET_PREFIX):
        raise EndpointError("secret must start with 'whsec_'")
    try:
        key = base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
    except ValueError:  # binascii.Error, or non-ASCII characters
        raise EndpointError("secret is not valid base64 after 'whsec_'") from None
    if not SECRET_MIN_BYTES <= len(key) <= SECRET_MAX_BYTES:
        raise EndpointError("secret must decode to 24-64 bytes")
    return key


def x_signature(key: bytes, timestamp: int, body: bytes) -> str:
    mac = hmac.new(key, b"%d.%s" % (timestamp, body), hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def standard_signature(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(key, b"%s.%d.%s" % (msg_id.encode(), timestamp, body), hashlib.sha256)
    return "v1," + base64.b64encode(mac.digest()).decode()


def signature_headers(
    keys: Sequence[bytes], msg_id: str, timestamp: int, body: bytes
) -> list[tuple[str, str]]:
    """Both schemes' headers; with several live keys (rotation) every key signs.

    ``X-Signature`` carries one ``sha256=`` value per key, comma-separated, newest first.
    """
    stamp = str(timestamp)
    return [
        ("X-Timestamp", stamp),
        ("X-Signature", ",".join(x_signature(key, timestamp, body) for key in keys)),
        ("webhook-id", msg_id),
        ("webhook-timestamp", stamp),
        (
            "webhook-signature",
            " ".join(standard_signature(key, msg_id, timestamp, body) for key in keys),
        ),
    ]
