"""The HTTP/1.1 client transport against real loopback receivers that answer scripted bytes."""

from __future__ import annotations

import contextlib
import socket
import ssl
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Literal

import h11
import pytest
import trio
import trio.testing
import trustme
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from webhookd.endpoints import UrlPolicy, validate_url
from webhookd.errors import (
    ConnectError,
    EndpointError,
    ProtocolError,
    TimeoutError_,
    TransportError,
)
from webhookd.transport import ConnectionPool, Origin, Response, Transport

GUARD_S = 10  # no test here should come near this; it only stops a hang
HEADERS = [("Content-Type", "application/json"), ("X-Event-Type", "order.created")]
BODY = b'{"event": "order.created"}'
PLAIN_TLS = ssl.create_default_context()  # built once: it reads the system's CA store
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


@dataclass(frozen=True)
class Reply:
    """One scripted answer: raw bytes, then what the receiver does with the connection."""

    data: bytes = OK
    then: Literal["keep", "close", "stall", "reset"] = "keep"
    gate: trio.Event | None = None  # answer only once this is set


@dataclass
class Receiver:
    """A loopback server answering each request, on any connection, with the next reply."""

    replies: list[Reply]
    url: str = ""
    connections: int = 0
    open: int = 0
    max_open: int = 0
    closed: int = 0
    requests: list[tuple[h11.Request, bytes]] = field(default_factory=list)
    _changed: trio.Event = field(default_factory=trio.Event)

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        while not predicate():
            await self._changed.wait()

    def _note_change(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def handle(self, stream: trio.abc.Stream) -> None:
        self.connections += 1
        self.open += 1
        self.max_open = max(self.max_open, self.open)
        self._note_change()
        try:
            await self._serve(stream)
        except trio.BrokenResourceError:
            pass  # the client went away
        finally:
            self.open -= 1
            self.closed += 1
            self._note_change()

    async def _serve(self, stream: trio.abc.Stream) -> None:
        leftover = b""
        while True:
            parser = h11.Connection(h11.SERVER)
            if leftover:
                parser.receive_data(leftover)
            request = await _read_request(stream, parser)
            if request is None:
                return
            leftover = parser.trailing_data[0]
            self.requests.append(request)
            self._note_change()
            reply = self.replies.pop(0) if self.replies else Reply()
            if reply.gate is not None:
                await reply.gate.wait()
            await stream.send_all(reply.data)
            if reply.then == "close":
                return
            if reply.then == "reset" and isinstance(stream, trio.SocketStream):
                stream.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                return
            if reply.then == "stall":  # until the client gives up
                while await stream.receive_some(65536):
                    pass
                return


async def _read_request(
    stream: trio.abc.Stream, parser: h11.Connection
) -> tuple[h11.Request, bytes] | None:
    request: h11.Request | None = None
    body = bytearray()
    while True:
        event = parser.next_event()
        if event is h11.NEED_DATA:
            parser.receive_data(bytes(await stream.receive_some(65536)))
        elif isinstance(event, h11.Request):
            request = event
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage):
            assert request is not None
            return request, bytes(body)
        else:
            return None


serve_loopback = partial(trio.serve_tcp, host="127.0.0.1")
StartReceiver = Callable[..., Awaitable[Receiver]]


@pytest.fixture
def start_receiver(nursery: trio.Nursery) -> StartReceiver:
    async def start(*replies: Reply, tls: ssl.SSLContext | None = None) -> Receiver:
        receiver = Receiver(list(replies))
        if tls is None:
            listeners = await nursery.start(serve_loopback, receiver.handle, 0)
            port = listeners[0].socket.getsockname()[1]
            receiver.url = f"http://127.0.0.1:{port}/hooks/in?x=1"
        else:
            serve_tls = partial(trio.serve_ssl_over_tcp, host="127.0.0.1", https_compatible=True)
            listeners = await nursery.start(serve_tls, receiver.handle, 0, tls)
            port = listeners[0].transport_listener.socket.getsockname()[1]
            receiver.url = f"https://127.0.0.1:{port}/hooks/in"
        return receiver

    return start


