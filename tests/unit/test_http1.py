"""Request heads and response reading, without sockets; h11 checks what we render."""

from __future__ import annotations

import string

import h11
import httptools
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from webhookd.http1 import (
    MAX_HEAD_BYTES,
    MalformedResponse,
    RequestHead,
    Response,
    ResponseReader,
    UnsendableRequest,
)

PROPERTY = settings(max_examples=200, deadline=None)
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


def read(*pieces: bytes, body_cap: int = 64) -> tuple[Response, bool]:
    """The response the pieces make (EOF after the last if none did), and reusability."""
    reader = ResponseReader(body_cap)
    for piece in pieces:
        response = reader.feed(piece)
        if response is not None:
            return response, reader.reusable
    return reader.feed_eof(), reader.reusable


# --- request heads ---------------------------------------------------------------------


def test_a_request_is_the_head_then_its_own_headers_then_the_length_and_body() -> None:
    head = RequestHead.build("POST", "/in?x=1", "hooks.example.com", [("User-Agent", "w/1")])
    assert head.render([("webhook-id", "msg_1")], b"{}") == (
        b"POST /in?x=1 HTTP/1.1\r\nHost: hooks.example.com\r\nUser-Agent: w/1\r\n"
        b"webhook-id: msg_1\r\nContent-Length: 2\r\n\r\n{}"
    )


@pytest.mark.parametrize(("method", "target"), [("POST", "/a b"), ("POST", ""), ("PO ST", "/")])
def test_a_request_line_that_would_not_parse_is_refused(method: str, target: str) -> None:
    with pytest.raises(UnsendableRequest, match="request line"):
        RequestHead.build(method, target, "example.com", ())


header_text = st.text(st.characters(codec="latin-1"), max_size=12)
token = st.text(string.ascii_letters + string.digits + "!#$%&'*+-.^_`|~", min_size=1, max_size=12)
value = st.text(string.printable, max_size=20)


@PROPERTY
@given(
    headers=st.lists(st.tuples(token | header_text, value | header_text), max_size=4),
    body=st.binary(),
)
def test_what_is_rendered_parses_back_to_the_same_request(
    headers: list[tuple[str, str]], body: bytes
) -> None:
    """Accepted headers frame exactly as given; anything that could not is refused."""
    head = RequestHead.build("POST", "/in", "example.com", ())
    try:
        request = head.render(headers, body)
    except (UnsendableRequest, UnicodeError):
        return
    lines = request[: request.index(b"\r\n\r\n")].split(b"\r\n")
    sent = [line.split(b": ", 1) for line in lines[2:-1]]
    assert sent == [[name.encode(), value.encode()] for name, value in headers]
    assert lines[-1] == f"Content-Length: {len(body)}".encode()
    assert request.endswith(b"\r\n\r\n" + body)
    values_h11_takes = all(value == value.strip() and value.isprintable() for _, value in headers)
    if values_h11_takes:
        server = h11.Connection(h11.SERVER)
        server.receive_data(request)
        event = server.next_event()
        assert isinstance(event, h11.Request)
        assert [(bytes(n), bytes(v)) for n, v in event.headers][1:-1] == [
            (name.lower().encode(), value.encode()) for name, value in headers
        ]


# --- reading responses -------------------------------------------------------------------


def test_headers_are_lower_cased_decoded_and_trimmed() -> None:
    response, reusable = read(b"HTTP/1.1 200 OK\r\nRetry-After:  30 \t\r\nX-Name: caf\xe9\r\n" + (
        b"Content-Length: 2\r\n\r\nok"
    ))  # fmt: skip
    assert response.headers == (("retry-after", "30"), ("x-name", "café"), ("content-length", "2"))
    assert response.header("Retry-After") == "30"
    assert (response.status, response.body, reusable) == (200, b"ok", True)


def test_informational_responses_are_skipped_and_their_headers_dropped() -> None:
    response, _ = read(
        b"HTTP/1.1 100 Continue\r\nX-Early: 1\r\n\r\n", b"HTTP/1.1 103 Early\r\n\r\n", OK
    )
    assert (response.status, response.headers) == (200, (("content-length", "2"),))


