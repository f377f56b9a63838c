"""Receiver-side verification: every genuine delivery passes, anything altered or stale fails.

The signatures are computed here with hmac and hashlib from the contract's definitions,
so these tests do not lean on ``webhookd.signing`` to agree with ``webhookd.verify``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from webhookd.signing import signature_headers
from webhookd.verify import InvalidSignature, verify

PROPERTY = settings(max_examples=50, deadline=None)
SCHEMES = ("x", "standard")


def secret_of(key: bytes) -> str:
    return "whsec_" + base64.b64encode(key).decode()


def x_signature(key: bytes, timestamp: int, body: bytes) -> str:
    return "sha256=" + hmac.new(key, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def v1_signature(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256)
    return "v1," + base64.b64encode(mac.digest()).decode()


def signed_headers(
    scheme: str, keys: Sequence[bytes], msg_id: str, timestamp: int, body: bytes
) -> dict[str, str]:
    """The headers of one scheme only, so that scheme alone decides."""
    if scheme == "x":
        return {
            "X-Timestamp": str(timestamp),
            "X-Signature": ",".join(x_signature(key, timestamp, body) for key in keys),
        }
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(v1_signature(key, msg_id, timestamp, body) for key in keys),
    }


def signature_header(scheme: str) -> str:
    return "X-Signature" if scheme == "x" else "webhook-signature"


def timestamp_header(scheme: str) -> str:
    return "X-Timestamp" if scheme == "x" else "webhook-timestamp"


def flip_byte(data: st.DataObject, blob: bytes) -> bytes:
    index = data.draw(st.integers(0, len(blob) - 1))
    bit = data.draw(st.integers(0, 7))
    return blob[:index] + bytes([blob[index] ^ (1 << bit)]) + blob[index + 1 :]


def flip_char(data: st.DataObject, text: str) -> str:
    index = data.draw(st.integers(0, len(text) - 1))
    other = data.draw(
        st.sampled_from("0123456789abcdefABCDEF+/=v,s").filter(lambda c: c != text[index])
    )
    return text[:index] + other + text[index + 1 :]


keys = st.binary(min_size=24, max_size=64)
msg_ids = st.text(min_size=1, max_size=64)
timestamps = st.integers(0, 2**34)
schemes = st.sampled_from(SCHEMES)
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_objects = st.dictionaries(
    st.text(max_size=10), json_scalars | st.lists(json_scalars, max_size=3), max_size=4
)
bodies = st.builds(
    lambda value, ascii_only, padding: (
        padding + json.dumps(value, ensure_ascii=ascii_only) + padding
    ).encode(),
    json_objects,
    st.booleans(),
    st.sampled_from(["", " ", "\n", "\r\n\t"]),
)

SECRET = secret_of(b"k" * 32)
NOW = 1_714_559_696


# --- genuine deliveries ----------------------------------------------------------------


@PROPERTY
@given(
    scheme=schemes,
    key=keys,
    msg_id=msg_ids,
    timestamp=timestamps,
    body=bodies,
    skew=st.integers(-300, 300),
)
def test_every_genuine_signature_is_accepted(
    scheme: str, key: bytes, msg_id: str, timestamp: int, body: bytes, skew: int
) -> None:
    headers = signed_headers(scheme, [key], msg_id, timestamp, body)
    assert verify(body, headers, secret_of(key), now=timestamp + skew) == json.loads(body)


@PROPERTY
@given(key=keys, msg_id=msg_ids, timestamp=timestamps, body=bodies)
def test_the_headers_webhookd_sends_verify(
    key: bytes, msg_id: str, timestamp: int, body: bytes
) -> None:
    headers = dict(signature_headers([key], msg_id, timestamp, body))
    assert verify(body, headers, secret_of(key), now=timestamp) == json.loads(body)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_header_names_are_case_insensitive(scheme: str) -> None:
    body = b'{"event":"a"}'
    headers = signed_headers(scheme, [b"k" * 32], "msg_1", NOW, body)
    for transform in (str.lower, str.upper, str.title):
        cased = {transform(name): value for name, value in headers.items()}
        assert verify(body, cased, SECRET, now=NOW) == {"event": "a"}


@pytest.mark.parametrize("scheme", SCHEMES)
def test_default_tolerance_uses_the_current_time(scheme: str) -> None:
    body = b"{}"
    now = int(time.time())
    assert verify(body, signed_headers(scheme, [b"k" * 32], "m", now, body), SECRET) == {}
    stale = signed_headers(scheme, [b"k" * 32], "m", now - 3600, body)
    with pytest.raises(InvalidSignature):
        verify(body, stale, SECRET)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_tolerance_bounds_are_inclusive(scheme: str) -> None:
    body = b"{}"
    headers = signed_headers(scheme, [b"k" * 32], "m", NOW, body)
    assert verify(body, headers, SECRET, tolerance=60, now=NOW + 60) == {}
    assert verify(body, headers, SECRET, tolerance=60, now=NOW - 60) == {}
    with pytest.raises(InvalidSignature):
        verify(body, headers, SECRET, tolerance=60, now=NOW + 61)


def test_one_genuine_scheme_is_enough() -> None:
    body = b'{"a":1}'
    headers = {
        **signed_headers("x", [b"k" * 32], "m", NOW, body),
        **signed_headers("standard", [b"k" * 32], "m", NOW, body),
    }
    broken_x = {**headers, "X-Signature": "sha256=" + "0" * 64}
    broken_standard = {**headers, "webhook-signature": "v1," + "A" * 44}
    assert verify(body, broken_x, SECRET, now=NOW) == {"a": 1}
    assert verify(body, broken_standard, SECRET, now=NOW) == {"a": 1}


@PROPERTY
@given(
    scheme=schemes,
    signing_keys=st.lists(keys, min_size=2, max_size=3, unique=True),
    outsider=keys,
    msg_id=msg_ids,
    timestamp=timestamps,
    body=bodies,
)
def test_during_rotation_every_live_secret_verifies(
    scheme: str,
    signing_keys: list[bytes],
    outsider: bytes,
    msg_id: str,
    timestamp: int,
    body: bytes,
) -> None:
    assume(outsider not in signing_keys)
    sent = dict(signature_headers(signing_keys, msg_id, timestamp, body))
    expected = signed_headers(scheme, signing_keys, msg_id, timestamp, body)
    headers = {name: sent[name] for name in expected}
    assert headers == expected
    assert len(sent["webhook-signature"].split(" ")) == len(signing_keys)
    assert all(part.startswith("v1,") for part in sent["webhook-signature"].split(" "))

    for key in signing_keys:
        assert verify(body, headers, secret_of(key), now=timestamp) == json.loads(body)
    with pytest.raises(InvalidSignature):
        verify(body, headers, secret_of(outsider), now=timestamp)


# --- anything altered ------------------------------------------------------------------


@PROPERTY
@given(
    scheme=schemes,
    key=keys,
    msg_id=msg_ids,
    timestamp=timestamps,
    body=bodies,
    data=st.data(),
)
def test_a_flipped_body_byte_is_rejected(
    scheme: str, key: bytes, msg_id: str, timestamp: int, body: bytes, data: st.DataObject
) -> None:
    headers = signed_headers(scheme, [key], msg_id, timestamp, body)
    with pytest.raises(InvalidSignature):
        verify(flip_byte(data, body), headers, secret_of(key), now=timestamp)


@PROPERTY
@given(scheme=schemes, key=keys, msg_id=msg_ids, timestamp=timestamps, body=bodies, other=bodies)
def test_another_valid_json_body_is_rejected(
    scheme: str, key: bytes, msg_id: str, timestamp: int, body: bytes, other: bytes
) -> None:
    assume(other != body)
    headers = signed_headers(scheme, [key], msg_id, timestamp, body)
    with pytest.raises(InvalidSignature):
        verify(other, headers, secret_of(key), now=timestamp)


@PROPERTY
@given(
    scheme=schemes,
    key=keys,
    msg_id=msg_ids,
    timestamp=timestamps,
    body=bodies,
    shift=st.integers(-300, 300).filter(bool),
)
def test_a_changed_timestamp_is_rejected(
    scheme: str, key: bytes, msg_id: str, timestamp: int, body: bytes, shift: int
) -> None:
    headers = signed_headers(scheme, [key], msg_id, timestamp, body)
    headers[timestamp_header(scheme)] = str(timestamp + shift)
    assume(timestamp + shift >= 0)
    with pytest.raises(InvalidSignature):
        verify(body, headers, secret_of(key), now=timestamp)


@PROPERTY
@given(key=keys, msg_id=msg_ids, other_id=msg_ids, timestamp=timestamps, body=bodies)
def test_a_changed_webhook_id_is_rejected(
    key: bytes, msg_id: str, other_id: str, timestamp: int, body: bytes
) -> None:
    assume(other_id != msg_id)
    headers = signed_headers("standard", [key], msg_id, timestamp, body)
    headers["webhook-id"] = other_id
    with pytest.raises(InvalidSignature):
        verify(body, headers, secret_of(key), now=timestamp)


@PROPERTY
@given(
    scheme=schemes,
    key=keys,
    msg_id=msg_ids,
    timestamp=timestamps,
    body=bodies,
    data=st.data(),
)
def test_a_flipped_signature_character_is_rejected(
    scheme: str, key: bytes, msg_id: str, timestamp: int, body: bytes, data: st.DataObject
) -> None:
    headers = signed_headers(scheme, [key], msg_id, timestamp, body)
    name = signature_header(scheme)
    headers[name] = flip_char(data, headers[name])
    with pytest.raises(InvalidSignature):
        verify(body, headers, secret_of(key), now=timestamp)


@PROPERTY
@given(scheme=schemes, key=keys, other=keys, msg_id=msg_ids, timestamp=timestamps, body=bodies)
def test_a_wrong_secret_is_rejected(
    scheme: str, key: bytes, other: bytes, msg_id: str, timestamp: int, body: bytes
) -> None:
    assume(other != key)
    headers = signed_headers(scheme, [key], msg_id, timestamp, body)
    with pytest.raises(InvalidSignature):
        verify(body, headers, secret_of(other), now=timestamp)


@PROPERTY
@given(
    scheme=schemes,
    key=keys,
    msg_id=msg_ids,
    timestamp=timestamps,
    body=bodies,
    tolerance=st.integers(0, 3600),
    beyond=st.integers(1, 10**6),
    later=st.booleans(),
)
def test_a_timestamp_outside_the_tolerance_is_rejected(
    scheme: str,
    key: bytes,
    msg_id: str,
    timestamp: int,
    body: bytes,
    tolerance: int,
    beyond: int,
    later: bool,
) -> None:
    headers = signed_headers(scheme, [key], msg_id, timestamp, body)
    now = timestamp + tolerance + beyond if later else timestamp - tolerance - beyond
    with pytest.raises(InvalidSignature):
        verify(body, headers, secret_of(key), tolerance=tolerance, now=now)


def test_a_genuine_signature_over_a_body_that_is_not_a_json_object_is_rejected() -> None:
    for body in (b"[1,2]", b'"text"', b"not json", b"\xff\xfe"):
        headers = signed_headers("standard", [b"k" * 32], "m", NOW, body)
        with pytest.raises(InvalidSignature):
            verify(body, headers, SECRET, now=NOW)


def test_no_signature_headers_at_all_is_rejected() -> None:
    with pytest.raises(InvalidSignature):
        verify(b"{}", {}, SECRET, now=NOW)


# --- garbage ---------------------------------------------------------------------------

header_names = st.sampled_from(
    ["X-Timestamp", "x-signature", "webhook-id", "Webhook-Timestamp", "webhook-signature"]
) | st.text(max_size=12)
header_values = st.one_of(
    st.text(max_size=80),
    st.integers(-(2**40), 2**40).map(str),
    st.just(str(NOW)),
    st.from_regex(r"(sha256=[0-9a-f]{0,64},?){0,3}", fullmatch=True),
    st.from_regex(r"(v1,[A-Za-z0-9+/=]{0,44} ?){0,3}", fullmatch=True),
)
secrets = st.text(max_size=40) | keys.map(secret_of) | st.just(SECRET)


@settings(max_examples=100, deadline=None)
@given(
    body=st.binary(max_size=200) | bodies,
    headers=st.dictionaries(header_names, header_values, max_size=6),
    secret=secrets,
    tolerance=st.integers(-10, 10**6),
    now=st.none() | st.floats(-1e12, 1e12) | st.integers(-(2**40), 2**40),
)
def test_garbage_raises_nothing_but_invalid_signature(
    body: bytes, headers: dict[str, str], secret: str, tolerance: int, now: float | None
) -> None:
    try:
        payload: Any = verify(body, headers, secret, tolerance, now=now)
    except InvalidSignature:
        return
    assert isinstance(payload, dict)


# What an attacker can put in headers: huge digit runs, and bytes that a server decoding
# header values as UTF-8 with surrogateescape hands over as lone surrogates.
HOSTILE_HEADERS = [
    pytest.param(
        {"X-Timestamp": "1" + "0" * 400, "X-Signature": "sha256=00"}, id="x-timestamp 401 digits"
    ),
    pytest.param(
        {"webhook-id": "m", "webhook-timestamp": "1" + "0" * 400, "webhook-signature": "v1,AA"},
        id="webhook-timestamp 401 digits",
    ),
    pytest.param(
        {"X-Timestamp": "9" * 5000, "X-Signature": "sha256=00"}, id="x-timestamp 5000 digits"
    ),
    pytest.param(
        {"webhook-id": "msg_\udcff", "webhook-timestamp": str(NOW), "webhook-signature": "v1,AA"},
        id="webhook-id with a surrogate",
    ),
    pytest.param(
        {"webhook-id": "m", "webhook-timestamp": str(NOW), "webhook-signature": "v1,\udcff"},
        id="webhook-signature with a surrogate",
    ),
    pytest.param(
        {"X-Timestamp": str(NOW), "X-Signature": "sha256=\udcff"}, id="x-signature with a surrogate"
    ),
]


@pytest.mark.parametrize("headers", HOSTILE_HEADERS)
def test_hostile_headers_raise_invalid_signature(headers: dict[str, str]) -> None:
    with pytest.raises(InvalidSignature):
        verify(b"{}", headers, SECRET, now=float(NOW))


# A receiver whose secret is unset or cut short must not accept what anyone can sign
# with the same (empty or tiny) key.
@pytest.mark.parametrize("secret", ["", "whsec_", "whsec_AAAA"])
def test_an_empty_or_short_secret_verifies_nothing(secret: str) -> None:
    weak_key = base64.b64decode(secret.removeprefix("whsec_"))
    body = b'{"forged":true}'
    for scheme in SCHEMES:
        headers = signed_headers(scheme, [weak_key], "m", NOW, body)
        with pytest.raises(InvalidSignature):
            verify(body, headers, secret, now=NOW)


@pytest.mark.parametrize("secret", ["", "whsec_!!!", "whsec_é", "not a secret"])
def test_a_malformed_secret_raises_invalid_signature(secret: str) -> None:
    headers = signed_headers("x", [b"k" * 32], "m", NOW, b"{}")
    with pytest.raises(InvalidSignature):
        verify(b"{}", headers, secret, now=NOW)
