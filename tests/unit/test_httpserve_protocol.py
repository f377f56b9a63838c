"""httpserve's answers, limits and refusals, request by request."""

from __future__ import annotations

from functools import partial

import pytest
import trio
import trio.testing
from httpserve_conversation import (
    CHUNKED,
    EXPECT,
    GET,
    HEAD,
    LIMITS,
    LINGER_S,
    NAME,
    POST,
    TICK_S,
    VALID,
    converse,
    handler,
    responses,
    statuses,
)  # fmt: skip

from httpserve import Request, Response, Watchdog, serve, serve_connection


@pytest.fixture
def virtual_clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0)


async def test_keep_alive_and_pipelining_answer_every_request_in_order(
    virtual_clock: trio.testing.MockClock,
) -> None:
    received, _ = await converse([GET + POST + CHUNKED, POST])
    answers = responses(received)
    assert [status for status, _, _ in answers] == [200, 200, 200, 200]
    assert [body for _, _, body in answers] == [
        b'{"method":"GET","size":0}', b'{"method":"POST","size":5}',
        b'{"method":"POST","size":3}', b'{"method":"POST","size":5}',
    ]  # fmt: skip
    assert all(fields[b"server"] == NAME.encode() for _, fields, _ in answers)


async def test_the_handler_sees_names_lower_cased_repeats_joined_and_the_target_split(
    virtual_clock: trio.testing.MockClock,
) -> None:
    seen: list[Request] = []

    async def recording(request: Request) -> Response:
        seen.append(request)
        return Response(204)

    sent = (b"DELETE /v1/x%20y?a=1&b=&a=2 HTTP/1.1\r\nHost: x\r\nX-Key:  k 1 \t\r\n"
            b"Accept: a\r\naccept: b\r\nContent-Length: 2\r\n\r\n{}")  # fmt: skip
    received, _ = await converse([sent, GET], answer=recording)
    assert statuses(received) == [204, 204]
    request = seen[0]
    assert (request.method, request.target, request.path) == ("DELETE", "/v1/x%20y?a=1&b=&a=2",
                                                              "/v1/x%20y")  # fmt: skip
    assert request.query == {"a": "2"}
    assert request.headers == {"host": "x", "x-key": "k 1", "accept": "a, b",
                               "content-length": "2"}  # fmt: skip
    assert request.json() == {}
    assert (seen[1].path, seen[1].query, seen[1].body) == ("/a", {}, b"")


async def test_http_1_0_and_connection_close_end_the_connection_after_their_answer(
    virtual_clock: trio.testing.MockClock,
) -> None:
    for closing in VALID[5:7]:
        received, _ = await converse([closing + GET], then="hang")
        assert [(status, fields[b"connection"]) for status, fields, _ in responses(received)] == [
            (200, b"close")
        ]


async def test_head_gets_the_length_but_no_body(virtual_clock: trio.testing.MockClock) -> None:
    received, _ = await converse([HEAD, GET])
    (head, fields, body), (get, _, _) = responses(received, heads=1)
    assert (head, body, get) == (200, b"", 200)
    assert int(fields[b"content-length"]) == len(b'{"method":"HEAD","size":0}')


async def test_expect_gets_100_continue_while_the_body_is_still_to_come(
    virtual_clock: trio.testing.MockClock,
) -> None:
    head, body = EXPECT[:-2], EXPECT[-2:]
    received, _ = await converse([GET + head, body], gap_s=0.1)
    assert statuses(received) == [200, 100, 200]
    received, _ = await converse([EXPECT])  # the body came along: nothing to wait for
    assert statuses(received) == [200]


async def test_a_failing_handler_is_a_500_and_the_connection_goes_on(
    virtual_clock: trio.testing.MockClock,
) -> None:
    received, _ = await converse([VALID[7] + GET])
    assert statuses(received) == [500, 200]
    received, _ = await converse([b"GET /inject HTTP/1.1\r\nHost: x\r\n\r\n"])
    assert b"stolen" not in received
    assert statuses(received) == [500]


async def test_huge_headers_get_431_and_a_closed_connection(
    virtual_clock: trio.testing.MockClock,
) -> None:
    huge = b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 4000 + b"\r\n\r\n"
    received, _ = await converse([huge, GET], then="hang")
    assert [(status, fields[b"connection"]) for status, fields, _ in responses(received)] == [
        (431, b"close")
    ]
    long_target = b"GET /" + b"a" * 2000 + b" HTTP/1.1\r\n\r\n"
    received, _ = await converse([long_target], then="hang")
    assert statuses(received) == [431]


