"""Whatever bytes a receiver answers, a pool returns a Response or raises a TransportError.

The receiver sits at the far end of an in-memory stream handed over by the connector, so
each example runs without sockets, on a clock that jumps whenever every task waits.
"""

from __future__ import annotations

from typing import Literal

import pytest
import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from webhookd.errors import ProtocolError, TimeoutError_, TransportError
from webhookd.transport import ConnectionPool, Origin, Response

ORIGIN = Origin("http", "receiver.test", 80)
BODY_CAP = 16
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
VALID = [
    OK,
    b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nX-T: 1\r\n\r\n",
    b"HTTP/1.1 100 Continue\r\n\r\n" + OK,
    b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok",
    b"HTTP/1.0 200 OK\r\n\r\nread until the connection closes",
    b"HTTP/1.1 200 OK\r\n\r\nread until the connection closes too",
    b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok",
    b"HTTP/1.1 204 No Content\r\n\r\n",
    b"HTTP/1.1 307 Temporary Redirect\r\nLocation: /elsewhere\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 503 Unavailable\r\nRetry-After: 30\r\nContent-Length: 40\r\n\r\n" + b"x" * 40,
]


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A valid response with a few bytes flipped, inserted, dropped or cut off."""
    data = bytearray(draw(st.sampled_from(VALID)))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(data)))
        match draw(st.sampled_from(["replace", "insert", "delete", "truncate"])):
            case "replace" if at < len(data):
                data[at] = draw(st.sampled_from(b"\r\n:; 0-9aF\x00\xff"))
            case "insert":
                data[at:at] = draw(st.sampled_from([b"\r\n", b" ", b"0", b"HTTP/1.1 ", b"\xff"]))
            case "delete":
                del data[at : at + draw(st.integers(1, 8))]
            case "truncate":
                del data[at:]
    return bytes(data)


HOSTILE = [
    b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 70000 + b"\r\nContent-Length: 2\r\n\r\nok",
    b"HTTP/1.1 200 OK\r\n" + b"X-Many: 1\r\n" * 8000 + b"Content-Length: 2\r\n\r\nok",
    b"HTTP/1.1 100 Continue\r\n\r\n" * 3000 + OK,
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"f" * 40 + b"\r\nabc\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcdef\r\n0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok",
    b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\nok",
    b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\nok",
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: h2c\r\n\r\n" + OK,
    OK + OK,  # pipelined: an answer to a request never sent
    OK + b"HTTP/1.1 200 OK\r\nContent-Le",
    OK + b"\x00\xff junk",
    b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n" + b"x" * 5000,  # over the cap
]

answers = st.one_of(
    st.binary(max_size=400), mutated(), st.sampled_from(VALID), st.sampled_from(HOSTILE)
)


async def answer(
    stream: trio.abc.Stream, data: bytes, cuts: list[int], then: Literal["close", "hang"]
) -> None:
    """Read the request, send `data` in pieces, then close or wait for the client to leave."""
    async with stream:
        await stream.receive_some(65536)
        for size in cuts:
            await stream.send_all(data[:size])
            data = data[size:]
            await trio.sleep(0.001)
        await stream.send_all(data)
        if then == "hang":
            while await stream.receive_some(65536):
                pass


@pytest.fixture
def virtual_clock() -> trio.testing.MockClock:
    """Only in-memory streams run here, so the clock can jump the moment every task waits."""
    return trio.testing.MockClock(autojump_threshold=0)


@settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    data=answers,
    cuts=st.lists(st.integers(1, 40), max_size=4),
    then=st.sampled_from(["close", "hang"]),
)
async def test_any_answer_is_a_response_or_a_transport_error(
    virtual_clock: trio.testing.MockClock,
    data: bytes,
    cuts: list[int],
    then: Literal["close", "hang"],
) -> None:
    async with trio.open_nursery() as nursery:
        opened = 0

        async def connector(origin: Origin) -> trio.abc.Stream:
            nonlocal opened
            client, server = trio.testing.memory_stream_pair()
            if opened == 0:
                nursery.start_soon(answer, server, data, cuts, then)
            else:
                nursery.start_soon(answer, server, OK, [], "close")
            opened += 1
            return client

        pool = ConnectionPool(ORIGIN, size=1, body_cap=BODY_CAP, connector=connector)
        with trio.fail_after(60):  # on the jumping clock: far past every timeout below
            try:
                first = await pool.request("POST", "/", [], b"{}", timeout_s=5)
            except TimeoutError_:
                assert then == "hang"
            except TransportError:
                pass
            else:
                assert isinstance(first, Response)
                assert len(first.body) <= BODY_CAP
            if then == "close" and not cuts:
                # Whatever came first, the pool is not poisoned: the next request succeeds,
                # on the same connection or (the peer having closed it) a fresh one.
                second = await pool.request("POST", "/", [], b"{}", timeout_s=5)
                assert (second.status, second.body) == (200, b"ok")
        await pool.aclose()
        nursery.cancel_scope.cancel()


ENDLESS = [
    (b"HTTP/1.1 200 OK\r\n", b"X-Endless: " + b"a" * 1000 + b"\r\n"),
    (b"", b"HTTP/1.1 100 Continue\r\n\r\n" * 40),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", b"400\r\n" + b"x" * 1024 + b"\r\n"),
    (b"HTTP/1.1 200 OK\r\n\r\n", b"until close, which never comes " * 30),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999\r\n\r\n", b"x" * 1000),
    (b"HTTP/1.1 200 OK\r\nX-Slow: ", b"a"),
    (b"", b"\r\n"),
]


async def endless(stream: trio.abc.Stream, prefix: bytes, unit: bytes) -> None:
    """Read the request, then answer `prefix` and `unit` forever, until the client leaves."""
    async with stream:
        await stream.receive_some(65536)
        await stream.send_all(prefix)
        while True:
            await stream.send_all(unit)
            await trio.sleep(0.01)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(answer=st.sampled_from(ENDLESS), timeout_s=st.sampled_from([0.5, 5.0]))
async def test_an_endless_answer_ends_in_time_with_bounded_memory(
    virtual_clock: trio.testing.MockClock, answer: tuple[bytes, bytes], timeout_s: float
) -> None:
    """Heads are refused past their limit, bodies cut at the cap, the rest time out."""
    prefix, unit = answer
    async with trio.open_nursery() as nursery:

        async def connector(origin: Origin) -> trio.abc.Stream:
            client, server = trio.testing.memory_stream_pair()
            nursery.start_soon(endless, server, prefix, unit)
            return client

        pool = ConnectionPool(ORIGIN, size=1, body_cap=BODY_CAP, connector=connector)
        started = trio.current_time()
        try:
            with trio.fail_after(60):
                response = await pool.request("POST", "/", [], b"{}", timeout_s=timeout_s)
        except TimeoutError_:
            assert trio.current_time() - started == pytest.approx(timeout_s, abs=0.02)
        except ProtocolError as exc:
            assert "longer than" in str(exc)
        else:
            assert (len(response.body), response.body_truncated) == (BODY_CAP, True)
        await pool.aclose()
        nursery.cancel_scope.cancel()