@pytest.fixture
def stepped_clock() -> trio.testing.MockClock:
    """Real time plus explicit jumps; no autojump, which could fire mid real I/O."""
    return trio.testing.MockClock(rate=1)


@pytest.fixture
async def transport() -> AsyncIterator[Transport]:
    transport = Transport(ssl_context=PLAIN_TLS)
    yield transport
    await transport.aclose()


@pytest.fixture
def opened() -> list[trio.SocketStream]:
    return []


@pytest.fixture
async def recording_transport(opened: list[trio.SocketStream]) -> AsyncIterator[Transport]:
    """A transport whose connections are kept in `opened`, to check that they get closed."""

    async def recording_connector(origin: Origin) -> trio.abc.Stream:
        stream = await trio.open_tcp_stream(origin.host, origin.port)
        opened.append(stream)
        return stream

    transport = Transport(ssl_context=PLAIN_TLS, connector=recording_connector)
    yield transport
    await transport.aclose()


def is_closed(stream: trio.SocketStream) -> bool:
    return stream.socket.fileno() == -1


async def post(transport: Transport, url: str, *, timeout_s: float = 5, size: int = 4) -> Response:
    return await transport.post("ep_1", url, HEADERS, BODY, size=size, timeout_s=timeout_s)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# --- requests and responses ------------------------------------------------------------


async def test_request_carries_host_length_and_caller_headers(
    transport: Transport, start_receiver: StartReceiver
) -> None:
    receiver = await start_receiver()
    with trio.fail_after(GUARD_S):
        response = await post(transport, receiver.url)
    assert (response.status, response.body, response.body_truncated) == (200, b"ok", False)
    assert response.header("Content-Length") == "2"
    [(request, body)] = receiver.requests
    assert (request.method, request.target, body) == (b"POST", b"/hooks/in?x=1", BODY)
    sent = {name: value for name, value in request.headers}
    assert sent[b"host"] == receiver.url.split("/")[2].encode()
    assert sent[b"content-length"] == str(len(BODY)).encode()
    assert sent[b"x-event-type"] == b"order.created"


async def test_chunked_body_is_assembled(
    transport: Transport, start_receiver: StartReceiver
) -> None:
    chunked = (
        b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
    )
    receiver = await start_receiver(Reply(chunked), Reply())
    with trio.fail_after(GUARD_S):
        response = await post(transport, receiver.url)
        assert (response.status, response.body) == (201, b"abcde")
        await post(transport, receiver.url)
    assert receiver.connections == 1


async def test_redirect_is_returned_not_followed(
    transport: Transport, start_receiver: StartReceiver
) -> None:
    redirect = b"HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:1/\r\nContent-Length: 0\r\n\r\n"
    receiver = await start_receiver(Reply(redirect))
    with trio.fail_after(GUARD_S):
        response = await post(transport, receiver.url)
    assert response.status == 302
    assert response.header("location") == "http://127.0.0.1:1/"
    assert len(receiver.requests) == 1


