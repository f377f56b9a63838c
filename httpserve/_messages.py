"""The values a handler sees and returns, and the bytes of an answer's head.

Pure: no I/O, no clock. ``Heads`` renders a response from parts checked once and kept
(the status line with the server's name, content types, header names), so the common
answer costs one f-string and one encode.
"""

from __future__ import annotations

import http
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import fastjson


@dataclass(frozen=True, slots=True)
class Limits:
    """What one connection may cost; every limit applies to each request on it."""

    max_header_bytes: int = 16 * 1024
    max_body_bytes: int = 1024 * 1024
    request_timeout_s: float = 10.0  # to receive a request once begun, or to send an answer
    keepalive_timeout_s: float = 75.0  # idle time between requests on one connection


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    target: str
    headers: Mapping[str, str]  # names lower-cased; repeated headers joined with ", "
    body: bytes
    path: str = ""
    query: Mapping[str, str] = field(default_factory=dict)

    def json(self) -> Any:
        """The body as strict JSON (no NaN or Infinity); ValueError (with the reason) when
        it is not."""
        return fastjson.loads(self.body)


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()
    content_type: str = "application/json"

    @classmethod
    def json(cls, status: int, value: Any, headers: tuple[tuple[str, str], ...] = ()) -> Response:
        return cls(status, fastjson.dumps(value), headers)

    @classmethod
    def error(
        cls, status: int, error: str, message: str, headers: tuple[tuple[str, str], ...] = ()
    ) -> Response:
        return cls.json(status, {"error": error, "message": message}, headers)


Handler = Callable[[Request], Awaitable[Response]]

_REASONS = {status.value: status.phrase for status in http.HTTPStatus}
_TOKEN = re.compile(r"[-!#$%&'*+.^_`|~0-9A-Za-z]+")
_FIELD_VALUE = re.compile(r"[^\r\n\0]*")
_SERVER_NAME = re.compile(r"[\x21-\x7e]+(?: [\x21-\x7e]+)*")  # product tokens, comments
_KEPT = 256  # checked names and content types kept per server: handlers use a few
_CLOSE = "connection: close\r\n"


class Heads:
    """Renders answers for one server, remembering the parts it has checked.

    A header name that is not a token, or a value or content type with CR, LF or NUL
    in it, is a handler's bug: ``ValueError``, never bytes that could split the answer.
    """

    __slots__ = ("_connection", "_names", "_server", "_starts", "_types")

    def __init__(self, server_name: str) -> None:
        if _SERVER_NAME.fullmatch(server_name) is None:
            raise ValueError(f"bad server name {server_name!r}: visible ASCII words expected")
        self._server = f"server: {server_name}\r\n"
        self._starts: dict[int, bytes] = {}
        self._names: set[str] = set()
        self._connection: set[str] = set()  # the spellings of "connection" seen
        self._types: dict[str, str] = {}

    def render(self, response: Response, method: str, keep_alive: bool) -> tuple[bytes, bool]:
        """The bytes of a response, and whether the connection may serve another request.

        Status 1xx, 204 and 304 carry no body, nor does the answer to a HEAD request
        (which still says how long the body would be). A response header ``connection:
        close`` ends the connection after it; so does a client that asked for that.
        """
        status, body = response.status, response.body
        start = self._starts.get(status) or self._start(status)
        extra = ""
        if response.headers:
            extra, keep_alive = self._fields(response.headers, keep_alive)
        if status >= 200 and status != 204 and status != 304:
            content_type = self._types.get(response.content_type) or self._type(response)
            rest = f"{content_type}content-length: {len(body)}\r\n{extra}"
        else:
            rest, body = extra, b""
        head = start + f"{rest}{'' if keep_alive else _CLOSE}\r\n".encode("latin-1")
        return (head if method == "HEAD" else head + body), keep_alive

    def _start(self, status: int) -> bytes:
        if not 100 <= status <= 999:
            raise ValueError(f"bad status {status!r}")
        line = f"HTTP/1.1 {status} {_REASONS.get(status, '')}\r\n{self._server}".encode()
        if len(self._starts) < _KEPT:
            self._starts[status] = line
        return line

    def _type(self, response: Response) -> str:
        value = response.content_type
        if _FIELD_VALUE.fullmatch(value) is None:
            raise ValueError(f"bad content type {value!r}")
        line = f"content-type: {value}\r\n"
        if len(self._types) < _KEPT:
            self._types[value] = line
        return line

    def _fields(self, headers: tuple[tuple[str, str], ...], keep_alive: bool) -> tuple[str, bool]:
        """The header lines, checked in one pass over their text: each line brings exactly
        one CR and one LF (its own), so any other is in a value."""
        names = self._names
        for name, _ in headers:
            if name not in names:
                self._name(name)
        text = "".join([f"{name}: {value}\r\n" for name, value in headers])
        lines = len(headers)
        if text.count("\n") != lines or text.count("\r") != lines or "\0" in text:
            bad = next(n for n, v in headers if "\r" in v or "\n" in v or "\0" in v)
            raise ValueError(f"bad value of response header {bad!r}: {dict(headers)[bad]!r}")
        if not self._connection.isdisjoint(name for name, _ in headers):
            closing = [
                (n, v) for n, v in headers if n.lower() == "connection" and "close" in v.lower()
            ]
            if closing:
                text = "".join([f"{n}: {v}\r\n" for n, v in headers if (n, v) not in closing])
                keep_alive = False
        return text, keep_alive

    def _name(self, name: str) -> None:
        if _TOKEN.fullmatch(name) is None:
            raise ValueError(f"bad response header name {name!r}")
        if len(self._names) < _KEPT:
            self._names.add(name)
        if name.lower() == "connection":
            self._connection.add(name)
