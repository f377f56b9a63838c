"""Requests out of a connection's bytes: httptools (llhttp) parses, ``Limits`` bound.

Sans-IO: ``RequestReader.feed`` takes what arrived and appends, in order, each complete
request with whether its client keeps the connection, then at most one ``Refusal``,
after which it parses nothing more. llhttp refuses what would let a request be framed
two ways (``Content-Length`` with ``Transfer-Encoding``, duplicate lengths, a chunked
coding that is not last, obs-fold, bare CR or LF) and bad bytes in names and values;
this module adds the limits llhttp does not have:

- header bytes: the request line and fields, counted exactly as each one completes
  (431 beyond ``max_header_bytes``). httptools keeps a field that is still arriving in
  a buffer of its own, so a message that goes on without completing anything is cut
  off once more than ``max_header_bytes`` arrived that way (431 in the head, 400 in a
  chunked body's framing or trailer): at most one receive more than that is held.
- body bytes: 413 from the ``Content-Length`` alone when it says too much, else once
  the body (chunked) grows past ``max_body_bytes``.
- versions: HTTP/1.0 and 1.1 only (505).

Upgrade requests (``Upgrade`` with ``Connection: upgrade``, and ``CONNECT``) are
answered as plain requests, as HTTP allows; llhttp would hand over the bytes after
their head, so one that announces a body is refused (400) rather than half read.
Trailer fields of a chunked body are not kept.
"""

from __future__ import annotations

from collections import deque
from typing import NamedTuple
from urllib.parse import parse_qsl, urlsplit

import httptools

from httpserve._messages import Limits, Request


class Refusal(NamedTuple):
    status: int
    error: str
    message: str


class _Refused(Exception):
    """Raised in a parser callback to stop parsing: httptools re-raises it as the
    ``__context__`` of its ``HttpParserCallbackError``."""

    def __init__(self, refusal: Refusal) -> None:
        super().__init__(refusal.message)
        self.refusal = refusal


_NAMES: dict[bytes, str] = {}  # header names as received -> lower-cased text
_KEPT_NAMES = 1024
_METHODS: dict[bytes, str] = {}  # llhttp knows a few dozen methods