def test_trailers_are_not_headers() -> None:
    response, reusable = read(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n0\r\nX-Trailer: 1\r\n\r\n"
    )
    assert (response.body, response.header("x-trailer"), reusable) == (b"abc", None, True)


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: x\r\n\r\n",
        b"HTTP/1.1 101 Switching Protocols\r\n\r\n",
        b"HTTP/1.1 099 Odd\r\nContent-Length: 0\r\n\r\n",
    ],
)
def test_statuses_a_client_may_not_receive_are_refused(answer: bytes) -> None:
    with pytest.raises(MalformedResponse, match="is not one a client may receive"):
        read(answer)


@pytest.mark.parametrize(
    ("answer", "body"),
    [
        (b"HTTP/1.0 200 OK\r\n\r\nuntil close", b"until close"),
        (b"HTTP/1.1 200 OK\r\n\r\nuntil close", b"until close"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nraw", b"raw"),
    ],
)
def test_a_body_without_a_length_ends_at_eof(answer: bytes, body: bytes) -> None:
    response, reusable = read(answer)
    assert (response.status, response.body, response.body_truncated) == (200, body, False)
    assert not reusable


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-",
        b"",
    ],
)
def test_eof_before_the_end_of_a_framed_response_is_refused(answer: bytes) -> None:
    with pytest.raises(MalformedResponse, match="mid-response"):
        read(answer)


def test_a_body_over_the_cap_is_cut_and_its_connection_not_reused() -> None:
    response, reusable = read(
        b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"x" * 40, body_cap=10
    )
    assert (response.body, response.body_truncated, reusable) == (b"x" * 10, True, False)


def test_a_head_past_the_limit_is_refused_even_as_endless_1xx() -> None:
    reader = ResponseReader(16)
    with pytest.raises(MalformedResponse, match=f"longer than {MAX_HEAD_BYTES}"):
        for _ in range(MAX_HEAD_BYTES):
            reader.feed(b"HTTP/1.1 100 Continue\r\n\r\n")
    reader = ResponseReader(16)
    reader.feed(b"HTTP/1.1 200 OK\r\n")
    with pytest.raises(MalformedResponse, match="longer than"):
        for _ in range(MAX_HEAD_BYTES):
            reader.feed(b"X-Endless: " + b"a" * 1000 + b"\r\n")


@pytest.mark.parametrize(
    ("answer", "reusable"),
    [
        (OK, True),
        (b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok", False),
        (b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", False),
        (b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok", True),
        (OK + b"HTTP/1.1 200 OK\r\n", False),  # pipelined junk
        (OK + b"\x00garbage", False),
        (b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok junk", False),
    ],
)
def test_keep_alive_is_llhttps_decision_and_bytes_after_end_it(
    answer: bytes, reusable: bool
) -> None:
    response, reused = read(answer)
    assert (response.status, response.body, reused) == (200, b"ok", reusable)


def test_a_reader_reads_the_next_response_on_a_kept_connection() -> None:
    reader = ResponseReader(16)
    assert reader.feed(OK) is not None
    reader.start()
    response = reader.feed(b"HTTP/1.1 503 Busy\r\nRetry-After: 1\r\nContent-Length: 0\r\n\r\n")
    assert response is not None
    assert (response.status, response.header("retry-after"), reader.reusable) == (503, "1", True)


VALID = [
    OK,
    b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
    b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\nX-A: b\r\n\r\n",
    b"HTTP/1.1 503 Unavailable\r\nRetry-After: 30\r\nContent-Length: 40\r\n\r\n" + b"x" * 40,
]


@PROPERTY
@given(answer=st.sampled_from(VALID), cuts=st.lists(st.integers(1, 30), max_size=8))
def test_how_a_response_is_split_does_not_matter(answer: bytes, cuts: list[int]) -> None:
    pieces, rest = [], answer
    for size in cuts:
        pieces.append(rest[:size])
        rest = rest[size:]
    pieces = [piece for piece in [*pieces, rest] if piece]
    assert read(*pieces, body_cap=16) == read(answer, body_cap=16)


@PROPERTY
@given(data=st.binary(max_size=300))
def test_any_bytes_are_a_response_or_a_parse_error(data: bytes) -> None:
    try:
        response, _ = read(data, body_cap=16)
    except (MalformedResponse, httptools.HttpParserError, httptools.HttpParserUpgrade):
        return
    assert 200 <= response.status <= 999 and len(response.body) <= 16