async def test_informational_responses_are_skipped(
    transport: Transport, start_receiver: StartReceiver
) -> None:
    receiver = await start_receiver(
        Reply(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 102 Processing\r\n\r\n" + OK)
    )
    with trio.fail_after(GUARD_S):
        response = await post(transport, receiver.url)
    assert (response.status, response.body) == (200, b"ok")


async def test_body_over_the_cap_is_truncated_and_its_connection_dropped(
    start_receiver: StartReceiver,
) -> None:
    big = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"x" * 100
    exact = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n" + b"y" * 10
    receiver = await start_receiver(Reply(big), Reply(exact), Reply())
    transport = Transport(body_cap=10)
    with trio.fail_after(GUARD_S):
        response = await post(transport, receiver.url)
        assert (response.body, response.body_truncated) == (b"x" * 10, True)
        response = await post(transport, receiver.url)
        assert (response.body, response.body_truncated) == (b"y" * 10, False)
        await post(transport, receiver.url)
        await transport.aclose()
    assert receiver.connections == 2


# --- request heads ---------------------------------------------------------------------


async def test_static_headers_follow_host_and_precede_the_requests_own(
    transport: Transport, start_receiver: StartReceiver
) -> None:
    receiver = await start_receiver()
    static = (("Content-Type", "application/json"), ("User-Agent", "webhookd/test"))
    with trio.fail_after(GUARD_S):
        await transport.post(
            "ep_1", receiver.url, [("webhook-id", "msg_1")], BODY,
            size=1, timeout_s=5, static_headers=static,
        )  # fmt: skip
    [(request, body)] = receiver.requests
    assert body == BODY
    assert [(bytes(name), bytes(value)) for name, value in request.headers] == [
        (b"host", receiver.url.split("/")[2].encode()),
        (b"content-type", b"application/json"),
        (b"user-agent", b"webhookd/test"),
        (b"webhook-id", b"msg_1"),
        (b"content-length", str(len(BODY)).encode()),
    ]


async def test_new_static_headers_or_path_keep_the_connection(
    transport: Transport, start_receiver: StartReceiver
) -> None:
    receiver = await start_receiver()
    other_path = receiver.url.replace("/hooks/in?x=1", "/other")
    with trio.fail_after(GUARD_S):
        for url, static in [
            (receiver.url, (("User-Agent", "a"),)),
            (receiver.url, [("User-Agent", "a")]),  # equal, as a list: the same route
            (receiver.url, (("User-Agent", "b"),)),
            (other_path, (("User-Agent", "b"),)),
        ]:
            await transport.post("ep_1", url, [], BODY, size=1, timeout_s=5, static_headers=static)
    sent = [
        (request.target, dict(request.headers)[b"user-agent"]) for request, _ in receiver.requests
    ]
    assert sent == [
        (b"/hooks/in?x=1", b"a"),
        (b"/hooks/in?x=1", b"a"),
        (b"/hooks/in?x=1", b"b"),
        (b"/other", b"b"),
    ]
    assert receiver.connections == 1


UNSENDABLE = [
    ("X-Evil", "a\r\nX-Injected: 1"),
    ("X-Evil", "a\nX-Injected: 1"),
    ("X-Evil", "a\rb"),
    ("X-Evil", "a\x00b"),
    ("X-Evil\r\nX-Injected", "1"),
    ("X Evil", "1"),
    ("X-Evil:", "1"),
    ("", "1"),
    ("X-Evil", "café"),
    ("Content-Length", "0"),
    ("host", "evil.example"),
    ("Transfer-Encoding", "chunked"),
]


@pytest.mark.parametrize("header", UNSENDABLE, ids=repr)
@pytest.mark.parametrize("where", ["per-request", "static"])
async def test_a_header_http_cannot_carry_is_refused_before_any_connection(
    transport: Transport,
    start_receiver: StartReceiver,
    header: tuple[str, str],
    where: str,
) -> None:
    receiver = await start_receiver()
    headers, static = ([header], ()) if where == "per-request" else ([], (header,))
    with trio.fail_after(GUARD_S):
        with pytest.raises(ProtocolError, match=r"cannot send this request to 127\.0\.0\.1"):
            await transport.post(
                "ep_1", receiver.url, headers, BODY, size=1, timeout_s=5, static_headers=static
            )
        assert receiver.connections == 0
        assert (await post(transport, receiver.url, size=1)).status == 200
    [(request, _)] = receiver.requests
    assert b"x-injected" not in dict(request.headers)


async def test_a_non_ascii_url_is_registered_and_sent_percent_encoded(
    transport: Transport, start_receiver: StartReceiver
) -> None:
    """https://hooks.example.com/in/café: accepted by registration, and delivered."""
    receiver = await start_receiver()
    raw = receiver.url.replace("/hooks/in?x=1", "/in/café?name=Zoë")
    stored = validate_url(raw, UrlPolicy(require_https=False, allow_private_targets=True))
    assert stored == receiver.url.replace("/hooks/in?x=1", "/in/caf%C3%A9?name=Zo%C3%AB")
    with trio.fail_after(GUARD_S):
        assert (await post(transport, stored)).status == 200
        assert (await post(transport, raw)).status == 200  # stored before normalizing
    targets = [request.target for request, _ in receiver.requests]
    assert targets == [b"/in/caf%C3%A9?name=Zo%C3%AB"] * 2


# --- keep-alive ------------------------------------------------------------------------


async def test_sequential_requests_share_one_connection(
    transport: Transport, start_receiver: StartReceiver
) -> None:
    receiver = await start_receiver()
    with trio.fail_after(GUARD_S):
        for _ in range(5):
            assert (await post(transport, receiver.url)).status == 200
    assert (receiver.connections, len(receiver.requests)) == (1, 5)


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok",
        b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
    ],
    ids=["connection-close", "http-1.0"],
)
async def test_connection_the_server_wants_closed_is_not_reused(
    transport: Transport, start_receiver: StartReceiver, answer: bytes
) -> None:
    receiver = await start_receiver(Reply(answer), Reply())
    with trio.fail_after(GUARD_S):
        assert (await post(transport, receiver.url)).body == b"ok"
        assert (await post(transport, receiver.url)).body == b"ok"
    assert receiver.connections == 2


