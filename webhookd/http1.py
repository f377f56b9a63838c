"""HTTP/1.1 on the client side of a connection, without I/O: request heads out, responses in.

Request heads are rendered here from validated parts: what is constant for an endpoint
(request line, Host, its static headers) once, into a `RequestHead`; what changes per
delivery (ids, timestamps, signatures) and Content-Length per request, checked with a
count over the rendered block rather than header by header. Responses are parsed by
llhttp (through httptools) in a `ResponseReader`, one per connection, fed whatever bytes
arrive: it skips 1xx responses, caps the body it keeps, bounds the head it will wait
for, and says whether the connection may carry another request. Errors: `UnsendableRequest`
for a request HTTP cannot carry, `MalformedResponse` (or httptools' own parser errors)
for a response that is not HTTP/1.1; the transport translates both.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import httptools

from webhookd.values import value_type

__all__ = ["MAX_HEAD_BYTES", "MalformedResponse", "RequestHead", "Response", "ResponseReader"]

MAX_HEAD_BYTES = 65536  # a response head (1xx heads included) longer than this is refused
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_TARGET = re.compile(r"[\x21-\x7e]+")  # printable ASCII, no spaces
_OURS = frozenset({"host", "content-length", "transfer-encoding"})
_MAX_KNOWN_NAMES = 1024


class UnsendableRequest(ValueError):
    """A header HTTP/1.1 cannot carry (a line break, a non-token name, non-ASCII text)."""


class MalformedResponse(ValueError):
    """A response that parsed but is not one a client may accept, or one cut short."""


@value_type
class Response:
    """A complete response, its body capped: receivers' answers are only ever logged."""

    status: int
    raw_headers: tuple[tuple[bytes, bytes], ...]  # as received; decoded only when asked
    body: bytes  # at most body_cap bytes
    body_truncated: bool

    @property
    def headers(self) -> tuple[tuple[str, str], ...]:
        """Names lower-cased, values decoded latin-1; a delivery reads one header at most."""
        return tuple([(name.lower().decode("latin-1"), _text(value))
                      for name, value in self.raw_headers])  # fmt: skip

    def header(self, name: str) -> str | None:
        """The first value of a header, by case-insensitive name."""
        wanted = name.lower().encode("latin-1")
        for key, value in self.raw_headers:
            if key.lower() == wanted:
                return _text(value)
        return None


def _text(value: bytes) -> str:
    # llhttp drops leading whitespace; a value holds no CR, LF, VT or FF, so rstrip()
    # takes exactly the trailing spaces and tabs.
    return value.rstrip().decode("latin-1")


_known_names: set[str] = set()  # header names already checked: the same few every time


def _check_names(headers: Sequence[tuple[str, str]]) -> None:
    for name, _ in headers:
        if name in _known_names:
            continue
        if not _TOKEN.fullmatch(name):
            raise UnsendableRequest(f"header name {name!r} is not an HTTP token")
        if name.lower() in _OURS:
            raise UnsendableRequest(f"header {name!r} is set by the transport")
        if len(_known_names) >= _MAX_KNOWN_NAMES:
            _known_names.clear()
        _known_names.add(name)


def render_headers(headers: Sequence[tuple[str, str]]) -> bytes:
    """``Name: value`` lines, refusing what would change the message's framing.

    Each line adds exactly one CR and one LF, so any more in the block came from a name
    or a value; names are tokens; everything is ASCII (``encode`` refuses the rest).
    """
    block = "".join([f"{name}: {value}\r\n" for name, value in headers])
    lines = len(headers)
    if block.count("\n") != lines or block.count("\r") != lines or "\0" in block:
        raise UnsendableRequest("a header name or value contains CR, LF or NUL")
    _check_names(headers)
    return block.encode("ascii")


@dataclass(frozen=True, slots=True)
class RequestHead:
    """The part of a request head that is the same for every request to an endpoint."""

    prefix: bytes  # request line, Host and the static headers, rendered

    @classmethod
    def build(
        cls, method: str, target: str, authority: str, static_headers: Sequence[tuple[str, str]]
    ) -> RequestHead:
        """Validate and render once; raises UnsendableRequest or UnicodeError."""
        if not _TOKEN.fullmatch(method) or not _TARGET.fullmatch(target):
            raise UnsendableRequest(f"cannot render the request line {method} {target}")
        line = f"{method} {target} HTTP/1.1\r\nHost: {authority}\r\n".encode("ascii")
        return cls(line + render_headers(static_headers))

    def render(self, headers: Sequence[tuple[str, str]], body: bytes) -> bytes:
        """The whole request: this head, the per-request headers, Content-Length, the body."""
        length = b"Content-Length: %d\r\n\r\n" % len(body)
        return b"".join((self.prefix, render_headers(headers), length, body))


