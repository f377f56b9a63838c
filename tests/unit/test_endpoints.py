"""Endpoints: which events they take, which URLs they may have, and secret rotation."""

from __future__ import annotations

import base64
import json
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from webhookd.endpoints import (
    Endpoint,
    EndpointTls,
    RetiredSecret,
    UrlPolicy,
    matches,
    parse_patterns,
    validate_url,
)
from webhookd.errors import EndpointError
from webhookd.signing import public_key
from webhookd.urls import EndpointUrl
from webhookd.vault import Vault

STRICT = UrlPolicy()
LOCAL = UrlPolicy(require_https=False, allow_private_targets=True)
PROPERTY = settings(max_examples=60, deadline=None)


def secret_of(key: bytes) -> str:
    return "whsec_" + base64.b64encode(key).decode()


VAULT = Vault(b"m" * 32)
KEY_A, KEY_B, KEY_C = b"a" * 32, b"b" * 32, b"c" * 32
SECRET_A, SECRET_B, SECRET_C = secret_of(KEY_A), secret_of(KEY_B), secret_of(KEY_C)


def endpoint(**changes: object) -> Endpoint:
    fields: dict[str, object] = {
        "id": "ep_1",
        "vendor": "v_1",
        "url": "https://hooks.example.com/in",
        "secret": SECRET_A,
        "created_at": "2024-05-01T10:34:56.500Z",
    }
    fields.update(changes)
    return Endpoint(**fields)  # type: ignore[arg-type]


# --- patterns --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "event_type", "expected"),
    [
        ("*", "order.created", True),
        ("*", "x", True),
        ("order.*", "order.created", True),
        ("order.*", "order.line.added", True),
        ("order.*", "order", False),
        ("order.*", "orders.created", False),
        ("order.*", "reorder.created", False),
        ("order.created", "order.created", True),
        ("order.created", "order.created.v2", False),
        ("order.created", "order.create", False),
        ("order.created", "Order.created", False),
        ("order", "order.created", False),
    ],
)
def test_pattern_matching(pattern: str, event_type: str, expected: bool) -> None:
    assert matches(pattern, event_type) is expected


def test_an_endpoint_subscribes_to_what_any_pattern_matches_enabled_or_not() -> None:
    ep = endpoint(events=("order.*", "inventory.low_stock"))
    assert ep.subscribes("order.created")
    assert ep.subscribes("inventory.low_stock")
    assert not ep.subscribes("inventory.restocked")
    # a disabled endpoint still subscribes: its deliveries are held, not skipped
    assert ep.disabled("410 Gone", by="gone").subscribes("order.created")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("*", ("*",)),
        ("order.created", ("order.created",)),
        ("order.*, inventory.low_stock", ("order.*", "inventory.low_stock")),
        ("a.b,a.b, c", ("a.b", "c")),
        (" a ,, b ", ("a", "b")),
        (["order.*", "refund-issued"], ("order.*", "refund-issued")),
    ],
)
def test_parse_patterns(text: str | list[str], expected: tuple[str, ...]) -> None:
    assert parse_patterns(text) == expected


@pytest.mark.parametrize("text", ["", " ", ",", " , ", []])
def test_parse_patterns_wants_at_least_one(text: str | list[str]) -> None:
    with pytest.raises(EndpointError, match="at least one"):
        parse_patterns(text)


@pytest.mark.parametrize(
    "bad", ["order.*.created", "*.created", "order*", "or der", ".order", "order.**", "**", "é"]
)
def test_parse_patterns_names_the_bad_pattern(bad: str) -> None:
    with pytest.raises(EndpointError) as caught:
        parse_patterns(f"order.created,{bad}")
    assert "events" in str(caught.value)
    assert repr(bad) in str(caught.value)


# --- URLs ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "https://hooks.example.com/in",
        "https://hooks.example.com:8443/in?tenant=7",
        "https://hooks.example.com",
        "https://8.8.8.8/hook",
        "https://[2001:4860:4860::8888]/hook",
    ],
)
def test_public_https_urls_are_accepted_as_they_are(url: str) -> None:
    assert validate_url(url, STRICT) == url