async def test_http_1_0_body_read_until_close(
    transport: Transport, start_receiver: StartReceiver
) -> None:
    receiver = await start_receiver(Reply(b"HTTP/1.0 200 OK\r\n\r\nuntil eof", then="close"))
    with trio.fail_after(GUARD_S):
        assert (await post(transport, receiver.url)).body == b"until eof"


@pytest.mark.parametrize("then", ["close", "reset"])
async def test_idle_connection_closed_by_the_server_is_replaced(
    transport: Transport, start_receiver: StartReceiver, then: Literal["close", "reset"]
) -> None:
    receiver = await start_receiver(Reply(then=then), Reply())
    with trio.fail_after(GUARD_S):
        await post(transport, receiver.url)
        await receiver.wait_until(lambda: receiver.closed == 1)
        assert (await post(transport, receiver.url)).status == 200
    assert receiver.connections == 2


async def test_fresh_connection_failure_is_not_retried(
    transport: Transport, start_receiver: StartReceiver
) -> None:
    receiver = await start_receiver(Reply(b"", then="close"))
    with trio.fail_after(GUARD_S), pytest.raises(ProtocolError, match="without a response"):
        await post(transport, receiver.url)
    assert receiver.connections == 1


async def test_reused_connection_that_answered_garbage_is_not_retried(
    recording_transport: Transport,
    opened: list[trio.SocketStream],
    start_receiver: StartReceiver,
) -> None:
    receiver = await start_receiver(Reply(), Reply(b"HTTP/1.1 abc\r\n\r\n"))
    with trio.fail_after(GUARD_S):
        await post(recording_transport, receiver.url)
        with pytest.raises(ProtocolError, match="malformed response"):
            await post(recording_transport, receiver.url)
    assert (receiver.connections, len(receiver.requests)) == (1, 2)
    assert [is_closed(stream) for stream in opened] == [True]


async def test_http_1_1_body_read_until_close_ends_the_connection(
    transport: Transport, start_receiver: StartReceiver
) -> None:
    receiver = await start_receiver(Reply(b"HTTP/1.1 200 OK\r\n\r\nuntil eof", then="close"))
    with trio.fail_after(GUARD_S):
        assert (await post(transport, receiver.url)).body == b"until eof"
        assert (await post(transport, receiver.url)).body == b"ok"
    assert receiver.connections == 2


