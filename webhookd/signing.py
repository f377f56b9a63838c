"""Webhook secrets and the signature headers of a delivery.

Pure: the timestamp and the random bytes of new secrets and keys are passed in.
Two HMAC schemes are sent side by side: ``X-Signature`` (hex HMAC-SHA256 over
``"{timestamp}.{body}"``) and Standard Webhooks v1 (base64 HMAC-SHA256 over
``"{id}.{timestamp}.{body}"``). Endpoints that opt in are also signed with ed25519 as
Standard Webhooks ``v1a`` over the same ``"{id}.{timestamp}.{body}"``: the private key
is ``whsk_`` + base64 of its 32-byte seed, the public key ``whpk_`` + base64 of its 32
raw bytes, and the signature base64 of its 64 bytes.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Sequence

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from webhookd.errors import EndpointError

SECRET_PREFIX = "whsec_"
SECRET_MIN_BYTES = 24
SECRET_MAX_BYTES = 64
SIGNING_KEY_PREFIX = "whsk_"
PUBLIC_KEY_PREFIX = "whpk_"
ED25519_SEED_BYTES = 32


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


def new_signing_key(seed: bytes) -> str:
    """A ``whsk_`` ed25519 private key from the 32 random bytes the caller drew."""
    if len(seed) != ED25519_SEED_BYTES:
        raise ValueError("an ed25519 key takes 32 random bytes")
    return SIGNING_KEY_PREFIX + base64.b64encode(seed).decode()


def signer(signing_key: str) -> Ed25519PrivateKey:
    """The private key of a ``whsk_`` key; EndpointError (without the key) if malformed."""
    if not signing_key.startswith(SIGNING_KEY_PREFIX):
        raise EndpointError("signing key must start with 'whsk_'")
    try:
        seed = base64.b64decode(signing_key[len(SIGNING_KEY_PREFIX) :], validate=True)
    except (binascii.Error, ValueError):
        raise EndpointError("signing key is not valid base64 after 'whsk_'") from None
    if len(seed) != ED25519_SEED_BYTES:
        raise EndpointError("signing key must decode to a 32-byte ed25519 seed")
    return Ed25519PrivateKey.from_private_bytes(seed)


def public_key(private: Ed25519PrivateKey) -> str:
    """The ``whpk_`` public key vendors verify ``v1a`` signatures with."""
    return PUBLIC_KEY_PREFIX + base64.b64encode(private.public_key().public_bytes_raw()).decode()


_keyed: dict[bytes, hmac.HMAC] = {}  # HMAC-SHA256 states with the key already absorbed
_MAX_KEYED = 4096


def _hmac_sha256(key: bytes, message: bytes) -> bytes:
    """Copying a keyed state skips hashing the key into it: 5.7 → 4.1 µs a message."""
    keyed = _keyed.get(key)
    if keyed is None:
        if len(_keyed) >= _MAX_KEYED:
            _keyed.clear()
        keyed = _keyed[key] = hmac.new(key, digestmod="sha256")
    mac = keyed.copy()
    mac.update(message)
    return mac.digest()


def x_signature(key: bytes, timestamp: int, body: bytes) -> str:
    return "sha256=" + _hmac_sha256(key, b"%d.%s" % (timestamp, body)).hex()


def standard_signature(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    mac = _hmac_sha256(key, b"%s.%d.%s" % (msg_id.encode(), timestamp, body))
    return "v1," + base64.b64encode(mac).decode()


def asymmetric_signature(
    private: Ed25519PrivateKey, msg_id: str, timestamp: int, body: bytes
) -> str:
    signature = private.sign(b"%s.%d.%s" % (msg_id.encode(), timestamp, body))
    return "v1a," + base64.b64encode(signature).decode()


def signature_headers(
    keys: Sequence[bytes],
    msg_id: str,
    timestamp: int,
    body: bytes,
    signers: Sequence[Ed25519PrivateKey] = (),
) -> list[tuple[str, str]]:
    """Every scheme's headers; with several live keys (rotation) every key signs.

    ``X-Signature`` carries one ``sha256=`` value per HMAC key, comma-separated, newest
    first. ``webhook-signature`` carries the ``v1,`` entries, newest first, then the
    ``v1a,`` entries of the ed25519 keys, newest first, all space-separated.
    """
    stamp = str(timestamp)
    entries = [standard_signature(key, msg_id, timestamp, body) for key in keys]
    entries += [asymmetric_signature(private, msg_id, timestamp, body) for private in signers]
    return [
        ("X-Timestamp", stamp),
        ("X-Signature", ",".join(x_signature(key, timestamp, body) for key in keys)),
        ("webhook-id", msg_id),
        ("webhook-timestamp", stamp),
        ("webhook-signature", " ".join(entries)),
    ]