@pytest.mark.parametrize(
    ("url", "policy", "message"),
    [
        ("http://hooks.example.com/in", STRICT, "https"),
        ("ftp://hooks.example.com/in", STRICT, "ftp scheme"),
        ("ftp://hooks.example.com/in", LOCAL, "ftp scheme"),
        ("hooks.example.com/in", STRICT, "no scheme"),
        ("https://", STRICT, "no host"),
        ("https:///in", STRICT, "no host"),
        ("https://user:pw@hooks.example.com/in", STRICT, "credentials"),
        ("https://user@hooks.example.com/in", STRICT, "credentials"),
        ("https://hooks.example.com/in#top", STRICT, "fragment"),
        ("https://hooks.example.com:0/in", STRICT, "port"),
        ("https://hooks.example.com:99999/in", STRICT, "not valid"),
        ("https://hooks.example.com/a b", STRICT, "spaces"),
        ("https://hooks.example.com/\x00", STRICT, "control"),
        ("https://hooks.example.com/" + "a" * 2048, STRICT, "longer than 2048"),
        ("https://[::1/in", STRICT, "not valid"),
    ],
)
def test_refused_urls_say_why(url: str, policy: UrlPolicy, message: str) -> None:
    with pytest.raises(EndpointError, match=message):
        validate_url(url, policy)


def test_http_is_accepted_when_https_is_not_required() -> None:
    policy = UrlPolicy(require_https=False)
    assert validate_url("http://hooks.example.com/in", policy) == "http://hooks.example.com/in"


PRIVATE = [
    "https://localhost/in",
    "https://LOCALHOST:8443/in",
    "https://api.localhost/in",
    "https://127.0.0.1/in",
    "https://127.8.9.10/in",
    "https://[::1]/in",
    "https://10.0.0.1/in",
    "https://172.16.0.1/in",
    "https://192.168.1.10/in",
    "https://169.254.169.254/latest/meta-data",
    "https://0.0.0.0/in",
    "https://[fe80::1]/in",
    "https://[fd00::1]/in",
    "https://[::ffff:127.0.0.1]/in",
]


@pytest.mark.parametrize("url", PRIVATE)
def test_private_targets_are_refused_unless_allowed(url: str) -> None:
    with pytest.raises(EndpointError, match="private or local") as caught:
        validate_url(url, STRICT)
    assert "allow_private_targets" in str(caught.value)
    assert validate_url(url, UrlPolicy(allow_private_targets=True)) == url


# The system resolver reads each of these as 127.0.0.1 without asking DNS.
@pytest.mark.parametrize(
    "url",
    [
        "https://127.1/in",
        "https://2130706433/in",
        "https://0x7f000001/in",
        "https://0177.0.0.1/in",
    ],
)
def test_loopback_in_shorthand_ipv4_forms_is_refused(url: str) -> None:
    with pytest.raises(EndpointError, match="private or local"):
        validate_url(url, STRICT)


@pytest.mark.parametrize(
    ("url", "stored"),
    [
        ("https://hooks.example.com/in/café", "https://hooks.example.com/in/caf%C3%A9"),
        (
            "https://hooks.example.com/in?name=Zoë&x=1",
            "https://hooks.example.com/in?name=Zo%C3%AB&x=1",
        ),
        ("https://hooks.example.com/in/%C3%A9/é", "https://hooks.example.com/in/%C3%A9/%C3%A9"),
        ("https://Bücher.example:8443/in", "https://xn--bcher-kva.example:8443/in"),
        ("https://bücher.example/café", "https://xn--bcher-kva.example/caf%C3%A9"),
        (
            "https://例え.テスト/フック",
            "https://xn--r8jz45g.xn--zckzah/%E3%83%95%E3%83%83%E3%82%AF",
        ),
    ],
)
def test_non_ascii_urls_are_stored_percent_and_idna_encoded(url: str, stored: str) -> None:
    """As a browser sends them: what registers is what the transport sends, unchanged."""
    assert validate_url(url, STRICT) == stored
    assert validate_url(stored, STRICT) == stored


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("https://hooks.example.com/in\u00a0x", "spaces or control characters (found U+00A0)"),
        ("https://hooks.example.com/\x7f", "control characters (found U+007F)"),
        ("https://hooks.example.com/\u202e", "control characters (found U+202E)"),
        ("https://hooks..example.com/in", "not valid"),
        ("https://hooks.exa%6dple.com/in", "not a valid host name"),
        ("https://" + "a" * 64 + ".example.com/", "not valid"),
        ("https://[::zz]/in", "not valid"),
    ],
)
def test_urls_the_transport_could_not_send_are_refused(url: str, message: str) -> None:
    with pytest.raises(EndpointError, match=re.escape(message)):
        validate_url(url, LOCAL)


