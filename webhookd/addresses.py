"""Which IP addresses a delivery may connect to: the SSRF judgement, pure.

Vendors choose endpoint URLs, so a URL must never turn webhookd into a way into the
platform's own network. Refused: loopback, private, link-local, multicast, unspecified,
reserved, shared (carrier-grade NAT) and other non-global addresses, and the cloud
metadata services (some of which sit on global addresses). IPv6 forms that carry an
IPv4 address (IPv4-mapped ``::ffff:a.b.c.d``, 6to4 ``2002::/16``, NAT64 ``64:ff9b::/96``)
are judged by the IPv4 address they reach.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address

Address = IPv4Address | IPv6Address

CLOUD_METADATA = frozenset(
    ip_address(text)
    for text in (
        "169.254.169.254",  # AWS, Google Cloud, Azure, OpenStack, Oracle, DigitalOcean
        "169.254.170.2",  # AWS ECS task metadata
        "fd00:ec2::254",  # AWS instance metadata over IPv6
        "100.100.100.200",  # Alibaba Cloud
        "168.63.129.16",  # Azure WireServer: a global address
        "192.0.0.192",  # Oracle Cloud (classic)
    )
)
_SHARED = IPv4Network("100.64.0.0/10")  # RFC 6598 carrier-grade NAT
_NAT64 = IPv6Network("64:ff9b::/96")  # RFC 6052: the low 32 bits are the IPv4 target


def refusal(address: Address) -> str | None:
    """Why a delivery must not connect to ``address``; None when it may."""
    if address in CLOUD_METADATA:
        return "cloud metadata"
    if isinstance(address, IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            inner, form = embedded
            reason = refusal(inner)
            return None if reason is None else f"{reason}, {form} {inner}"
    checks = (
        (address.is_loopback, "loopback"),
        (address.is_link_local, "link-local"),
        (address.is_multicast, "multicast"),
        (address.is_unspecified, "unspecified"),
        (address.is_reserved, "reserved"),
        (address.is_private, "private"),
        (isinstance(address, IPv4Address) and address in _SHARED, "shared address space"),
        (isinstance(address, IPv6Address) and address.is_site_local, "site-local"),
        (not address.is_global, "not globally routable"),
    )
    return next((label for refused, label in checks if refused), None)


def _embedded_ipv4(address: IPv6Address) -> tuple[IPv4Address, str] | None:
    """The IPv4 address an IPv6 address stands for, and the form that says so."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped, "IPv4-mapped"
    if address.sixtofour is not None:
        return address.sixtofour, "6to4 for"
    if address in _NAT64:
        return IPv4Address(int(address) & 0xFFFFFFFF), "NAT64 for"
    return None