async def test_bytes_after_a_response_end_the_connection(
    transport: Transport, start_receiver: StartReceiver
) -> None:
    unsolicited = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nstale"
    receiver = await start_receiver(Reply(OK + unsolicited), Reply())
    with trio.fail_after(GUARD_S):
        assert (await post(transport, receiver.url)).body == b"ok"
        assert (await post(transport, receiver.url)).body == b"ok"
    assert receiver.connections == 2


async def test_idle_connection_past_expiry_is_not_reused(
    stepped_clock: trio.testing.MockClock, start_receiver: StartReceiver
) -> None:
    receiver = await start_receiver()
    pool = ConnectionPool(Origin.from_url(receiver.url), size=2, keepalive_expiry_s=30)
    with trio.fail_after(GUARD_S + 60):
        await pool.request("POST", "/", HEADERS, BODY, timeout_s=5)
        stepped_clock.jump(29)
        await pool.request("POST", "/", HEADERS, BODY, timeout_s=5)
        assert receiver.connections == 1
        stepped_clock.jump(31)
        await pool.request("POST", "/", HEADERS, BODY, timeout_s=5)
        await pool.aclose()
    assert receiver.connections == 2


# --- the pool's slots and the timeout ----------------------------------------------------


async def test_pool_never_opens_more_connections_than_its_size(
    start_receiver: StartReceiver,
) -> None:
    gate = trio.Event()
    receiver = await start_receiver(Reply(gate=gate), Reply(gate=gate), Reply(gate=gate))
    connects = 0

    async def counting_connector(origin: Origin) -> trio.abc.Stream:
        nonlocal connects
        connects += 1
        return await trio.open_tcp_stream(origin.host, origin.port)

    transport = Transport(connector=counting_connector)
    statuses: list[int] = []

    async def one() -> None:
        statuses.append((await post(transport, receiver.url, size=2)).status)

    with trio.fail_after(GUARD_S):
        async with trio.open_nursery() as nursery:
            for _ in range(3):
                nursery.start_soon(one)
            await receiver.wait_until(lambda: len(receiver.requests) == 2)
            await trio.testing.wait_all_tasks_blocked()
            assert connects == 2  # the third request waits for a slot, not for a connection
            gate.set()
        await transport.aclose()
    assert statuses == [200, 200, 200]
    assert (connects, receiver.connections, receiver.max_open) == (2, 2, 2)


async def test_waiting_for_a_slot_does_not_count_against_the_timeout(
    stepped_clock: trio.testing.MockClock, start_receiver: StartReceiver
) -> None:
    gate = trio.Event()
    receiver = await start_receiver(Reply(gate=gate), Reply())
    transport = Transport(ssl_context=PLAIN_TLS)
    statuses: list[int] = []

    async def one(timeout_s: float) -> None:
        statuses.append((await post(transport, receiver.url, size=1, timeout_s=timeout_s)).status)

    with trio.fail_after(GUARD_S + 50):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(one, 100)
            await receiver.wait_until(lambda: len(receiver.requests) == 1)
            nursery.start_soon(one, 5)
            await trio.testing.wait_all_tasks_blocked()
            stepped_clock.jump(50)  # far past the second request's timeout, while it waits
            gate.set()
        await transport.aclose()
    assert statuses == [200, 200]


async def test_stalled_response_times_out_and_its_connection_is_closed(
    transport: Transport, start_receiver: StartReceiver
) -> None:
    stalled = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"
    receiver = await start_receiver(Reply(stalled, then="stall"), Reply())
    with trio.fail_after(GUARD_S):
        with pytest.raises(TimeoutError_, match=r"within 0\.2 s"):
            await post(transport, receiver.url, timeout_s=0.2)
        await receiver.wait_until(lambda: receiver.closed == 1)
        assert (await post(transport, receiver.url)).status == 200
    assert receiver.connections == 2