def test_a_hostname_that_idna_maps_onto_localhost_is_refused() -> None:
    """Fullwidth LOCALHOST: IDNA folds it to localhost, so it is judged as localhost."""
    with pytest.raises(EndpointError, match="host localhost is a private or local"):
        validate_url("https://\uff2c\uff2f\uff23\uff21\uff2c\uff28\uff2f\uff33\uff34/in", STRICT)


def test_percent_encoding_counts_toward_the_length_limit() -> None:
    url = "https://hooks.example.com/" + "é" * 1000
    with pytest.raises(EndpointError, match="once percent-encoded"):
        validate_url(url, STRICT)


@PROPERTY
@given(url=st.text(max_size=60) | st.text(max_size=40).map(lambda tail: "https://" + tail))
def test_validate_url_raises_only_endpoint_error(url: str) -> None:
    for policy in (STRICT, LOCAL):
        try:
            stored = validate_url(url, policy)
        except EndpointError as exc:
            assert str(exc).startswith("url")
        else:
            assert stored == url if url.isascii() else stored.isascii()
            assert validate_url(stored, policy) == stored
            assert re.fullmatch(r"[\x21-\x7e]+", EndpointUrl.parse(stored).target)


labels = st.text(st.characters(categories=["L", "N"]), min_size=1, max_size=8)


@PROPERTY
@given(
    host=st.lists(labels, min_size=1, max_size=3).map(".".join),
    path=st.text(max_size=20),
    query=st.none() | st.text(max_size=10),
)
def test_any_iri_registers_as_a_uri_or_is_refused(host: str, path: str, query: str | None) -> None:
    url = f"https://{host}/{path}" + ("" if query is None else f"?{query}")
    try:
        stored = validate_url(url, STRICT)
    except EndpointError as exc:
        assert str(exc).startswith("url")
    else:
        assert stored.isascii()
        assert validate_url(stored, STRICT) == stored
        parsed = EndpointUrl.parse(stored)
        assert re.fullmatch(r"[\x21-\x7e]+", parsed.target)
        assert parsed == EndpointUrl.parse(url)


# --- secrets and rotation --------------------------------------------------------------


def test_a_new_endpoint_signs_with_its_secret_only() -> None:
    assert endpoint().keys_at(0.0) == [KEY_A]


def test_an_endpoint_with_a_bad_secret_cannot_exist() -> None:
    with pytest.raises(EndpointError, match="whsec_"):
        endpoint(secret="not-a-secret")


def test_rotation_keeps_the_old_secret_until_the_grace_expires() -> None:
    rotated = endpoint().rotated(SECRET_B, now_s=1000.0, grace_s=3600.0)

    assert rotated.secret == SECRET_B
    assert rotated.retired == (RetiredSecret(SECRET_A, 4600.0),)
    assert rotated.keys_at(1000.0) == [KEY_B, KEY_A]
    assert rotated.keys_at(4599.999) == [KEY_B, KEY_A]
    assert rotated.keys_at(4600.0) == [KEY_B]
    assert rotated.keys_at(10**9) == [KEY_B]


def test_rotating_twice_keeps_every_live_secret_newest_first() -> None:
    once = endpoint().rotated(SECRET_B, now_s=1000.0, grace_s=3600.0)
    twice = once.rotated(SECRET_C, now_s=2000.0, grace_s=3600.0)

    assert twice.keys_at(2000.0) == [KEY_C, KEY_B, KEY_A]
    assert twice.keys_at(4600.0) == [KEY_C, KEY_B]
    assert twice.keys_at(5600.0) == [KEY_C]


def test_rotation_drops_secrets_already_expired() -> None:
    once = endpoint().rotated(SECRET_B, now_s=1000.0, grace_s=10.0)
    twice = once.rotated(SECRET_C, now_s=2000.0, grace_s=60.0)
    assert twice.retired == (RetiredSecret(SECRET_B, 2060.0),)


