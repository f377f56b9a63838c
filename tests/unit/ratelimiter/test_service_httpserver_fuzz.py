"""The h11 server under malformed, huge, trickled and pipelined requests: bounded, never a crash.

Each connection runs over in-memory streams on a clock that jumps whenever every task
waits, so time limits of seconds are checked exactly and at once.
"""

from __future__ import annotations

import re
from typing import Literal

import pytest
import structlog
import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ratelimiter.httpserver import Handler, Limits, Request, Response, serve_connection

LIMITS = Limits(
    max_header_bytes=1024, max_body_bytes=256, request_timeout_s=2.0, keepalive_timeout_s=5.0
)
TICK_S = 0.2  # the watchdog looks a tenth of the shortest limit apart
GET = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
POST = b"POST /b?q=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
VALID = [
    GET,
    POST,
    b"POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    b"HEAD /a HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /a HTTP/1.0\r\n\r\n",
    b"GET /a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    b"GET /boom HTTP/1.1\r\nHost: x\r\n\r\n",
    b"PUT /c HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nok",
]
STATUS_LINE = re.compile(rb"HTTP/1\.1 ([0-9]{3}) [^\r\n]*")


async def handler(request: Request) -> Response:
    if request.path == "/boom":
        raise RuntimeError("a handler bug")
    if request.path == "/inject":
        return Response(200, b"", (("x-echo", "a\r\nset-cookie: stolen=1"),))
    return Response.json(200, {"method": request.method, "size": len(request.body)})


async def bodiless_head(request: Request) -> Response:
    """``handler``, but answering HEAD with an empty body: output that parses without
    knowing which of the (mangled) requests were HEAD."""
    return Response(200) if request.method == "HEAD" else await handler(request)


def responses(data: bytes, heads: int = 0) -> list[tuple[int, dict[bytes, bytes], bytes]]:
    """Split what the server wrote into (status, headers, body), checking the framing;
    the first ``heads`` answered HEAD requests (no body, whatever the length says)."""
    parsed: list[tuple[int, dict[bytes, bytes], bytes]] = []
    while data:
        head, separator, rest = data.partition(b"\r\n\r\n")
        assert separator, data[:200]
        status_line, *lines = head.split(b"\r\n")
        match = STATUS_LINE.fullmatch(status_line)
        assert match is not None, status_line
        fields = dict(line.split(b": ", 1) for line in lines)
        status = int(match.group(1))
        size = int(fields.get(b"content-length", b"0"))
        if status in (100, 204, 304) or len(parsed) < heads:
            size = 0
        parsed.append((status, fields, rest[:size]))
        data = rest[size:]
    return parsed


async def converse(
    chunks: list[bytes],
    *,
    gap_s: float = 0.0,
    then: Literal["close", "hang"] = "close",
    answer: Handler = handler,
) -> tuple[bytes, float]:
    """Send the chunks, then close our side or wait; everything the server wrote until it
    closed, and how long (on the jumping clock) the connection lasted."""
    client, server = trio.testing.memory_stream_pair()
    received = bytearray()
    started = trio.current_time()
    with trio.fail_after(60), structlog.testing.capture_logs() as logs:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(serve_connection, answer, LIMITS, server)
            for chunk in chunks:
                try:
                    await client.send_all(chunk)
                except trio.BrokenResourceError:
                    break
                await trio.sleep(gap_s)
            if then == "close":
                await client.send_eof()
            while data := await client.receive_some(65536):
                received += data
    assert [entry for entry in logs if entry["event"] == "http.connection_failed"] == []
    return bytes(received), trio.current_time() - started


@pytest.fixture
def virtual_clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0)