async def test_a_field_that_never_ends_is_cut_off_before_it_gets_far(
    virtual_clock: trio.testing.MockClock,
) -> None:
    """httptools buffers a field until it completes: the server stops that early."""
    endless = [b"GET / HTTP/1.1\r\nX-Long: "] + [b"a" * 100] * 200
    received, lasted = await converse(endless, gap_s=0.001, then="hang")
    assert statuses(received) == [431]
    assert lasted < 0.001 * (LIMITS.max_header_bytes // 100 + 3) + LINGER_S
    trailer = CHUNKED[: -len(b"\r\n")]  # the last chunk's trailer section, never ended
    received, _ = await converse([trailer] + [b"X-Long: " + b"a" * 100] * 20, gap_s=0.001)
    assert statuses(received) == [400]


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 18446744073709551615\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        + b"40\r\n" + b"x" * 64 + b"\r\n" * 1 + (b"40\r\n" + b"x" * 64 + b"\r\n") * 5,
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffff\r\n" + b"x" * 300,
    ],
)  # fmt: skip
async def test_bodies_over_the_limit_get_413(
    virtual_clock: trio.testing.MockClock, request_bytes: bytes
) -> None:
    received, _ = await converse([request_bytes], then="hang")
    assert statuses(received) == [413]


TLS_HELLO = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\0" * 40


@pytest.mark.parametrize(
    ("line", "status"),
    [
        (b"GARBAGE\r\n\r\n", 400),
        (b"get / HTTP/1.1\r\n\r\n", 400),
        (b"GET / HTTP/9.9\r\n\r\n", 400),
        (b"GET / HTTP/2.0\r\n\r\n", 505),
        (b"GET /\r\n\r\n", 505),  # HTTP/0.9
        (b"GET / HTTP/1.1\nHost: x\n\n", 400),
        (b"GET / HTTP/1.1\rHost: x\r\r", 400),
        (TLS_HELLO, 400),
    ],
)
async def test_bad_request_lines_get_a_4xx_or_505_and_a_closed_connection(
    virtual_clock: trio.testing.MockClock, line: bytes, status: int
) -> None:
    received, lasted = await converse([line + GET], then="hang")
    assert statuses(received) == [status]
    assert lasted <= LINGER_S + TICK_S


def with_field(field: bytes) -> bytes:
    return b"GET /a HTTP/1.1\r\nHost: x\r\n" + field + b"\r\n\r\n"


SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"


@pytest.mark.parametrize(
    "request_bytes",
    [
        # Framed two ways: one reader would see the smuggled request, another not.
        b"POST / HTTP/1.1\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: 0\r\nContent-Length: 37\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: 37\r\nContent-Length: 37\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: 0, 37\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: +37\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length : 37\r\n\r\n",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: x\r\n\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nTransfer-Encoding:\x0bchunked\r\n\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nX: a\r\n Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",  # obs-fold
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\n\r\n",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n0\r\n\r\n",
    ],
)
async def test_request_smuggling_attempts_get_400_and_nothing_smuggled_is_served(
    virtual_clock: trio.testing.MockClock, request_bytes: bytes
) -> None:
    seen: list[str] = []

    async def recording(request: Request) -> Response:
        seen.append(request.path)
        return await handler(request)

    received, _ = await converse([request_bytes + SMUGGLED], answer=recording)
    assert statuses(received) == [400]
    assert seen == []


@pytest.mark.parametrize(
    "request_bytes",
    [
        with_field(b"X\x01Y: 1"), with_field(b"X(Y): 1"), with_field(b"X Y: 1"),
        with_field(b"\xc3\xa9t\xc3\xa9: 1"), with_field(b": no name"), with_field(b"X\x7f: 1"),
        with_field(b"X\x00: 1"), with_field(b"X: a\x00b"), with_field(b"X: a\rb"),
        b"GET /a\x00b HTTP/1.1\r\n\r\n", b"GE\x00T /a HTTP/1.1\r\n\r\n",
        b"GET /a HTTP/1.\x001\r\n\r\n", b"\x00" * 64, b"GET /\xff HTTP/1.1\r\n\r\n",
    ],
)  # fmt: skip
async def test_bad_bytes_in_names_values_and_targets_get_400(
    virtual_clock: trio.testing.MockClock, request_bytes: bytes
) -> None:
    received, _ = await converse([request_bytes + GET])
    assert statuses(received) == [400]


@pytest.mark.parametrize(
    "chunk_line",
    [
        b"ffffffffffffffffffff\r\n",  # past 64 bits
        b"-1\r\n", b"0x10\r\n", b" 5\r\n", b"5 \r\n", b"\r\n", b"g\r\n",
        b"5;" + b"e" * 5000 + b"\r\n",  # an extension longer than any head
    ],
)  # fmt: skip
async def test_absurd_chunk_sizes_get_400(
    virtual_clock: trio.testing.MockClock, chunk_line: bytes
) -> None:
    head = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    received, _ = await converse([head, chunk_line], gap_s=0.001, then="hang")
    assert statuses(received) == [400]


async def test_upgrades_are_answered_as_plain_requests_unless_they_carry_a_body(
    virtual_clock: trio.testing.MockClock,
) -> None:
    upgrade = b"GET /a HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\n"
    h2c = upgrade + b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n"
    connect = b"CONNECT x:443 HTTP/1.1\r\nHost: x:443\r\n\r\n"
    received, _ = await converse([h2c + connect + GET])
    assert statuses(received) == [200, 200, 200]
    with_body = upgrade + b"Upgrade: h2c\r\nContent-Length: 5\r\n\r\nhello"
    received, _ = await converse([with_body + GET])
    assert statuses(received) == [400]


