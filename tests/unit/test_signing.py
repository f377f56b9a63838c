"""Secrets and signatures, checked against HMACs computed here from the contract's wording."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from hypothesis import given, settings
from hypothesis import strategies as st

from webhookd import signing
from webhookd.errors import EndpointError
from webhookd.signing import (
    asymmetric_signature,
    new_secret,
    new_signing_key,
    public_key,
    secret_key,
    signature_headers,
    signer,
    standard_signature,
    x_signature,
)

keys = st.binary(min_size=24, max_size=64)
timestamps = st.integers(0, 2**40)
msg_ids = st.text(min_size=1, max_size=64)


def contract_x_signature(key: bytes, timestamp: int, body: bytes) -> str:
    """``sha256=`` + hex HMAC-SHA256(key, "{X-Timestamp}.{raw body}")."""
    return "sha256=" + hmac.new(key, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def contract_v1_signature(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """``v1,`` + base64 HMAC-SHA256(key, "{id}.{timestamp}.{raw body}")."""
    mac = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256)
    return "v1," + base64.b64encode(mac.digest()).decode()


def test_standard_webhooks_reference_vector() -> None:
    """The example of the Standard Webhooks specification, signed the same way."""
    key = secret_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    signature = standard_signature(
        key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, b'{"test": 2432232314}'
    )
    assert signature == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


@settings(max_examples=150, deadline=None)
@given(key=keys, msg_id=msg_ids, timestamp=timestamps, body=st.binary(max_size=512))
def test_both_schemes_match_the_contract_definitions(
    key: bytes, msg_id: str, timestamp: int, body: bytes
) -> None:
    assert x_signature(key, timestamp, body) == contract_x_signature(key, timestamp, body)
    assert standard_signature(key, msg_id, timestamp, body) == contract_v1_signature(
        key, msg_id, timestamp, body
    )


def test_keyed_states_stay_bounded_and_each_key_signs_with_its_own(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(signing, "_MAX_KEYED", 2)
    monkeypatch.setattr(signing, "_keyed", {})
    rotated = [bytes([n]) * 32 for n in range(5)]
    for key in [*rotated, *reversed(rotated)]:
        assert x_signature(key, 7, b"{}") == contract_x_signature(key, 7, b"{}")
        assert len(signing._keyed) <= 2


@settings(max_examples=100, deadline=None)
@given(
    signing_keys=st.lists(keys, min_size=1, max_size=3, unique=True),
    msg_id=msg_ids,
    timestamp=timestamps,
    body=st.binary(max_size=256),
)
def test_signature_headers_carry_one_signature_per_live_key(
    signing_keys: list[bytes], msg_id: str, timestamp: int, body: bytes
) -> None:
    headers = signature_headers(signing_keys, msg_id, timestamp, body)

    assert [name for name, _ in headers] == [
        "X-Timestamp",
        "X-Signature",
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
    ]
    values = dict(headers)
    assert values["X-Timestamp"] == values["webhook-timestamp"] == str(timestamp)
    assert values["webhook-id"] == msg_id
    assert values["X-Signature"].split(",") == [
        contract_x_signature(key, timestamp, body) for key in signing_keys
    ]
    assert values["webhook-signature"].split(" ") == [
        contract_v1_signature(key, msg_id, timestamp, body) for key in signing_keys
    ]


@settings(max_examples=100, deadline=None)
@given(random_bytes=keys)
def test_new_secret_has_the_standard_form_and_decodes_to_its_bytes(random_bytes: bytes) -> None:
    secret = new_secret(random_bytes)
    assert secret.startswith("whsec_")
    assert base64.b64decode(secret.removeprefix("whsec_"), validate=True) == random_bytes
    assert secret_key(secret) == random_bytes


@pytest.mark.parametrize("size", [0, 23, 65, 128])
def test_new_secret_takes_24_to_64_bytes(size: int) -> None:
    with pytest.raises(ValueError, match="24 to 64"):
        new_secret(b"\x01" * size)


@pytest.mark.parametrize(
    ("secret", "message"),
    [
        ("", "whsec_"),
        ("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_"),
        ("WHSEC_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_"),
        ("whsec_", "24-64 bytes"),
        ("whsec_!!!!", "base64"),
        ("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaS", "base64"),
        ("whsec_" + base64.b64encode(b"k" * 23).decode(), "24-64 bytes"),
        ("whsec_" + base64.b64encode(b"k" * 65).decode(), "24-64 bytes"),
        ("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSé", "base64"),
    ],
)
def test_secret_key_refuses_what_is_not_a_whsec_secret(secret: str, message: str) -> None:
    with pytest.raises(EndpointError, match=message):
        secret_key(secret)


@settings(max_examples=150, deadline=None)
@given(secret=st.text(max_size=100) | st.text(max_size=100).map(lambda text: "whsec_" + text))
def test_secret_key_raises_only_endpoint_error(secret: str) -> None:
    try:
        key = secret_key(secret)
    except EndpointError:
        return
    assert 24 <= len(key) <= 64


# --- ed25519 (Standard Webhooks v1a) ---------------------------------------------------

REFERENCE_SEED = "VEVTVFNJR05JTkdLRVlET05PVFVTRVRISVNGT1JBTlk="


def test_ed25519_reference_vector() -> None:
    """The asymmetric test vector of the Standard Webhooks reference libraries."""
    private = signer("whsk_" + REFERENCE_SEED)
    signature = asymmetric_signature(
        private, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, b'{"test": 2432232314}'
    )
    assert signature == (
        "v1a,tQ9V2XOqn7jL/DQenEFpqIugdBVtiMmER5mhSkXBNwM0mkATuDe6KYYUuxqtaiHeYGb7KaaBRdM5WqyeFiL8Ag=="
    )


@settings(max_examples=50, deadline=None)
@given(
    seed=st.binary(min_size=32, max_size=32),
    msg_id=msg_ids,
    timestamp=timestamps,
    body=st.binary(max_size=256),
)
def test_v1a_verifies_with_the_published_public_key(
    seed: bytes, msg_id: str, timestamp: int, body: bytes
) -> None:
    signing_key = new_signing_key(seed)
    assert signing_key == "whsk_" + base64.b64encode(seed).decode()
    private = signer(signing_key)
    published = public_key(private)
    assert published.startswith("whpk_")
    raw = base64.b64decode(published.removeprefix("whpk_"), validate=True)
    version, _, encoded = asymmetric_signature(private, msg_id, timestamp, body).partition(",")
    assert version == "v1a"
    signed = f"{msg_id}.{timestamp}.".encode() + body
    Ed25519PublicKey.from_public_bytes(raw).verify(base64.b64decode(encoded), signed)


def test_headers_carry_v1_entries_then_v1a_entries() -> None:
    hmac_keys = [b"n" * 32, b"o" * 32]
    signers = [signer(new_signing_key(b"N" * 32)), signer(new_signing_key(b"O" * 32))]
    values = dict(signature_headers(hmac_keys, "msg_1", 1700000000, b"{}", signers))
    entries = values["webhook-signature"].split(" ")
    assert [entry.split(",")[0] for entry in entries] == ["v1", "v1", "v1a", "v1a"]
    assert entries[2] == asymmetric_signature(signers[0], "msg_1", 1700000000, b"{}")
    assert values["X-Signature"].count("sha256=") == 2  # X-Signature stays HMAC only


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("", "whsk_"),
        ("whsec_" + REFERENCE_SEED, "whsk_"),
        ("whsk_!!!", "base64"),
        ("whsk_" + base64.b64encode(b"s" * 31).decode(), "32-byte"),
        ("whsk_" + base64.b64encode(b"s" * 64).decode(), "32-byte"),
    ],
)
def test_signer_refuses_what_is_not_a_whsk_key(key: str, message: str) -> None:
    with pytest.raises(EndpointError, match=message) as caught:
        signer(key)
    assert REFERENCE_SEED not in str(caught.value)
