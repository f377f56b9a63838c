"""Receiver-side verification of ed25519 (Standard Webhooks v1a) deliveries.

Signatures are made here with ``cryptography`` directly from the specification's
wording, so these tests do not lean on ``webhookd.signing`` to agree with
``webhookd.verify``.
"""

from __future__ import annotations

import base64
import json
import sys
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from webhookd.verify import InvalidSignature, verify

PROPERTY = settings(max_examples=50, deadline=None)
NOW = 1_714_559_696

seeds = st.binary(min_size=32, max_size=32)
msg_ids = st.text(min_size=1, max_size=64)
timestamps = st.integers(0, 2**34)
bodies = st.dictionaries(
    st.text(max_size=8), st.integers() | st.text(max_size=12) | st.none(), max_size=4
).map(lambda value: json.dumps(value, ensure_ascii=False).encode())


def public_of(seed: bytes) -> str:
    raw = Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes_raw()
    return "whpk_" + base64.b64encode(raw).decode()


def v1a(seed: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{msg_id}.{timestamp}.".encode() + body
    signature = Ed25519PrivateKey.from_private_bytes(seed).sign(signed)
    return "v1a," + base64.b64encode(signature).decode()


def headers_for(seeds: list[bytes], msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(v1a(seed, msg_id, timestamp, body) for seed in seeds),
    }


@PROPERTY
@given(seed=seeds, msg_id=msg_ids, timestamp=timestamps, body=bodies, skew=st.integers(-300, 300))
def test_every_genuine_signature_is_accepted(
    seed: bytes, msg_id: str, timestamp: int, body: bytes, skew: int
) -> None:
    headers = headers_for([seed], msg_id, timestamp, body)
    assert verify(body, headers, public_of(seed), now=timestamp + skew) == json.loads(body)


@PROPERTY
@given(
    signing=st.lists(seeds, min_size=2, max_size=3, unique=True),
    outsider=seeds,
    msg_id=msg_ids,
    timestamp=timestamps,
    body=bodies,
)
def test_during_rotation_every_live_key_verifies(
    signing: list[bytes], outsider: bytes, msg_id: str, timestamp: int, body: bytes
) -> None:
    assume(outsider not in signing)
    hmac_entry = "v1," + base64.b64encode(b"h" * 32).decode()
    headers = headers_for(signing, msg_id, timestamp, body)
    headers["webhook-signature"] = hmac_entry + " " + headers["webhook-signature"]
    for seed in signing:
        assert verify(body, headers, public_of(seed), now=timestamp) == json.loads(body)
    with pytest.raises(InvalidSignature):
        verify(body, headers, public_of(outsider), now=timestamp)


@PROPERTY
@given(seed=seeds, msg_id=msg_ids, timestamp=timestamps, body=bodies, data=st.data())
def test_a_flipped_body_byte_is_rejected(
    seed: bytes, msg_id: str, timestamp: int, body: bytes, data: st.DataObject
) -> None:
    headers = headers_for([seed], msg_id, timestamp, body)
    index = data.draw(st.integers(0, len(body) - 1))
    bit = data.draw(st.integers(0, 7))
    tampered = body[:index] + bytes([body[index] ^ (1 << bit)]) + body[index + 1 :]
    with pytest.raises(InvalidSignature):
        verify(tampered, headers, public_of(seed), now=timestamp)


@PROPERTY
@given(
    seed=seeds,
    msg_id=msg_ids,
    other_id=msg_ids,
    timestamp=timestamps,
    body=bodies,
    shift=st.integers(-300, 300).filter(bool),
)
def test_a_changed_id_or_timestamp_is_rejected(
    seed: bytes, msg_id: str, other_id: str, timestamp: int, body: bytes, shift: int
) -> None:
    assume(other_id != msg_id and timestamp + shift >= 0)
    headers = headers_for([seed], msg_id, timestamp, body)
    with pytest.raises(InvalidSignature):
        verify(body, {**headers, "webhook-id": other_id}, public_of(seed), now=timestamp)
    moved = {**headers, "webhook-timestamp": str(timestamp + shift)}
    with pytest.raises(InvalidSignature):
        verify(body, moved, public_of(seed), now=timestamp)


@PROPERTY
@given(seed=seeds, msg_id=msg_ids, timestamp=timestamps, body=bodies, data=st.data())
def test_a_flipped_signature_character_is_rejected(
    seed: bytes, msg_id: str, timestamp: int, body: bytes, data: st.DataObject
) -> None:
    headers = headers_for([seed], msg_id, timestamp, body)
    signature = headers["webhook-signature"]
    index = data.draw(st.integers(0, len(signature) - 1))
    other = data.draw(st.sampled_from("AQgw+/=,v1a ").filter(lambda c: c != signature[index]))
    headers["webhook-signature"] = signature[:index] + other + signature[index + 1 :]
    try:
        verify(body, headers, public_of(seed), now=timestamp)
    except InvalidSignature:
        return
    # Only an edit base64 decoding ignores (the spare bits of the last character) can pass.
    assert index >= len(signature) - 3


@PROPERTY
@given(
    seed=seeds, timestamp=timestamps, body=bodies, later=st.booleans(), beyond=st.integers(1, 10**6)
)
def test_a_timestamp_outside_the_tolerance_is_rejected(
    seed: bytes, timestamp: int, body: bytes, later: bool, beyond: int
) -> None:
    headers = headers_for([seed], "msg_1", timestamp, body)
    now = timestamp + 300 + beyond if later else timestamp - 300 - beyond
    with pytest.raises(InvalidSignature):
        verify(body, headers, public_of(seed), now=now)


def test_schemes_do_not_stand_in_for_each_other() -> None:
    seed, body = b"s" * 32, b'{"a":1}'
    secret = "whsec_" + base64.b64encode(seed).decode()
    with pytest.raises(InvalidSignature):  # a v1a header is no HMAC signature
        verify(body, headers_for([seed], "m", NOW, body), secret, now=NOW)
    hmac_only = {
        "webhook-id": "m",
        "webhook-timestamp": str(NOW),
        "X-Timestamp": str(NOW),
        "webhook-signature": "v1," + "A" * 44,
        "X-Signature": "sha256=" + "0" * 64,
    }
    with pytest.raises(InvalidSignature):  # with a public key, only v1a counts
        verify(body, hmac_only, public_of(seed), now=NOW)


def test_without_cryptography_a_public_key_raises_invalid_signature(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seed, body = b"s" * 32, b"{}"
    headers = headers_for([seed], "m", NOW, body)
    monkeypatch.setitem(sys.modules, "cryptography.hazmat.primitives.asymmetric.ed25519", None)
    with pytest.raises(InvalidSignature, match="needs the cryptography package"):
        verify(body, headers, public_of(seed), now=NOW)


@pytest.mark.parametrize(
    "key",
    [
        "whpk_",
        "whpk_!!!",
        "whpk_" + base64.b64encode(b"k" * 31).decode(),
        "whpk_" + base64.b64encode(b"k" * 33).decode(),
        "whpk_é",
    ],
)
def test_a_malformed_public_key_raises_invalid_signature(key: str) -> None:
    with pytest.raises(InvalidSignature):
        verify(b"{}", headers_for([b"s" * 32], "m", NOW, b"{}"), key, now=NOW)


header_values = st.one_of(
    st.text(max_size=80),
    st.just(str(NOW)),
    st.from_regex(r"(v1a?,[A-Za-z0-9+/=]{0,90} ?){0,3}", fullmatch=True),
)


@settings(max_examples=150, deadline=None)
@given(
    body=st.binary(max_size=200) | bodies,
    headers=st.dictionaries(
        st.sampled_from(["webhook-id", "Webhook-Timestamp", "webhook-signature"])
        | st.text(max_size=8),
        header_values,
        max_size=5,
    ),
    key=st.text(max_size=60).map(lambda text: "whpk_" + text)
    | st.binary(min_size=30, max_size=34).map(lambda raw: "whpk_" + base64.b64encode(raw).decode())
    | st.just(public_of(b"s" * 32)),
    tolerance=st.integers(-10, 10**6),
)
def test_garbage_raises_nothing_but_invalid_signature(
    body: bytes, headers: dict[str, str], key: str, tolerance: int
) -> None:
    try:
        payload: Any = verify(body, headers, key, tolerance, now=NOW)
    except InvalidSignature:
        return
    assert isinstance(payload, dict)