async def test_a_trickled_request_is_cut_off_with_408(
    virtual_clock: trio.testing.MockClock,
) -> None:
    slow = [bytes([byte]) for byte in GET]  # one byte every 0.5 s: 14 s for the whole head
    received, lasted = await converse(slow, gap_s=0.5, then="hang")
    assert statuses(received) == [408]
    timeout_s = LIMITS.request_timeout_s
    assert timeout_s <= lasted <= timeout_s + TICK_S + 0.5 + LINGER_S


async def test_an_idle_connection_is_closed_after_the_keep_alive_time(
    virtual_clock: trio.testing.MockClock,
) -> None:
    received, lasted = await converse([GET], then="hang")
    assert statuses(received) == [200]
    assert LIMITS.keepalive_timeout_s <= lasted <= LIMITS.keepalive_timeout_s + TICK_S


async def test_a_client_that_never_reads_is_dropped(virtual_clock: trio.testing.MockClock) -> None:
    client, server = trio.testing.lockstep_stream_pair()  # a write waits for the reader
    started = trio.current_time()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(partial(serve_connection, server_name=NAME), handler, LIMITS, server)
        await client.send_all(GET)
        await trio.sleep(60)  # the server's answer waits for a read that never comes
        with pytest.raises(trio.BrokenResourceError):
            for _ in range(3):
                await client.send_all(GET)
    assert trio.current_time() - started <= 60 + LIMITS.keepalive_timeout_s


@pytest.mark.parametrize("name", ["", " webhookd", "a\r\nb", "café", "a  b"])
async def test_a_bad_server_name_fails_before_serving(name: str) -> None:
    with pytest.raises(ValueError, match="server name"):
        await serve(handler, "127.0.0.1", 0, server_name=name)


async def test_after_a_refusal_the_server_drains_the_client_for_a_moment_then_closes(
    virtual_clock: trio.testing.MockClock,
) -> None:
    """A close with the client's bytes unread would reset the connection, and the answer
    could be lost before the client reads it (RFC 9112, section 9.6)."""
    head = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n"
    still_sending = [head] + [b"x" * 1000] * 50  # 5 s of body, 0.1 s apart
    received, lasted = await converse(still_sending, gap_s=0.1, then="hang")
    assert statuses(received) == [413]
    assert LINGER_S <= lasted <= LINGER_S + 0.2
    received, lasted = await converse([head, b"x" * 1000], then="close")
    assert (statuses(received), lasted) == ([413], 0)


class NotedWrites(trio.abc.Stream):
    """A stream that notes each write as it begins (before any checkpoint)."""

    def __init__(self, stream: trio.abc.Stream, events: list[str], name: str) -> None:
        self._stream, self._events, self._name = stream, events, name

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        self._events.append(f"written /{self._name}")
        await self._stream.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self._stream.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        return await self._stream.receive_some(max_bytes)

    async def aclose(self) -> None:
        await self._stream.aclose()


async def test_connections_answering_together_write_after_all_have_rendered() -> None:
    """One client woken for all the answers of a batch, not once per answer."""
    events: list[str] = []
    release = trio.Event()

    async def batched(request: Request) -> Response:
        await release.wait()  # as a round trip shared by every waiting request
        events.append(f"rendered {request.path}")
        return Response(200, b"ok")

    watchdog = Watchdog(LIMITS)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            clients = []
            for name in ("a", "b", "c"):
                client, server = trio.testing.memory_stream_pair()
                nursery.start_soon(
                    partial(
                        serve_connection,
                        batched,
                        LIMITS,
                        NotedWrites(server, events, name),
                        server_name=NAME,
                        watchdog=watchdog,
                    )
                )
                await client.send_all(f"GET /{name} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
                clients.append(client)
            await trio.testing.wait_all_tasks_blocked()
            release.set()
            for client in clients:
                assert (await client.receive_some()).startswith(b"HTTP/1.1 200 OK\r\n")
                await client.aclose()
    assert sorted(events[:3]) == ["rendered /a", "rendered /b", "rendered /c"]
    assert sorted(events[3:]) == ["written /a", "written /b", "written /c"]


async def test_a_connection_answering_alone_writes_at_once() -> None:
    """No extra pass of the scheduler when there is nothing to group with."""
    events: list[str] = []

    async def other_task() -> None:
        events.append("other task ran")

    async def alone(request: Request) -> Response:
        nursery.start_soon(other_task)  # runs at the next pass of the scheduler
        return Response(200, b"ok")

    client, server = trio.testing.memory_stream_pair()
    noted = NotedWrites(server, events, "a")
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(partial(serve_connection, alone, LIMITS, noted, server_name=NAME))
            await client.send_all(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
            assert (await client.receive_some()).startswith(b"HTTP/1.1 200 OK\r\n")
            await client.aclose()
    assert events == ["written /a", "other task ran"]
