"""The SSRF judgement: which addresses a delivery may connect to."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from webhookd.addresses import refusal
from webhookd.endpoints import UrlPolicy, validate_url
from webhookd.errors import EndpointError


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("127.255.0.9", "loopback"),
        ("::1", "loopback"),
        ("10.0.0.1", "private"),
        ("10.255.255.254", "private"),
        ("172.16.5.4", "private"),
        ("192.168.0.10", "private"),
        ("fc00::1", "private"),
        ("fd12:3456::1", "private"),
        ("169.254.169.254", "cloud metadata"),
        ("169.254.170.2", "cloud metadata"),
        ("fd00:ec2::254", "cloud metadata"),
        ("100.100.100.200", "cloud metadata"),
        ("168.63.129.16", "cloud metadata"),
        ("169.254.1.1", "link-local"),
        ("fe80::1", "link-local"),
        ("fe80::1%eth0", "link-local"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("240.0.0.1", "reserved"),
        ("255.255.255.255", "reserved"),
        ("100.64.0.1", "shared address space"),
        ("fec0::1", "site-local"),
        ("192.0.2.1", "private"),  # documentation ranges are not routable either
        ("2001:db8::1", "private"),
        ("::ffff:127.0.0.1", "loopback, IPv4-mapped 127.0.0.1"),
        ("::ffff:10.1.2.3", "private, IPv4-mapped 10.1.2.3"),
        ("::ffff:169.254.169.254", "cloud metadata, IPv4-mapped 169.254.169.254"),
        ("2002:7f00:1::", "loopback, 6to4 for 127.0.0.1"),
        ("64:ff9b::a9fe:a9fe", "cloud metadata, NAT64 for 169.254.169.254"),
        ("::7f00:1", "reserved"),  # IPv4-compatible, deprecated
    ],
)
def test_hostile_addresses_are_refused_with_their_reason(address: str, reason: str) -> None:
    assert refusal(ipaddress.ip_address(address)) == reason


@pytest.mark.parametrize(
    "address",
    [
        "8.8.8.8",
        "1.1.1.1",
        "93.184.215.14",
        "2606:4700:4700::1111",
        "2a00:1450:4001::200e",
        "::ffff:8.8.8.8",
        "2002:808:808::1",
        "64:ff9b::808:808",
    ],
)
def test_public_addresses_are_allowed(address: str) -> None:
    assert refusal(ipaddress.ip_address(address)) is None


@settings(max_examples=300, deadline=None)
@given(address=st.ip_addresses())
def test_nothing_that_is_not_global_is_allowed(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address,
) -> None:
    if refusal(address) is None:
        assert (
            address.is_global
            or (address.ipv4_mapped is not None and address.ipv4_mapped.is_global)
            or (address.sixtofour is not None)
            or address in ipaddress.IPv6Network("64:ff9b::/96")
        )
        assert not (address.is_loopback or address.is_private or address.is_link_local)


@pytest.mark.parametrize(
    "url",
    [
        "https://168.63.129.16/hook",
        "https://[::ffff:127.0.0.1]/hook",
        "https://[64:ff9b::7f00:1]/hook",
        "https://100.64.0.1/hook",
    ],
)
def test_registration_refuses_every_literal_the_connector_would(url: str) -> None:
    with pytest.raises(EndpointError, match="private or local"):
        validate_url(url, UrlPolicy())
    assert validate_url(url, UrlPolicy(allow_private_targets=True)) == url
