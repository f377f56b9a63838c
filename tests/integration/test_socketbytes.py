"""``socketbytes`` on a real socket pair, plain and TLS: large writes, the peer's close
and reset, a close under a waiting task, a failed handshake."""

from __future__ import annotations

import contextlib
import socket
import ssl
import struct

import pytest
import trio
import trio.testing
import trustme

from socketbytes import SocketBytes, TLSBytes, faster, receive_reply, tls_client


async def sent_through(ours: trio.abc.Stream, theirs: trio.abc.Stream, payload: bytes) -> bytes:
    """What ``theirs`` received of ``payload`` sent on ``ours``, read while it is sent."""
    received = bytearray()

    async def drain() -> None:
        while len(received) < len(payload):
            received.extend(await theirs.receive_some(65536))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(drain)
        await ours.send_all(payload)
    return bytes(received)


async def closing_under_a_waiting_task_says_closed(ours: trio.abc.Stream) -> None:
    async with trio.open_nursery() as nursery:

        async def close_soon() -> None:
            await trio.testing.wait_all_tasks_blocked()
            await trio.aclose_forcefully(ours)  # as the watchdog ends an exchange

        nursery.start_soon(close_soon)
        with pytest.raises(trio.ClosedResourceError):
            await ours.receive_some(100)  # waiting for an answer that never comes


async def test_writes_go_past_full_buffers_and_errors_say_broken_or_closed() -> None:
    left, right = trio.socket.socketpair()
    ours, theirs = SocketBytes(trio.SocketStream(left)), trio.SocketStream(right)
    payload = bytes(range(256)) * 40_000  # ~10 MB: far past both socket buffers
    assert await sent_through(ours, theirs, payload) == payload
    await theirs.send_all(b"answer")
    assert await ours.receive_some(100) == b"answer"
    await theirs.aclose()
    assert await ours.receive_some(100) == b""  # the peer's clean close
    with pytest.raises(trio.BrokenResourceError):
        await ours.send_all(b"to nobody")

    left, right = trio.socket.socketpair()
    await closing_under_a_waiting_task_says_closed(SocketBytes(trio.SocketStream(left)))
    right.close()


async def test_only_socket_streams_are_wrapped() -> None:
    left, right = trio.socket.socketpair()
    assert isinstance(faster(trio.SocketStream(left)), SocketBytes)
    memory, _ = trio.testing.memory_stream_pair()
    assert faster(memory) is memory
    left.close()
    right.close()


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def contexts(ca: trustme.CA) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """The server's context (a certificate for "receiver.test") and a client's trusting it."""
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("receiver.test").configure_cert(server)
    client = ssl.create_default_context()
    ca.configure_trust(client)
    return server, client


async def tcp_pair() -> tuple[trio.SocketStream, trio.SocketStream]:
    """Both ends of a loopback TCP connection."""
    listener = (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0]
    port = listener.socket.getsockname()[1]
    async with listener:
        client = await trio.open_tcp_stream("127.0.0.1", port)  # waits in the accept queue
        server = await listener.accept()
    return client, server


async def tls_pair(ca: trustme.CA) -> tuple[trio.abc.Stream, trio.SSLStream[trio.SocketStream]]:
    """A client ``tls_client`` made over loopback TCP, and the server side (trio's)."""
    server_context, client_context = contexts(ca)
    left, right = await tcp_pair()
    theirs = trio.SSLStream(right, server_context, server_side=True)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(theirs.do_handshake)
        ours = await tls_client(left, client_context, "receiver.test")
    return ours, theirs


async def test_tls_goes_through_openssls_socket_both_ways_and_past_full_buffers(
    ca: trustme.CA,
) -> None:
    ours, theirs = await tls_pair(ca)
    assert isinstance(ours, TLSBytes)
    assert ours.ssl_object.version() in ("TLSv1.2", "TLSv1.3")
    payload = bytes(range(256)) * 20_000  # ~5 MB: many TLS records, full socket buffers
    assert await sent_through(ours, theirs, payload) == payload
    answer = b"answer" * 50_000
    got = bytearray()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(theirs.send_all, answer)
        while len(got) < len(answer):
            got.extend(await ours.receive_some())
    assert got == answer
    await trio.aclose_forcefully(theirs.transport_stream)  # no TLS goodbye, as servers may
    assert await ours.receive_some(100) == b""
    await ours.aclose()