@PROPERTY
@given(
    steps=st.lists(
        st.tuples(st.binary(min_size=24, max_size=64), st.floats(0, 10_000)),
        min_size=1,
        max_size=5,
    ),
    probe_s=st.floats(0, 100_000),
)
def test_keys_at_is_the_current_key_then_unexpired_retired_ones(
    steps: list[tuple[bytes, float]], probe_s: float
) -> None:
    ep = endpoint()
    model_current, model_retired = KEY_A, []  # retired: (key, expires_s), newest first
    now_s = 0.0
    for key, grace_s in steps:
        now_s += 100.0
        ep = ep.rotated(secret_of(key), now_s=now_s, grace_s=grace_s)
        live = [(old, expires_s) for old, expires_s in model_retired if expires_s > now_s]
        model_retired = [(model_current, now_s + grace_s), *live]
        model_current = key

    expected = [model_current] + [old for old, expires_s in model_retired if expires_s > probe_s]
    assert ep.keys_at(probe_s) == expected


# --- storage and display ---------------------------------------------------------------


def test_json_round_trip_keeps_everything() -> None:
    ep = (
        endpoint(events=("order.*", "refund.issued"))
        .rotated(SECRET_B, now_s=1000.0, grace_s=3600.5)
        .disabled("endpoint answered 410 Gone")
    )
    back = Endpoint.from_json(ep.to_json(VAULT), VAULT)
    assert back == ep
    assert back.keys_at(1000.0) == ep.keys_at(1000.0) == [KEY_B, KEY_A]
    assert Endpoint.from_json(ep.to_json(VAULT).encode(), VAULT) == ep


@PROPERTY
@given(
    ep_id=st.text(max_size=20),
    vendor=st.text(max_size=20),
    url=st.text(max_size=40),
    events=st.lists(st.text(max_size=12), min_size=1, max_size=4).map(tuple),
    enabled=st.booleans(),
    reason=st.none() | st.text(max_size=30),
    retired=st.lists(
        st.builds(
            RetiredSecret,
            st.binary(min_size=24, max_size=64).map(secret_of),
            st.floats(allow_nan=False, allow_infinity=False),
        ),
        max_size=3,
    ).map(tuple),
)
def test_json_round_trip_property(
    ep_id: str,
    vendor: str,
    url: str,
    events: tuple[str, ...],
    enabled: bool,
    reason: str | None,
    retired: tuple[RetiredSecret, ...],
) -> None:
    ep = endpoint(
        id=ep_id,
        vendor=vendor,
        url=url,
        events=events,
        enabled=enabled,
        disabled_reason=reason,
        retired=retired,
    )
    assert Endpoint.from_json(ep.to_json(VAULT), VAULT) == ep


def test_public_shows_the_current_secret_and_never_a_retired_one() -> None:
    ep = endpoint().rotated(SECRET_B, now_s=1000.0, grace_s=3600.0)
    assert "secret" not in ep.public()
    shown = ep.public(secret=True)

    assert shown == {
        "id": "ep_1",
        "vendor": "v_1",
        "url": "https://hooks.example.com/in",
        "events": ["*"],
        "enabled": True,
        "disabled_reason": None,
        "disabled_by": None,
        "disabled_at": None,
        "last_status": None,
        "last_error": None,
        "created_at": "2024-05-01T10:34:56.500Z",
        "secret": SECRET_B,
        "signing": "hmac",
        "public_key": None,
        "ca_cert": None,
        "client_cert": None,
        "retry_schedule": None,
        "timeout": None,
        "concurrency": None,
        "headers": {},
        "paused_until": None,
    }
    text = json.dumps(shown)
    assert SECRET_A not in text
    assert SECRET_A.removeprefix("whsec_") not in text


def test_disable_and_enable_again() -> None:
    off = endpoint().disabled("endpoint answered 410 Gone")
    assert (off.enabled, off.disabled_reason) == (False, "endpoint answered 410 Gone")
    on = off.enabled_again()
    assert (on.enabled, on.disabled_reason) == (True, None)
    assert on == endpoint()


# --- secrets at rest ---------------------------------------------------------------------

SIGNING_KEY_A, SIGNING_KEY_B = "whsk_" + "QUFB" * 10 + "QUE=", "whsk_" + "QkJC" * 10 + "QkI="
CLIENT_KEY = "-----BEGIN PRIVATE KEY-----\nc2VjcmV0IGNsaWVudCBrZXk=\n-----END PRIVATE KEY-----"