async def test_tls_handshake_counts_against_the_timeout(
    transport: Transport, nursery: trio.Nursery
) -> None:
    async def silent(stream: trio.abc.Stream) -> None:
        while await stream.receive_some(65536):
            pass

    listeners = await nursery.start(serve_loopback, silent, 0)
    url = f"https://127.0.0.1:{listeners[0].socket.getsockname()[1]}/"
    with trio.fail_after(GUARD_S), pytest.raises(TimeoutError_):
        await post(transport, url, timeout_s=0.2)


# --- failures ----------------------------------------------------------------------------


async def test_connection_refused_is_a_connect_error(transport: Transport) -> None:
    port = free_port()
    with trio.fail_after(GUARD_S), pytest.raises(ConnectError) as caught:
        await post(transport, f"http://127.0.0.1:{port}/")
    assert f"connect to 127.0.0.1:{port} failed" in str(caught.value)
    assert "refused" in str(caught.value).lower()


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
        b"HTTP/1.1 200 OK\r\nContent-Le",
    ],
    ids=["short-body", "short-chunk", "mid-headers"],
)
async def test_drop_mid_response_is_a_protocol_error(
    recording_transport: Transport,
    opened: list[trio.SocketStream],
    start_receiver: StartReceiver,
    answer: bytes,
) -> None:
    receiver = await start_receiver(Reply(answer, then="close"))
    with trio.fail_after(GUARD_S), pytest.raises(ProtocolError, match=r"127\.0\.0\.1"):
        await post(recording_transport, receiver.url)
    assert [is_closed(stream) for stream in opened] == [True]


async def test_header_that_http_cannot_carry_fails_before_any_connection(
    transport: Transport, start_receiver: StartReceiver
) -> None:
    receiver = await start_receiver()
    with trio.fail_after(GUARD_S):
        with pytest.raises(ProtocolError, match="cannot send"):
            await transport.post(
                "ep_1",
                receiver.url,
                [("X-Event-Type", "a\r\nX-Evil: 1")],
                BODY,
                size=1,
                timeout_s=5,
            )
        assert (await post(transport, receiver.url, size=1)).status == 200
    assert (receiver.connections, len(receiver.requests)) == (1, 1)


async def test_closed_pool_refuses_requests(start_receiver: StartReceiver) -> None:
    receiver = await start_receiver()
    pool = ConnectionPool(Origin.from_url(receiver.url), size=1)
    with trio.fail_after(GUARD_S):
        await pool.request("POST", "/", HEADERS, BODY, timeout_s=5)
        await pool.aclose()
        with pytest.raises(ConnectError, match="closed"):
            await pool.request("POST", "/", HEADERS, BODY, timeout_s=5)
        await receiver.wait_until(lambda: receiver.closed == 1)


async def test_changing_a_keys_url_retires_its_old_pool(
    transport: Transport, start_receiver: StartReceiver
) -> None:
    first, second = await start_receiver(), await start_receiver()
    with trio.fail_after(GUARD_S):
        await post(transport, first.url)
        await post(transport, second.url)
        await first.wait_until(lambda: first.closed == 1)
    assert (first.connections, second.connections) == (1, 1)


# --- TLS -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def server_tls(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    return context


async def test_tls_with_a_trusted_ca(
    ca: trustme.CA, server_tls: ssl.SSLContext, start_receiver: StartReceiver
) -> None:
    receiver = await start_receiver(Reply(), Reply(then="close"), Reply(), tls=server_tls)
    client_tls = ssl.create_default_context()
    ca.configure_trust(client_tls)
    transport = Transport(ssl_context=client_tls)
    with trio.fail_after(GUARD_S):
        assert (await post(transport, receiver.url)).body == b"ok"
        assert (await post(transport, receiver.url)).body == b"ok"
        await receiver.wait_until(lambda: receiver.closed == 1)
        assert (await post(transport, receiver.url)).body == b"ok"  # on a fresh connection
        await transport.aclose()
    assert (receiver.connections, len(receiver.requests)) == (2, 3)