async def test_a_tls_stream_closed_under_a_waiting_task_says_closed(ca: trustme.CA) -> None:
    ours, theirs = await tls_pair(ca)
    await closing_under_a_waiting_task_says_closed(ours)
    with pytest.raises(trio.ClosedResourceError):
        await ours.send_all(b"late")
    await trio.aclose_forcefully(theirs)


async def test_a_reset_peer_ends_the_stream(ca: trustme.CA) -> None:
    """OpenSSL reports a reset while reading as an unexpected end, as it does a close
    without a TLS goodbye: both read as the end; writing then fails as broken."""
    ours, theirs = await tls_pair(ca)
    raw = theirs.transport_stream.socket
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    await ours.send_all(b"unread")  # unread at the close: the close resets
    await trio.testing.wait_all_tasks_blocked()
    raw.close()
    assert await ours.receive_some(100) == b""
    with pytest.raises(trio.BrokenResourceError):
        for _ in range(3):  # the first write may still be taken by the kernel
            await ours.send_all(b"x" * 65536)
    await ours.aclose()


async def test_an_untrusted_certificate_fails_the_handshake_and_frees_the_socket() -> None:
    server_context, _ = contexts(trustme.CA())
    _, client_context = contexts(trustme.CA())  # trusts another CA
    left, right = await tcp_pair()
    theirs = trio.SSLStream(right, server_context, server_side=True)
    async with trio.open_nursery() as nursery:

        async def serve() -> None:
            with contextlib.suppress(trio.BrokenResourceError):
                await theirs.do_handshake()

        nursery.start_soon(serve)
        with pytest.raises(ssl.SSLCertVerificationError):
            await tls_client(left, client_context, "receiver.test")
    assert left.socket.fileno() == -1  # handed to OpenSSL, then closed
    await trio.aclose_forcefully(theirs)


async def test_tls_over_a_stream_without_a_socket_is_trios(ca: trustme.CA) -> None:
    server_context, client_context = contexts(ca)
    client_end, server_end = trio.testing.memory_stream_pair()
    theirs = trio.SSLStream(server_end, server_context, server_side=True)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(theirs.do_handshake)
        ours = await tls_client(client_end, client_context, "receiver.test")
    assert isinstance(ours, trio.SSLStream)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(ours.send_all, b"ping")
        assert await theirs.receive_some(4) == b"ping"


async def test_a_context_that_refuses_the_socket_still_frees_it(ca: trustme.CA) -> None:
    _, client_context = contexts(ca)
    left, right = await tcp_pair()
    with pytest.raises(ValueError, match="server_hostname"):
        await tls_client(left, client_context, "")  # no name to check the certificate by
    assert left.socket.fileno() == -1
    await right.aclose()


async def test_a_reply_is_waited_for_before_it_is_read_on_every_kind_of_stream(
    ca: trustme.CA,
) -> None:
    left, right = await tcp_pair()
    plain = faster(left)
    tls, tls_server = await tls_pair(ca)
    memory, memory_server = trio.testing.memory_stream_pair()
    for ours, theirs in ((plain, right), (tls, tls_server), (memory, memory_server)):
        async with trio.open_nursery() as nursery:

            async def answer(theirs: trio.abc.Stream = theirs) -> None:
                assert await theirs.receive_some(5) == b"hello"
                await theirs.send_all(b"ok")

            nursery.start_soon(answer)
            await ours.send_all(b"hello")
            assert await receive_reply(ours) == b"ok"
    await tls_server.send_all(b"two records" * 2000)  # ~22 KB: OpenSSL reads ahead of us
    first = await tls.receive_some(10)
    assert first and isinstance(tls, TLSBytes) and tls.ssl_object.pending()
    assert await receive_reply(tls)  # what OpenSSL holds comes without a wait
    for ours in (plain, tls):
        await ours.aclose()
        with pytest.raises(trio.ClosedResourceError):
            await receive_reply(ours)
    await right.aclose()
    await trio.aclose_forcefully(tls_server)
