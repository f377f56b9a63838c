"""A small HTTP/1.1 server: h11 on trio streams, keep-alive, bounded in every dimension.

The limiter service and webhookd's admin API both answer through it (DESIGN.md's
measurements: several times an ASGI server's rate on the same machine). HTTP parsing
is h11's; this module only drives it. Every connection is bounded: header bytes
(h11's ``max_incomplete_event_size``: 431 beyond), body bytes (413, refused from the
``Content-Length`` alone when it says too much), the time to receive a request once
its first byte came (408: a slowloris trickle is cut off), the idle keep-alive time,
and the time to write an answer to a client that does not read. A malformed request
gets a 4xx and the connection is closed; a handler's exception becomes a 500; any
other failure closes that one connection. Nothing a client sends can crash the server.
"""

from __future__ import annotations

import contextlib
import http
import json
import math
import re
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import h11
import structlog
import trio

log = structlog.get_logger("ratelimiter.httpserver")

_REASONS = {status.value: status.phrase for status in http.HTTPStatus}
_JSON = json.JSONEncoder(separators=(",", ":"))  # json.dumps with options builds one per call


@dataclass(frozen=True, slots=True)
class Limits:
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
        """The body as JSON; ValueError (with the reason) when it is not."""
        return json.loads(self.body)


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()
    content_type: str = "application/json"

    @classmethod
    def json(cls, status: int, value: Any, headers: tuple[tuple[str, str], ...] = ()) -> Response:
        return cls(status, _JSON.encode(value).encode(), headers)

    @classmethod
    def error(
        cls, status: int, error: str, message: str, headers: tuple[tuple[str, str], ...] = ()
    ) -> Response:
        return cls.json(status, {"error": error, "message": message}, headers)


Handler = Callable[[Request], Awaitable[Response]]


class _ClientGone(Exception):
    """The peer closed, broke or stalled the connection; nothing more to send."""


class _Timer:
    """One connection's current deadline, kept in a plain attribute for the watchdog."""

    __slots__ = ("begun", "deadline", "scope")

    def __init__(self) -> None:
        self.scope = trio.CancelScope()
        self.deadline = math.inf
        self.begun = False  # a request has started to arrive: a timeout now earns a 408


class Watchdog:
    """Enforces the time limits of every connection of a server, from one task.

    A cancel scope with a deadline around each read and each write costs as much as
    h11's parsing of the request. Instead each connection keeps its deadline in a
    plain attribute, and ``run`` cancels those that have passed theirs, looking every
    tenth of the shortest limit: a limit is enforced that much late, at most.
    """

    def __init__(self, limits: Limits) -> None:
        shortest = min(limits.request_timeout_s, limits.keepalive_timeout_s)
        self.tick_s = min(max(shortest / 10, 0.001), 1.0)
        self._timers: set[_Timer] = set()

    async def run(self) -> None:
        while True:
            await trio.sleep(self.tick_s)
            now = trio.current_time()
            for timer in self._timers:
                if timer.deadline <= now:
                    timer.scope.cancel()

    @contextlib.contextmanager
    def watching(self) -> Iterator[_Timer]:
        timer = _Timer()
        self._timers.add(timer)
        try:
            yield timer
        finally:
            self._timers.discard(timer)


