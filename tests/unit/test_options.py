"""Per-endpoint delivery options: their validation, and how an endpoint keeps them."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from webhookd.endpoints import Endpoint
from webhookd.errors import EndpointError
from webhookd.options import (
    NO_OPTIONS,
    DeliveryOptions,
    attempt_timeout,
    concurrency,
    delivery_options,
    retry_schedule,
    static_headers,
)
from webhookd.signing import new_secret
from webhookd.vault import Vault

VAULT = Vault(b"k" * 32)
SECRET = new_secret(b"s" * 24)


def test_headers_are_taken_from_an_object_or_lines() -> None:
    expected = (("X-Team", "orders"), ("Authorization", "Bearer abc"))
    assert static_headers({"X-Team": "orders", "Authorization": "Bearer abc"}) == expected
    assert static_headers(["X-Team: orders", "Authorization:  Bearer abc "]) == expected
    assert static_headers(None) == () == static_headers({})


@pytest.mark.parametrize(
    "name",
    ["X-Signature", "x-timestamp", "X-Event-ID", "X-Event-Type", "webhook-id",
     "Webhook-Signature", "Content-Type", "Content-Length", "Host", "User-Agent",
     "Connection", "Transfer-Encoding", "Keep-Alive", "Upgrade", "TE", "Trailer",
     "Proxy-Authorization"],
)  # fmt: skip
def test_reserved_headers_are_refused(name: str) -> None:
    with pytest.raises(EndpointError, match=name):
        static_headers({name: "x"})


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({"X-A": "one\r\nX-Injected: two"}, "one line"),
        ({"X-A": "bad\nvalue"}, "one line"),
        ({"X-A": "caf\u00e9"}, "visible ASCII"),
        ({"X A": "x"}, "not a header name"),
        ({"X-A:": "x"}, "not a header name"),
        ({"": "x"}, "not a header name"),
        ({"X-A": "x" * 1025}, "at most 1024"),
        (["no colon"], "not 'Name: value'"),
        ({f"X-{i}": "x" for i in range(21)}, "at most 20"),
        ("X-A: 1", "an object"),
    ],
)
def test_bad_headers_are_refused(headers: object, message: str) -> None:
    with pytest.raises(EndpointError, match=message):
        static_headers(headers)


@given(st.tuples(st.text(), st.sampled_from("\r\n\x00\x7f"), st.text()).map("".join))
def test_no_value_with_cr_lf_or_nul_passes(value: str) -> None:
    with pytest.raises(EndpointError):
        static_headers({"X-Note": value})


def test_retry_schedules_of_any_length() -> None:
    assert retry_schedule("1,2,4") == (1.0, 2.0, 4.0)
    assert retry_schedule([60, 3600, 21600, 86400]) == (60.0, 3600.0, 21600.0, 86400.0)
    assert retry_schedule([]) == ()
    assert retry_schedule(None) is None


@pytest.mark.parametrize("value", ["1,x", [0], [-1], [True], [8 * 86400], [1.0] * 51, "1,,2"])
def test_bad_retry_schedules_are_refused(value: object) -> None:
    with pytest.raises(EndpointError, match="retry_schedule"):
        retry_schedule(value)


def test_timeout_and_concurrency_are_checked() -> None:
    assert attempt_timeout(2.5) == 2.5 and attempt_timeout(None) is None
    assert concurrency(4) == 4 and concurrency(None) is None
    assert concurrency(2.0) == 2  # JSON Schema's integers include 2.0
    for bad_timeout in (0, -1, 301, "5", True, float("nan")):
        with pytest.raises(EndpointError, match="timeout"):
            attempt_timeout(bad_timeout)
    for bad_concurrency in (0, 1025, 2.5, "4", True):
        with pytest.raises(EndpointError, match="concurrency"):
            concurrency(bad_concurrency)


def test_changes_apply_and_null_goes_back_to_the_default() -> None:
    options = delivery_options(
        {"retry_schedule": [5, 60], "timeout": 3, "concurrency": 2, "headers": {"X-A": "1"}},
        NO_OPTIONS,
    )
    assert options == DeliveryOptions((5.0, 60.0), 3.0, 2, (("X-A", "1"),))
    assert delivery_options({"timeout": None}, options).timeout_s is None
    assert delivery_options({"url": "https://x"}, options) == options


def test_an_endpoint_keeps_its_options_and_seals_its_headers() -> None:
    options = DeliveryOptions((1.0, 3600.0), 2.0, 3, (("Authorization", "Bearer s3cr3t"),))
    endpoint = Endpoint("ep_1", "v_1", "https://hooks.example.com/in", SECRET, options=options)
    stored = endpoint.to_json(VAULT)
    assert "s3cr3t" not in stored
    assert json.loads(stored)["retry_schedule"] == [1.0, 3600.0]
    again = Endpoint.from_json(stored, VAULT)
    assert again.options == options
    shown = again.public()
    assert shown["headers"] == {"Authorization": "Bearer s3cr3t"}
    assert (shown["timeout"], shown["concurrency"]) == (2.0, 3)


def test_an_endpoint_stored_before_options_has_none() -> None:
    stored = json.loads(Endpoint("ep_1", "v_1", "https://a.example", SECRET).to_json(VAULT))
    for name in ("retry_schedule", "timeout", "concurrency"):
        del stored[name]
    assert Endpoint.from_json(json.dumps(stored), VAULT).options == NO_OPTIONS