def secret_bits(ep: Endpoint) -> list[str]:
    """Every secret an endpoint holds, and the base64 body of each."""
    values = [ep.secret, *(old.secret for old in ep.retired)]
    values += [key for key in (ep.signing_key, *(o.signing_key for o in ep.retired)) if key]
    bodies = [value.split("_", 1)[1] for value in values]
    return values + bodies + ["c2VjcmV0IGNsaWVudCBrZXk="]


def test_stored_form_holds_no_secret_and_round_trips() -> None:
    ep = endpoint(
        signing_key=SIGNING_KEY_A, tls=EndpointTls("CA PEM", "CERT PEM", CLIENT_KEY)
    ).rotated(SECRET_B, now_s=1000.0, grace_s=60.0, new_signing_key=SIGNING_KEY_B)
    stored = ep.to_json(VAULT)
    for bit in secret_bits(ep):
        assert bit not in stored
    raw = json.loads(stored)
    assert raw["sealed"].startswith(f"v1.{VAULT.current_id}.")
    assert (raw["ca_cert"], raw["client_cert"]) == ("CA PEM", "CERT PEM")
    back = Endpoint.from_json(stored, VAULT)
    assert back == ep
    assert back.tls is not None and back.tls.client_key == CLIENT_KEY
    assert len(back.signers_at(1000.0)) == 2 and len(back.signers_at(1060.0)) == 1


def test_a_seal_moved_to_another_endpoint_does_not_open() -> None:
    stored = json.loads(endpoint(id="ep_1").to_json(VAULT))
    stolen = json.loads(endpoint(id="ep_2", secret=SECRET_B).to_json(VAULT))
    stolen["sealed"] = stored["sealed"]
    moved = Endpoint.from_json(json.dumps(stolen), VAULT)
    assert moved.locked is not None and "damaged or were moved" in moved.locked
    assert moved.keys_at(0.0) == []


def test_an_endpoint_sealed_under_another_key_is_locked_not_lost() -> None:
    stored = endpoint().to_json(Vault(b"x" * 32))
    locked = Endpoint.from_json(stored, VAULT)
    assert locked.locked is not None and "secrets.key" in locked.locked
    assert locked.keys_at(0.0) == [] and locked.signers_at(0.0) == []
    shown = locked.public(secret=True)
    assert shown["secret"] is None and shown["locked"] == locked.locked
    with pytest.raises(EndpointError, match="cannot be saved"):
        locked.to_json(VAULT)
    assert Endpoint.from_json(stored, Vault(b"m" * 32, [b"x" * 32])) == endpoint()


def test_records_from_before_sealing_are_read_as_they_are() -> None:
    legacy = {
        "id": "ep_1",
        "vendor": "v_1",
        "url": "https://hooks.example.com/in",
        "events": ["*"],
        "enabled": True,
        "disabled_reason": None,
        "created_at": "2024-05-01T10:34:56.500Z",
        "secret": SECRET_B,
        "retired": [[SECRET_A, 4600.0]],
    }
    ep = Endpoint.from_json(json.dumps(legacy), VAULT)
    assert ep.keys_at(1000.0) == [KEY_B, KEY_A]
    assert "sealed" in json.loads(ep.to_json(VAULT))


def test_no_repr_shows_a_secret() -> None:
    ep = endpoint(signing_key=SIGNING_KEY_A, tls=EndpointTls("CA", "CERT", CLIENT_KEY)).rotated(
        SECRET_B, now_s=1000.0, grace_s=60.0, new_signing_key=SIGNING_KEY_B
    )
    text = repr(ep) + repr(ep.retired) + repr(ep.tls)
    for bit in secret_bits(ep):
        assert bit not in text


def test_ed25519_rotation_keeps_the_old_key_signing_for_the_grace() -> None:
    ep = endpoint(signing_key=SIGNING_KEY_A)
    first_public = ep.public_key
    assert first_public is not None and first_public.startswith("whpk_")
    assert ep.public()["signing"] == "ed25519"
    rotated = ep.rotated(SECRET_B, now_s=1000.0, grace_s=60.0, new_signing_key=SIGNING_KEY_B)
    assert rotated.public_key not in (None, first_public)
    assert [public_key(k) for k in rotated.signers_at(1059.0)] == [rotated.public_key, first_public]
    assert [public_key(k) for k in rotated.signers_at(1060.0)] == [rotated.public_key]
    hmac_only = endpoint().rotated(SECRET_B, now_s=1000.0, grace_s=60.0)
    assert hmac_only.signers_at(0.0) == [] and hmac_only.public_key is None
