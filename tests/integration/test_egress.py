"""SSRF defence end to end: the real connector, real sockets, a real daemon.

Every hostile target is served by a live loopback receiver where one can be, so a
refusal is proven by the receiver never seeing a connection, not only by an error.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import pytest
import trio
from conftest import AsyncRedis, entries, publish, recorded_attempts, running_daemon, until
from webhook_receiver import Receiver

from webhookd.config import Settings
from webhookd.egress import GuardedConnector, SocketAddress, open_socket
from webhookd.errors import ConnectError, TargetRefused
from webhookd.publisher import Publisher
from webhookd.transport import Transport

GUARD_S = 10
HEADERS = [("Content-Type", "application/json")]


async def post(transport: Transport, url: str) -> int:
    with trio.fail_after(GUARD_S):
        response = await transport.post("ep_1", url, HEADERS, b"{}", size=2, timeout_s=5)
    return response.status


def strict_transport(**changes: object) -> Transport:
    options: dict[str, object] = {"allow_private_targets": False, "require_https": False}
    options.update(changes)
    return Transport(connector=GuardedConnector(**options))  # type: ignore[arg-type]


# (url template, what the message must say); {port} is the receiver's loopback port
HOSTILE = [
    ("http://127.0.0.1:{port}/hook", "refused target 127.0.0.1 (loopback)"),
    ("http://[::1]:{port}/hook", "refused target ::1 (loopback)"),
    ("http://10.0.0.1:{port}/hook", "refused target 10.0.0.1 (private)"),
    ("http://10.255.1.2:{port}/hook", "refused target 10.255.1.2 (private)"),
    ("http://169.254.169.254/latest/meta-data/", "refused target 169.254.169.254 (cloud metadata)"),
    (
        "http://[::ffff:127.0.0.1]:{port}/hook",
        "refused target ::ffff:127.0.0.1 (loopback, IPv4-mapped 127.0.0.1)",
    ),
    ("http://localhost:{port}/hook", "refused target localhost: resolves to"),
    (
        "http://2130706433:{port}/hook",
        "refused target 2130706433: resolves to 127.0.0.1 (loopback)",
    ),
    (
        "http://0177.0.0.1:{port}/hook",
        "refused target 0177.0.0.1: resolves to 127.0.0.1 (loopback)",
    ),
    ("http://0x7f.1:{port}/hook", "refused target 0x7f.1: resolves to 127.0.0.1 (loopback)"),
    ("http://127.1:{port}/hook", "refused target 127.1: resolves to 127.0.0.1 (loopback)"),
    ("http://0.0.0.0:{port}/hook", "refused target 0.0.0.0 (unspecified)"),
]


@pytest.mark.parametrize(("template", "message"), HOSTILE)
async def test_hostile_targets_are_refused_by_default(
    receiver: Receiver, template: str, message: str
) -> None:
    url = template.format(port=receiver.port)
    transport = strict_transport()
    with pytest.raises(TargetRefused) as caught:
        await post(transport, url)
    assert message in str(caught.value)
    assert str(caught.value).endswith("; delivery.allow_private_targets is false")
    assert receiver.requests == []


async def test_allowing_private_targets_reaches_loopback(receiver: Receiver) -> None:
    transport = strict_transport(allow_private_targets=True)
    assert await post(transport, f"http://localhost:{receiver.port}/hook") == 200
    assert await post(transport, f"http://2130706433:{receiver.port}/hook") == 200
    assert len(receiver.requests) == 2


async def test_plain_http_is_refused_at_connect_when_https_is_required(receiver: Receiver) -> None:
    transport = strict_transport(allow_private_targets=True, require_https=True)
    with pytest.raises(TargetRefused, match=r"plain http and delivery\.require_https is true"):
        await post(transport, receiver.url())
    assert receiver.requests == []


class Rebinding:
    """A resolver whose answers change between lookups, as a rebinding attacker's DNS does."""

    def __init__(self, *answers: str) -> None:
        self.answers = list(answers)
        self.lookups = 0

    async def __call__(self, host: str, port: int) -> Sequence[tuple[int, SocketAddress]]:
        answer = self.answers[min(self.lookups, len(self.answers) - 1)]
        self.lookups += 1
        family = trio.socket.AF_INET6 if ":" in answer else trio.socket.AF_INET
        return [(family, (answer, port))]


async def test_dns_rebinding_cannot_slip_between_check_and_connect(receiver: Receiver) -> None:
    """The connection goes to the address that was vetted; the next lookup is vetted again.

    The first lookup answers a public address, and the opener (standing in for the
    Internet) carries that connection to the loopback receiver. The second lookup answers
    loopback, and that connection is refused before any socket is opened.
    """
    resolver = Rebinding("93.184.215.14", "127.0.0.1")
    connected: list[SocketAddress] = []

    async def internet(family: int, sockaddr: SocketAddress, source: str | None) -> trio.abc.Stream:
        connected.append(sockaddr)
        return await trio.open_tcp_stream("127.0.0.1", receiver.port)

    connector = GuardedConnector(
        allow_private_targets=False, require_https=False, resolver=resolver, opener=internet
    )
    transport = Transport(connector=connector)
    url = "http://rebind.example:8080/hook"
    with trio.fail_after(GUARD_S):
        response = await transport.post("ep_1", url, HEADERS, b"{}", size=2, timeout_s=5)
        assert response.status == 200
        assert connected == [("93.184.215.14", 8080)]
        await transport.aclose()  # every attempt from here on needs a new connection
        with pytest.raises(TargetRefused, match=r"rebind\.example: resolves to 127\.0\.0\.1"):
            await transport.post("ep_1", url, HEADERS, b"{}", size=2, timeout_s=5)
    assert resolver.lookups == 2
    assert connected == [("93.184.215.14", 8080)]


