"""The delivery connector: where a delivery's TCP connection may go, and from where.

Every new connection resolves the endpoint's host, judges every address it resolves to
(``webhookd.addresses``), and connects to one of exactly those addresses, so a DNS
answer that changes between the check and the connection (DNS rebinding) cannot slip
through: there is no second lookup. If any address is refused, the whole host is, since
an attacker with a name that resolves to both a public and a private address would
otherwise win some of the time. A kept-alive connection stays bound to the address that
was vetted when it was opened. Plain ``http://`` is refused here too when
``delivery.require_https`` is true, for endpoints registered before it was. Redirects
are never followed (the transport hands any 3xx back as a failed attempt).

The source address (``delivery.source_address``) is bound before connecting, so
vendors can allowlist the platform's egress addresses.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import trio

from webhookd.addresses import refusal
from webhookd.config import DeliverySettings
from webhookd.errors import ConnectError, TargetRefused
from webhookd.transport import Origin, Transport

SocketAddress = tuple[Any, ...]  # (host, port) or (host, port, flowinfo, scope_id)
Resolver = Callable[[str, int], Awaitable[Sequence[tuple[int, SocketAddress]]]]
Opener = Callable[[int, SocketAddress, str | None], Awaitable[trio.abc.Stream]]


async def resolve(host: str, port: int) -> list[tuple[int, SocketAddress]]:
    """(family, socket address) for each address of ``host``, as the system resolves it."""
    infos = await trio.socket.getaddrinfo(host, port, type=trio.socket.SOCK_STREAM)
    return [(family, sockaddr) for family, _, _, _, sockaddr in infos]


async def open_socket(family: int, sockaddr: SocketAddress, source: str | None) -> trio.abc.Stream:
    """A TCP stream to exactly ``sockaddr``, from ``source`` when one is set."""
    sock = trio.socket.socket(family, trio.socket.SOCK_STREAM)
    try:
        if source is not None:
            await sock.bind((source, 0))
        await sock.connect(sockaddr)
    except BaseException:
        sock.close()
        raise
    return trio.SocketStream(sock)


class GuardedConnector:
    """A transport connector that vets every address before connecting to it."""

    def __init__(
        self,
        *,
        allow_private_targets: bool = False,
        require_https: bool = True,
        source_address: str | None = None,
        resolver: Resolver = resolve,
        opener: Opener = open_socket,
    ) -> None:
        self._allow_private = allow_private_targets
        self._require_https = require_https
        self._source = source_address
        self._source_family = (
            None
            if source_address is None
            else trio.socket.AF_INET6
            if ipaddress.ip_address(source_address).version == 6
            else trio.socket.AF_INET
        )
        self._resolve = resolver
        self._open = opener

    async def __call__(self, origin: Origin) -> trio.abc.Stream:
        if self._require_https and origin.scheme != "https":
            raise TargetRefused(
                f"refused target {origin.host}: plain http and delivery.require_https is true"
            )
        candidates = list(dict.fromkeys(await self._resolve(origin.host, origin.port)))
        if not self._allow_private:
            for _, sockaddr in candidates:
                self._vet(origin.host, sockaddr[0])
        if self._source_family is not None:
            candidates = [c for c in candidates if c[0] == self._source_family]
            if not candidates:
                raise ConnectError(
                    f"connect to {origin} failed: no address of the family of "
                    f"delivery.source_address {self._source}"
                )
        failures: list[OSError] = []
        for family, sockaddr in candidates:
            try:
                return await self._open(family, sockaddr, self._source)
            except OSError as exc:
                failures.append(exc)
        raise OSError("; ".join(dict.fromkeys(str(f) for f in failures)) or "no address")

    def _vet(self, host: str, text: str) -> None:
        address = ipaddress.ip_address(text)
        reason = refusal(address)
        if reason is None:
            return
        shown = host if _literal(host) == address else f"{host}: resolves to {address}"
        raise TargetRefused(
            f"refused target {shown} ({reason}); delivery.allow_private_targets is false"
        )


def _literal(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def delivery_transport(settings: DeliverySettings) -> Transport:
    """The daemon's transport: pools per endpoint, connecting only where policy allows."""
    connector = GuardedConnector(
        allow_private_targets=settings.allow_private_targets,
        require_https=settings.require_https,
        source_address=settings.source_address,
    )
    return Transport(body_cap=settings.max_response_body, connector=connector)