async def serve(
    handler: Handler,
    host: str,
    port: int,
    *,
    limits: Limits = Limits(),
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve until cancelled; ``task_status.started`` gets the bound port (useful with 0)."""
    listeners = await trio.open_tcp_listeners(port, host=host)
    await serve_listeners(handler, listeners, limits=limits, task_status=task_status)


async def serve_listeners(
    handler: Handler,
    listeners: list[trio.SocketListener],
    *,
    limits: Limits = Limits(),
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """``serve`` on listeners opened by the caller (to report a bind failure plainly)."""
    watchdog = Watchdog(limits)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(watchdog.run)
        serve_one = partial(serve_connection, handler, limits, watchdog=watchdog)
        task_status.started(listeners[0].socket.getsockname()[1])
        await trio.serve_listeners(serve_one, listeners)


async def serve_connection(
    handler: Handler,
    limits: Limits,
    stream: trio.abc.Stream,
    *,
    watchdog: Watchdog | None = None,
) -> None:
    """Answer the requests of one connection in turn; raises nothing but cancellation.

    h11 parses each request, on a fresh ``h11.Connection`` that starts with whatever
    the previous one had buffered (pipelined requests). Answers are written here:
    a status line and header fields cost a fraction of going through h11's event
    validation, which was most of the server's time per request. Without a server's
    ``watchdog``, the connection runs one of its own.
    """
    if watchdog is None:
        async with trio.open_nursery() as nursery:
            watchdog = Watchdog(limits)
            nursery.start_soon(watchdog.run)
            await serve_connection(handler, limits, stream, watchdog=watchdog)
            nursery.cancel_scope.cancel()
        return
    try:
        with watchdog.watching() as timer:
            with timer.scope:
                await _serve(handler, limits, stream, timer)
            if timer.scope.cancelled_caught and timer.begun:
                await _refuse(stream, limits, 408, "request_timeout", "request took too long")
    except _ClientGone:
        return
    except Exception:  # one broken connection must never take the listener down
        log.exception("http.connection_failed")
    finally:
        await trio.aclose_forcefully(stream)


async def _serve(handler: Handler, limits: Limits, stream: trio.abc.Stream, timer: _Timer) -> None:
    buffered = b""
    while True:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=limits.max_header_bytes)
        if buffered:  # b"" would tell h11 the client closed
            conn.receive_data(buffered)
        received = await _next_request(conn, stream, limits, timer)
        if received is None:
            return
        request, keep_alive = received
        buffered, closed = conn.trailing_data
        keep_alive = keep_alive and not closed
        timer.begun, timer.deadline = False, math.inf  # the handler bounds its own work
        try:
            data, keep_alive = _encode(await handler(request), request.method, keep_alive)
        except Exception:  # a handler's exception, or a header it should not have made
            log.exception("http.handler_failed", method=request.method, path=request.path)
            data, keep_alive = _encode(_INTERNAL_ERROR, request.method, keep_alive)
        timer.deadline = trio.current_time() + limits.request_timeout_s
        await _send_bytes(stream, data)
        if not keep_alive:
            return


async def _next_request(
    conn: h11.Connection, stream: trio.abc.Stream, limits: Limits, timer: _Timer
) -> tuple[Request, bool] | None:
    """The next complete request and whether its client keeps the connection, or None
    when the client is done (or must be dropped)."""
    head: h11.Request | None = None
    fields: dict[str, str] = {}
    body = bytearray()
    timer.begun = bool(conn.trailing_data[0])
    timer.deadline = trio.current_time() + (
        limits.request_timeout_s if timer.begun else limits.keepalive_timeout_s
    )
    while True:
        try:
            event = conn.next_event()
        except h11.RemoteProtocolError as exc:
            await _refuse(stream, limits, exc.error_status_hint, "bad_request", str(exc))
            return None
        if event is h11.NEED_DATA:
            data = await _receive(stream)
            if data and not timer.begun:
                timer.begun = True  # the request has begun: it must now arrive promptly
                timer.deadline = min(timer.deadline, trio.current_time() + limits.request_timeout_s)
            conn.receive_data(data)
        elif isinstance(event, h11.Request):
            head, fields = event, _fields(event)
            size = len(event.target) + sum(len(k) + len(v) + 4 for k, v in fields.items())
            if size > limits.max_header_bytes:  # h11 checks only a head that came in pieces
                message = "request header fields too large"
                await _refuse(stream, limits, 431, "header_too_large", message)
                return None
            if event.http_version not in (b"1.0", b"1.1"):
                message = f"HTTP/{event.http_version.decode()} is not spoken here"
                await _refuse(stream, limits, 505, "http_version_not_supported", message)
                return None
            if int(fields.get("content-length", "0")) > limits.max_body_bytes:
                message = f"body is larger than {limits.max_body_bytes} bytes"
                await _refuse(stream, limits, 413, "payload_too_large", message)
                return None
            if conn.they_are_waiting_for_100_continue:
                await _send_bytes(stream, b"HTTP/1.1 100 Continue\r\n\r\n")
        elif isinstance(event, h11.Data):
            body += event.data
            if len(body) > limits.max_body_bytes:
                message = f"body is larger than {limits.max_body_bytes} bytes"
                await _refuse(stream, limits, 413, "payload_too_large", message)
                return None
        elif isinstance(event, h11.EndOfMessage):
            assert head is not None
            return _request(head, fields, bytes(body))
        else:  # ConnectionClosed
            return None


async def _receive(stream: trio.abc.Stream) -> bytes:
    try:
        return bytes(await stream.receive_some(65536))
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        raise _ClientGone from None


def _fields(head: h11.Request) -> dict[str, str]:
    """The header fields, names lower-cased, repeated ones joined (one pass: h11's
    ``Headers`` is a sequence that costs an index look-up per item)."""
    headers: dict[str, str] = {}
    for raw_name, value in head.headers.raw_items():
        key = raw_name.decode("latin-1").lower()
        text = value.decode("latin-1")
        headers[key] = f"{headers[key]}, {text}" if key in headers else text
    return headers


def _request(head: h11.Request, headers: dict[str, str], body: bytes) -> tuple[Request, bool]:
    keep_alive = head.http_version == b"1.1" and "close" not in _tokens(headers, "connection")
    target = head.target.decode("latin-1")
    method = head.method.decode("latin-1")
    if "?" not in target and "#" not in target and target.startswith("/"):
        return Request(method, target, headers, body, target), keep_alive  # the common case
    parts = urlsplit(target)
    query = dict(parse_qsl(parts.query))
    return Request(method, target, headers, body, parts.path, query), keep_alive


def _tokens(headers: Mapping[str, str], name: str) -> list[str]:
    return [token.strip().lower() for token in headers.get(name, "").split(",")]


async def _refuse(
    stream: trio.abc.Stream, limits: Limits, status: int, error: str, message: str
) -> None:
    """Answer a request we will not serve, within ``request_timeout_s``; the connection
    is closed next."""
    data, _ = _encode(Response.error(status, error, message), "GET", keep_alive=False)
    with contextlib.suppress(_ClientGone), trio.move_on_after(limits.request_timeout_s):
        await _send_bytes(stream, data)


_TOKEN = re.compile(r"[-!#$%&'*+.^_`|~0-9A-Za-z]+")
_CHECKED_NAMES: set[str] = set()  # header names known to be tokens: checked once
_CLOSE = "connection: close\r\n"
_INTERNAL_ERROR = Response.error(500, "internal_error", "the server failed to answer")


def _encode(response: Response, method: str, keep_alive: bool) -> tuple[bytes, bool]:
    """The bytes of a response, and whether the connection may serve another request.

    Status 1xx, 204 and 304 carry no body, nor does the answer to a HEAD request (which
    still says how long the body would be). A response header ``connection: close``
    ends the connection after it; so does a client that asked for that. A header value
    with CR, LF or NUL in it, or a name that is not a token, is a handler's bug: refused.
    """
    status, body = response.status, response.body
    fields = []
    for name, value in response.headers:
        if name not in _CHECKED_NAMES:
            if _TOKEN.fullmatch(name) is None:
                raise ValueError(f"bad response header name {name!r}")
            if len(_CHECKED_NAMES) < 256:
                _CHECKED_NAMES.add(name)
        if name.lower() == "connection" and "close" in value.lower():
            keep_alive = False
        else:
            fields.append(f"{name}: {value}\r\n")
    extra = "".join(fields)
    if extra.count("\n") != len(fields) or extra.count("\r") != len(fields) or "\0" in extra:
        raise ValueError(f"bad response header value in {response.headers!r}")
    if status >= 200 and status not in (204, 304):
        framing = f"content-type: {response.content_type}\r\ncontent-length: {len(body)}\r\n"
    else:
        framing, body = "", b""
    head = (
        f"HTTP/1.1 {status} {_REASONS.get(status, '')}\r\nserver: ratelimiter\r\n{framing}"
        f"{extra}{'' if keep_alive else _CLOSE}\r\n"
    ).encode("latin-1")
    return (head if method == "HEAD" else head + body), keep_alive


async def _send_bytes(stream: trio.abc.Stream, data: bytes) -> None:
    try:
        await stream.send_all(data)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        raise _ClientGone from None