async def test_a_name_resolving_to_public_and_private_addresses_is_refused() -> None:
    async def mixed(host: str, port: int) -> Sequence[tuple[int, SocketAddress]]:
        return [
            (trio.socket.AF_INET, ("93.184.215.14", port)),
            (trio.socket.AF_INET, ("10.0.0.7", port)),
        ]

    transport = Transport(connector=GuardedConnector(require_https=False, resolver=mixed))
    with pytest.raises(TargetRefused, match=r"resolves to 10\.0\.0\.7 \(private\)"):
        await post(transport, "http://both.example/hook")


async def test_the_source_address_is_bound_before_connecting(nursery: trio.Nursery) -> None:
    peers: list[str] = []

    async def handler(stream: trio.SocketStream) -> None:
        peers.append(stream.socket.getpeername()[0])
        await stream.receive_some(65536)
        await stream.send_all(b"HTTP/1.1 204 No Content\r\n\r\n")

    listeners = await nursery.start(trio.serve_tcp, handler, 0)
    port = listeners[0].socket.getsockname()[1]
    connector = GuardedConnector(
        allow_private_targets=True, require_https=False, source_address="127.0.0.2"
    )
    assert await post(Transport(connector=connector), f"http://127.0.0.1:{port}/hook") == 204
    assert peers == ["127.0.0.2"]


async def test_a_source_address_of_another_family_cannot_connect(receiver: Receiver) -> None:
    connector = GuardedConnector(
        allow_private_targets=True, require_https=False, source_address="::1"
    )
    with pytest.raises(ConnectError, match=r"delivery\.source_address ::1"):
        await post(Transport(connector=connector), receiver.url())


async def test_connection_failures_name_every_address_tried() -> None:
    async def two(host: str, port: int) -> Sequence[tuple[int, SocketAddress]]:
        return [(trio.socket.AF_INET, ("127.0.0.1", 9)), (trio.socket.AF_INET, ("127.0.0.1", 9))]

    connector = GuardedConnector(
        allow_private_targets=True, require_https=False, resolver=two, opener=open_socket
    )
    with pytest.raises(ConnectError, match=r"connect to twice\.example:80 failed: .*refused"):
        await post(Transport(connector=connector), "http://twice.example/hook")


# --- through the daemon -------------------------------------------------------------------


async def test_a_refused_target_fails_the_attempt_with_a_clear_error(
    make_settings: Callable[..., Settings], receiver: Receiver, aredis: AsyncRedis
) -> None:
    """Registered while allowed, delivered once the policy forbids it: refused every attempt."""
    lenient = make_settings()
    strict = make_settings(
        delivery={"allow_private_targets": False}, retry={"schedule": [0.05], "jitter": 0}
    )
    async with running_daemon(lenient) as daemon:
        endpoint = await daemon.registry.add(
            "v_1", f"http://localhost:{receiver.port}/hook", now_s=time.time()
        )
    async with running_daemon(strict):
        assert strict.redis.url
        publisher = Publisher.from_url(strict.redis.url, stream=strict.stream.name)
        event_id = await publish(publisher, "order.created", vendor="v_1", data={"n": 1})
        with trio.fail_after(GUARD_S):
            await until(lambda: aredis.xlen(strict.stream.dead))
    assert receiver.requests == []
    [(_, dead)] = await entries(aredis, strict.stream.dead)
    assert dead["event_id"] == event_id and dead["endpoint_id"] == endpoint.id
    expected = (
        "refused target localhost: resolves to 127.0.0.1 (loopback); "
        "delivery.allow_private_targets is false"
    )
    assert expected in dead["last_error"]
    attempts = await recorded_attempts(aredis, strict.stream.name, event_id)
    errors = [attempt["error"] for attempt in attempts]
    assert len(errors) == 2 and all(expected in error for error in errors)


async def test_a_non_ascii_url_registers_and_its_deliveries_arrive(
    make_settings: Callable[..., Settings], receiver: Receiver
) -> None:
    """/in/café: stored percent-encoded at registration, then POSTed there, not refused."""
    settings = make_settings()
    assert settings.redis.url
    async with running_daemon(settings) as daemon:
        endpoint = await daemon.registry.add("v_1", receiver.url("/in/café"), now_s=time.time())
        assert endpoint.url == receiver.url("/in/caf%C3%A9")
        publisher = Publisher.from_url(settings.redis.url, stream=settings.stream.name)
        await publish(publisher, "order.created", vendor="v_1", data={"n": 1})
        with trio.fail_after(GUARD_S):
            [request] = await receiver.wait_for(1)
    assert (request.method, request.path) == ("POST", "/in/caf%C3%A9")