class RequestReader:
    """One connection's parser; ``ready`` holds what the server has yet to answer."""

    __slots__ = (
        "_body",
        "_fed_quietly",
        "_head_bytes",
        "_headers",
        "_http11",
        "_in_head",
        "_limits",
        "_max_head_bytes",
        "_parser",
        "_quiet",
        "_refused",
        "_url",
        "busy",
        "continue_due",
        "ready",
    )  # fmt: skip

    def __init__(self, limits: Limits) -> None:
        self._limits = limits
        self._max_head_bytes = limits.max_header_bytes
        self._parser = httptools.HttpRequestParser(self)
        self.ready: deque[tuple[Request, bool] | Refusal] = deque()
        self.busy = False  # a request has begun to arrive and is not complete
        self.continue_due = False  # its client waits for "100 Continue" before the body
        self._refused = False
        self._in_head = False
        self._quiet = True  # nothing completed during the current feed
        self._fed_quietly = 0  # bytes of the current message that completed nothing
        self._head_bytes = 0
        self._url = b""
        self._headers: dict[str, str] = {}
        self._body = bytearray()
        self._http11 = True

    def feed(self, data: bytes | bytearray) -> None:
        """Parse what arrived; complete requests, and a refusal last, join ``ready``."""
        while data and not self._refused:
            data = self._parse(data)

    def _parse(self, data: bytes | bytearray) -> bytes | bytearray:
        """Parse ``data`` up to its end, or to the end of an upgrade request's head:
        what follows that is left over."""
        self._quiet = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            return data[upgrade.args[0] :]
        except httptools.HttpParserCallbackError as error:
            if not isinstance(error.__context__, _Refused):
                raise
            self._refuse(error.__context__.refusal)
        except httptools.HttpParserError as error:
            self._refuse(Refusal(400, "bad_request", f"malformed request: {error}"))
        if self.busy and not self._refused:
            self._fed_quietly = self._fed_quietly + len(data) if self._quiet else 0
            if self._fed_quietly > self._max_head_bytes:
                self._refuse(_too_large() if self._in_head else _framing_too_long())
        return b""

    def end_of_input(self) -> None:
        """The client closed its side: a request it had begun is refused."""
        if self.busy and not self._refused:
            self._refuse(Refusal(400, "bad_request", "the client closed mid-request"))

    def _refuse(self, refusal: Refusal) -> None:
        self._refused, self.busy, self.continue_due = True, False, False
        self.ready.append(refusal)

    # httptools calls these while it parses.

    def on_message_begin(self) -> None:
        self._quiet = False
        self.busy = self._in_head = True
        self._fed_quietly = self._head_bytes = 0
        self._url = b""
        self._headers = {}

    def on_url(self, url: bytes) -> None:
        self._quiet = False
        self._url += url
        self._head_bytes += len(url)
        if self._head_bytes > self._max_head_bytes:
            raise _Refused(_too_large())

    def on_header(self, name: bytes, value: bytes) -> None:
        self._quiet = False
        if not self._in_head:
            return  # a trailer field
        self._head_bytes += len(name) + len(value) + 4
        if self._head_bytes > self._max_head_bytes:
            raise _Refused(_too_large())
        key = _NAMES.get(name) or _name(name)
        headers = self._headers
        text = value.decode("latin-1").rstrip(" \t")  # llhttp strips only leading OWS
        headers[key] = f"{headers[key]}, {text}" if key in headers else text

    def on_headers_complete(self) -> None:
        self._quiet = self._in_head = False
        parser, headers, limits = self._parser, self._headers, self._limits
        version = parser.get_http_version()
        if version != "1.1" and version != "1.0":
            message = f"HTTP/{version} is not spoken here"
            raise _Refused(Refusal(505, "http_version_not_supported", message))
        length = headers.get("content-length")
        if length is not None and int(length) > limits.max_body_bytes:  # llhttp checked digits
            raise _Refused(_body_too_large(limits))
        if parser.should_upgrade() and (
            length not in (None, "0") or "transfer-encoding" in headers
        ):
            message = "an upgrade request with a body is not served"
            raise _Refused(Refusal(400, "bad_request", message))
        if version == "1.1" and headers.get("expect", "").lower() == "100-continue":
            self.continue_due = True
        self._http11 = version == "1.1"

    def on_body(self, body: bytes) -> None:
        self._quiet = False
        self._body += body
        if len(self._body) > self._limits.max_body_bytes:
            raise _Refused(_body_too_large(self._limits))

    def on_message_complete(self) -> None:
        self._quiet = self.busy = self.continue_due = False
        parser = self._parser
        method = _METHODS.get(method_bytes := parser.get_method()) or _method(method_bytes)
        target = self._url.decode("latin-1")
        body = b""
        if self._body:
            body = bytes(self._body)
            self._body.clear()
        if target.startswith("/") and "?" not in target and "#" not in target:
            request = Request(method, target, self._headers, body, target)  # the common case
        else:
            parts = urlsplit(target)
            query = dict(parse_qsl(parts.query))
            request = Request(method, target, self._headers, body, parts.path, query)
        self.ready.append((request, self._http11 and parser.should_keep_alive()))


def _name(raw: bytes) -> str:
    name = raw.decode("latin-1").lower()
    if len(_NAMES) < _KEPT_NAMES:
        _NAMES[raw] = name
    return name


def _method(raw: bytes) -> str:
    _METHODS[raw] = method = raw.decode("ascii")
    return method


def _too_large() -> Refusal:
    return Refusal(431, "header_too_large", "request header fields too large")


def _framing_too_long() -> Refusal:
    return Refusal(400, "bad_request", "chunk framing or trailer fields too long")


def _body_too_large(limits: Limits) -> Refusal:
    return Refusal(413, "payload_too_large", f"body is larger than {limits.max_body_bytes} bytes")