async def test_tls_with_an_untrusted_certificate_is_a_connect_error(
    server_tls: ssl.SSLContext, start_receiver: StartReceiver
) -> None:
    receiver = await start_receiver(tls=server_tls)
    transport = Transport()  # the default context: the system's CAs, certificates verified
    with trio.fail_after(GUARD_S), pytest.raises(ConnectError) as caught:
        await post(transport, receiver.url)
    assert "TLS handshake with 127.0.0.1" in str(caught.value)
    assert "certificate verify failed" in str(caught.value)
    assert receiver.requests == []


async def test_tls_certificate_for_another_host_is_a_connect_error(
    ca: trustme.CA, start_receiver: StartReceiver
) -> None:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("other.example").configure_cert(context)
    receiver = await start_receiver(tls=context)
    client_tls = ssl.create_default_context()
    ca.configure_trust(client_tls)
    transport = Transport(ssl_context=client_tls)
    with trio.fail_after(GUARD_S), pytest.raises(ConnectError, match="certificate verify failed"):
        await post(transport, receiver.url)


# --- URLs ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "origin", "authority"),
    [
        ("https://Example.COM/hook", Origin("https", "example.com", 443), "example.com"),
        ("http://example.com:8080", Origin("http", "example.com", 8080), "example.com:8080"),
        ("https://[::1]:8443/x", Origin("https", "::1", 8443), "[::1]:8443"),
        ("https://bücher.example/", Origin("https", "xn--bcher-kva.example", 443), None),
    ],
)
def test_origin_from_url(url: str, origin: Origin, authority: str | None) -> None:
    assert Origin.from_url(url) == origin
    assert origin.authority == (authority or origin.host)


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/",
        "example.com/hook",
        "https:///hook",
        "https://exa mple.com/",
        "https://example.com:99999/",
        "https://example.com:0/",
        "https://user:secret@example.com/",
        "https://example.com/a path",
        "https://[::zz]/",
    ],
)
def test_origin_from_bad_url_is_an_endpoint_error(url: str) -> None:
    with pytest.raises(EndpointError, match="bad endpoint URL"):
        Origin.from_url(url)


async def test_post_to_a_bad_url_is_an_endpoint_error(transport: Transport) -> None:
    with pytest.raises(EndpointError, match="scheme"):
        await post(transport, "ftp://example.com/")


# --- fuzz: whatever a receiver answers ---------------------------------------------------


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    answer=st.one_of(
        st.binary(max_size=300),
        st.sampled_from([OK, b"HTTP/1.0 200 OK\r\n\r\nx", b"HTTP/1.1 204 No Content\r\n\r\n"]).map(
            lambda valid: valid[: len(valid) // 2]
        ),
    ),
    then=st.sampled_from(["close", "reset"]),
)
async def test_any_answer_over_tcp_is_a_response_or_a_transport_error(
    answer: bytes, then: Literal["close", "reset"]
) -> None:
    """The socket-level side of the fuzz in tests/unit: resets and real EOFs."""
    async with trio.open_nursery() as nursery:
        receiver = Receiver([Reply(answer, then=then)])
        listeners = await nursery.start(serve_loopback, receiver.handle, 0)
        url = f"http://127.0.0.1:{listeners[0].socket.getsockname()[1]}/"
        transport = Transport(ssl_context=PLAIN_TLS)
        with trio.fail_after(GUARD_S):
            with contextlib.suppress(TransportError):
                await post(transport, url, timeout_s=2)
            assert (await post(transport, url, timeout_s=2)).status == 200
            await transport.aclose()
        nursery.cancel_scope.cancel()