INSERTS = [b"\r\n", b" ", b"0", b"HTTP/1.1 ", b"\xff", b"Content-Length: 9\r\n", b"x" * 2000]


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A valid request with a few bytes flipped, inserted, dropped or cut off."""
    data = bytearray(draw(st.sampled_from(VALID)))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(data)))
        match draw(st.sampled_from(["replace", "insert", "delete", "truncate"])):
            case "replace" if at < len(data):
                data[at] = draw(st.sampled_from(b"\r\n: \t0-9aF\x00\xff\x7f"))
            case "insert":
                data[at:at] = draw(st.sampled_from(INSERTS))
            case "delete":
                del data[at : at + draw(st.integers(1, 8))]
            case "truncate":
                del data[at:]
    return bytes(data)


requests = st.lists(st.sampled_from(VALID) | mutated() | st.binary(max_size=300), max_size=4)


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
@given(
    sent=requests,
    cuts=st.lists(st.integers(1, 64), max_size=6),
    gap_s=st.sampled_from([0.0, 0.01, 0.7]),
    then=st.sampled_from(["close", "hang"]),
)
async def test_whatever_arrives_the_server_answers_sanely_and_lets_go_in_time(
    virtual_clock: trio.testing.MockClock,
    sent: list[bytes],
    cuts: list[int],
    gap_s: float,
    then: Literal["close", "hang"],
) -> None:
    data = b"".join(sent)
    chunks = []
    for size in cuts:
        chunks.append(data[:size])
        data = data[size:]
    chunks.append(data)
    received, lasted = await converse(
        [c for c in chunks if c], gap_s=gap_s, then=then, answer=bodiless_head
    )
    for status, fields, _ in responses(received):
        assert status in (100, 200, 400, 408, 413, 431, 500, 501, 505), status
        assert status == 100 or fields[b"server"] == b"ratelimiter"
    # Nobody keeps a connection longer than its idle limit, plus a request's limit
    # for each request begun, plus the time the client itself spent sending.
    bound = LIMITS.keepalive_timeout_s + LIMITS.request_timeout_s + TICK_S
    assert lasted <= bound * (len(sent) + 1) + gap_s * len(chunks)


async def test_keep_alive_and_pipelining_answer_every_request_in_order(
    virtual_clock: trio.testing.MockClock,
) -> None:
    received, _ = await converse([GET + POST + GET, POST])
    answers = responses(received)
    assert [status for status, _, _ in answers] == [200, 200, 200, 200]
    assert [body for _, _, body in answers] == [
        b'{"method":"GET","size":0}', b'{"method":"POST","size":5}',
        b'{"method":"GET","size":0}', b'{"method":"POST","size":5}',
    ]  # fmt: skip


async def test_head_gets_the_length_but_no_body_and_expect_gets_100(
    virtual_clock: trio.testing.MockClock,
) -> None:
    received, _ = await converse([VALID[3], VALID[7]])
    (head, fields, body), (cont, _, _), (put, _, put_body) = responses(received, heads=1)
    assert (head, body, int(fields[b"content-length"]) > 0) == (200, b"", True)
    assert (cont, put, put_body) == (100, 200, b'{"method":"PUT","size":2}')


async def test_a_failing_handler_is_a_500_and_the_connection_goes_on(
    virtual_clock: trio.testing.MockClock,
) -> None:
    received, _ = await converse([VALID[6] + GET])
    assert [status for status, _, _ in responses(received)] == [500, 200]
    received, _ = await converse([b"GET /inject HTTP/1.1\r\nHost: x\r\n\r\n"])
    assert b"stolen" not in received
    assert [status for status, _, _ in responses(received)] == [500]


async def test_huge_headers_get_431_and_a_closed_connection(
    virtual_clock: trio.testing.MockClock,
) -> None:
    huge = b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 4000 + b"\r\n\r\n"
    received, _ = await converse([huge, GET], then="hang")
    assert [(status, fields[b"connection"]) for status, fields, _ in responses(received)] == [
        (431, b"close")
    ]


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        + b"40\r\n" + b"x" * 64 + b"\r\n" * 1 + (b"40\r\n" + b"x" * 64 + b"\r\n") * 5,
    ],
)  # fmt: skip
async def test_bodies_over_the_limit_get_413(
    virtual_clock: trio.testing.MockClock, request_bytes: bytes
) -> None:
    received, _ = await converse([request_bytes], then="hang")
    assert [status for status, _, _ in responses(received)] == [413]


TLS_HELLO = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\0" * 40


@pytest.mark.parametrize(
    "line", [b"GARBAGE\r\n\r\n", b"GET /\r\n\r\n", b"GET / HTTP/9.9\r\n\r\n", TLS_HELLO]
)
async def test_bad_request_lines_get_a_4xx_and_a_closed_connection(
    virtual_clock: trio.testing.MockClock, line: bytes
) -> None:
    received, lasted = await converse([line], then="hang")
    statuses = [status for status, _, _ in responses(received)]
    assert len(statuses) <= 1 and all(400 <= status < 600 for status in statuses)
    assert lasted <= LIMITS.request_timeout_s + TICK_S


async def test_a_trickled_request_is_cut_off_with_408(
    virtual_clock: trio.testing.MockClock,
) -> None:
    slow = [bytes([byte]) for byte in GET]  # one byte every 0.5 s: 14 s for the whole head
    received, lasted = await converse(slow, gap_s=0.5, then="hang")
    assert [status for status, _, _ in responses(received)] == [408]
    assert LIMITS.request_timeout_s <= lasted <= LIMITS.request_timeout_s + TICK_S + 0.5


async def test_an_idle_connection_is_closed_after_the_keep_alive_time(
    virtual_clock: trio.testing.MockClock,
) -> None:
    received, lasted = await converse([GET], then="hang")
    assert [status for status, _, _ in responses(received)] == [200]
    assert LIMITS.keepalive_timeout_s <= lasted <= LIMITS.keepalive_timeout_s + TICK_S


async def test_a_client_that_never_reads_is_dropped(virtual_clock: trio.testing.MockClock) -> None:
    client, server = trio.testing.lockstep_stream_pair()  # a write waits for the reader
    started = trio.current_time()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve_connection, handler, LIMITS, server)
        await client.send_all(GET)
        await trio.sleep(60)  # the server's answer waits for a read that never comes
        with pytest.raises(trio.BrokenResourceError):
            for _ in range(3):
                await client.send_all(GET)
    assert trio.current_time() - started <= 60 + LIMITS.keepalive_timeout_s