class ResponseReader:
    """The response side of one connection: llhttp's callbacks gathered into a Response.

    Call `start` before each request, then `feed` what arrives until it returns the
    response; at EOF call `feed_eof`. `reusable` then says whether the connection may
    carry another request. A reader is only used again after a response that left its
    connection reusable, so what makes a connection unusable is never reset.
    """

    __slots__ = (
        "_body",
        "_body_cap",
        "_extra",
        "_head_bytes",
        "_headers",
        "_keep_alive",
        "_parser",
        "_refusal",
        "_response",
        "_status",
        "_truncated",
    )

    def __init__(self, body_cap: int) -> None:
        self._body_cap = body_cap
        self._parser = httptools.HttpResponseParser(self)
        self._truncated = False  # the body reached the cap
        self._extra = False  # bytes came after the response
        self._refusal: str | None = None  # why a response that parsed is refused
        self._keep_alive = False
        self.start()

    def start(self) -> None:
        """Forget the last response; the parser itself is already waiting for the next."""
        self._status = 0  # of the final response, once its head is complete
        self._headers: list[tuple[bytes, bytes]] = []
        self._body = bytearray()
        self._response: Response | None = None
        self._head_bytes = 0

    @property
    def reusable(self) -> bool:
        """Whether another request may follow on this connection."""
        return self._keep_alive and not self._extra and not self._truncated

    def feed(self, data: bytes | bytearray) -> Response | None:
        """The response once it is complete or its body reached the cap, else None."""
        try:
            self._parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade):
            if self._refusal is None and self._response is None and not self._truncated:
                raise
            self._extra = True  # garbage after all we wanted of the response
        if self._refusal is not None:
            raise MalformedResponse(self._refusal)
        if self._response is not None:
            return self._response
        if not self._status:  # the final head is still to come
            self._head_bytes += len(data)
            if self._head_bytes > MAX_HEAD_BYTES:
                raise MalformedResponse(f"response head longer than {MAX_HEAD_BYTES} bytes")
        elif self._truncated:
            return self._finish(keep_alive=False)
        return None

    def feed_eof(self) -> Response:
        """The response a clean EOF completes (a body read until close), else MalformedResponse."""
        if self._status and self._until_eof():
            return self._finish(keep_alive=False)
        raise MalformedResponse("connection closed mid-response")

    def _until_eof(self) -> bool:
        """Whether the body has no length of its own, as llhttp decides (RFC 9112 6.3)."""
        codings = [value for name, value in self._headers if name.lower() == b"transfer-encoding"]
        if codings:
            return codings[-1].rsplit(b",", 1)[-1].strip().lower() != b"chunked"
        return all(name.lower() != b"content-length" for name, _ in self._headers)

    def _finish(self, *, keep_alive: bool) -> Response:
        self._keep_alive = keep_alive
        headers = tuple(self._headers)
        self._response = Response(self._status, headers, bytes(self._body), self._truncated)
        return self._response

    # llhttp's callbacks. Those of 1xx responses and of bytes after the response (once
    # `_response` is set) change nothing that is kept.

    def on_message_begin(self) -> None:
        if self._response is not None:
            self._extra = True
        else:
            self._headers = []

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self._status:  # not the trailers of a chunked body
            self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        if self._response is None:
            status = self._parser.get_status_code()
            if status < 100 or status == 101:
                self._refusal = f"status {status} is not one a client may receive here"
            elif status >= 200:
                self._status = status

    def on_body(self, body: bytes) -> None:
        if self._response is not None:
            return
        room = self._body_cap - len(self._body)
        if len(body) > room:
            self._body += body[:room]
            self._truncated = True
        else:
            self._body += body

    def on_message_complete(self) -> None:
        if self._response is None and self._status:  # 1xx responses are skipped
            self._finish(keep_alive=self._parser.should_keep_alive())
