"""Talking to httpserve over in-memory streams, and reading back what it wrote.

Tests drive a connection on a clock that jumps whenever every task waits, so time
limits of seconds are checked exactly and at once.
"""

from __future__ import annotations

import re
from functools import partial
from typing import Literal

import structlog
import trio
import trio.testing

from httpserve import Handler, Limits, Request, Response, serve_connection

LIMITS = Limits(
    max_header_bytes=1024, max_body_bytes=256, request_timeout_s=2.0, keepalive_timeout_s=5.0
)
NAME = "fuzzed/1.0"
TICK_S = 0.2  # the watchdog looks a tenth of the shortest limit apart
LINGER_S = 1.0  # after an answer that closes, the server drains the client this long at most
GET = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
POST = b"POST /b?q=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
CHUNKED = b"POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
HEAD = b"HEAD /a HTTP/1.1\r\nHost: x\r\n\r\n"
EXPECT = b"PUT /c HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nok"
KEEP_ALIVE = [GET, POST, CHUNKED, HEAD, EXPECT]  # requests after which the connection goes on
VALID = [
    *KEEP_ALIVE,
    b"GET /a HTTP/1.0\r\n\r\n",
    b"GET /a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    b"GET /boom HTTP/1.1\r\nHost: x\r\n\r\n",
]
STATUS_LINE = re.compile(rb"HTTP/1\.1 ([0-9]{3}) [^\r\n]*")

Answer = tuple[int, dict[bytes, bytes], bytes]


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


def responses(data: bytes, heads: int = 0) -> list[Answer]:
    """Split what the server wrote into (status, headers, body), checking the framing;
    the first ``heads`` answered HEAD requests (no body, whatever the length says)."""
    parsed: list[Answer] = []
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


def statuses(data: bytes) -> list[int]:
    return [status for status, _, _ in responses(data)]


async def converse(
    chunks: list[bytes],
    *,
    gap_s: float = 0.0,
    then: Literal["close", "hang"] = "close",
    answer: Handler = handler,
    limits: Limits = LIMITS,
) -> tuple[bytes, float]:
    """Send the chunks, then close our side or wait; everything the server wrote until it
    closed, and how long (on the jumping clock) the connection lasted."""
    client, server = trio.testing.memory_stream_pair()
    received = bytearray()
    started = trio.current_time()
    serving = partial(serve_connection, server_name=NAME)
    with trio.fail_after(60), structlog.testing.capture_logs() as logs:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(serving, answer, limits, server)
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
