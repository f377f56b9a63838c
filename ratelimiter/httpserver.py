"""A small HTTP/1.1 server: h11 on trio streams, keep-alive, bounded in every dimension.

The limiter service and webhookd's admin API both answer through it (DESIGN.md's
measurements: several times an ASGI server's rate on the same machine). HTTP parsing
is h11's; this module only drives it. Every connection is bounded: header bytes
(h11's ``max_incomplete_event_size``), body bytes, the time to send a request's head
and body (a slowloris trickle is cut off), and idle keep-alive time. A malformed
request gets a 4xx and the connection is closed; a handler's exception becomes a 500.
Nothing a client sends can crash the server.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import h11
import structlog
import trio

log = structlog.get_logger("ratelimiter.httpserver")

SERVER_HEADER = ("server", "ratelimiter")


@dataclass(frozen=True, slots=True)
class Limits:
    max_header_bytes: int = 16 * 1024
    max_body_bytes: int = 1024 * 1024
    request_timeout_s: float = 10.0  # to receive a whole request once it has begun
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
        return cls(status, json.dumps(value, separators=(",", ":")).encode(), headers)

    @classmethod
    def error(
        cls, status: int, error: str, message: str, headers: tuple[tuple[str, str], ...] = ()
    ) -> Response:
        return cls.json(status, {"error": error, "message": message}, headers)


Handler = Callable[[Request], Awaitable[Response]]


class _ClientGone(Exception):
    """The peer closed or broke the connection; nothing more to send."""


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
    task_status.started(listeners[0].socket.getsockname()[1])
    await trio.serve_listeners(partial(serve_connection, handler, limits), listeners)


async def serve_connection(handler: Handler, limits: Limits, stream: trio.abc.Stream) -> None:
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=limits.max_header_bytes)
    try:
        while True:
            request = await _next_request(conn, stream, limits)
            if request is None:
                return
            response = await _answer(handler, request)
            await _send(conn, stream, response)
            if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                return
            conn.start_next_cycle()
    except _ClientGone:
        return
    finally:
        await trio.aclose_forcefully(stream)


async def _answer(handler: Handler, request: Request) -> Response:
    try:
        return await handler(request)
    except Exception:
        log.exception("http.handler_failed", method=request.method, path=request.path)
        return Response.error(500, "internal_error", "the server failed to answer")


async def _next_request(
    conn: h11.Connection, stream: trio.abc.Stream, limits: Limits
) -> Request | None:
    """The next complete request, or None when the client is done (or must be dropped)."""
    head: h11.Request | None = None
    body = bytearray()
    begun = False
    deadline = trio.current_time() + limits.keepalive_timeout_s
    while True:
        try:
            event = conn.next_event()
        except h11.RemoteProtocolError as exc:
            await _refuse(conn, stream, exc.error_status_hint, "bad_request", str(exc))
            return None
        if event is h11.NEED_DATA:
            with trio.move_on_at(deadline):
                data = await _receive(stream)
                if data and not begun:
                    begun = True  # the request has begun: it must now arrive promptly
                    deadline = min(deadline, trio.current_time() + limits.request_timeout_s)
                conn.receive_data(data)
                continue
            if begun:
                await _refuse(conn, stream, 408, "request_timeout", "request took too long")
            return None
        if isinstance(event, h11.Request):
            head = event
        elif isinstance(event, h11.Data):
            body += event.data
            if len(body) > limits.max_body_bytes:
                message = f"body is larger than {limits.max_body_bytes} bytes"
                await _refuse(conn, stream, 413, "payload_too_large", message)
                return None
        elif isinstance(event, h11.EndOfMessage):
            assert head is not None
            return _request(head, bytes(body))
        else:  # ConnectionClosed, or PAUSED after a response (not reached: we loop per cycle)
            return None


async def _receive(stream: trio.abc.Stream) -> bytes:
    try:
        return bytes(await stream.receive_some(65536))
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        raise _ClientGone from None


def _request(head: h11.Request, body: bytes) -> Request:
    headers: dict[str, str] = {}
    for name, value in head.headers:
        key = name.decode("latin-1")
        text = value.decode("latin-1")
        headers[key] = f"{headers[key]}, {text}" if key in headers else text
    target = head.target.decode("latin-1")
    parts = urlsplit(target)
    return Request(
        method=head.method.decode("latin-1"),
        target=target,
        headers=headers,
        body=body,
        path=parts.path,
        query=dict(parse_qsl(parts.query)),
    )


async def _refuse(
    conn: h11.Connection, stream: trio.abc.Stream, status: int, error: str, message: str
) -> None:
    """Answer a request we will not serve, if the connection still allows an answer."""
    if conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
        return
    response = Response.error(status, error, message, (("connection", "close"),))
    with contextlib.suppress(_ClientGone, h11.LocalProtocolError):
        await _send(conn, stream, response)


async def _send(conn: h11.Connection, stream: trio.abc.Stream, response: Response) -> None:
    headers = [
        SERVER_HEADER,
        ("content-type", response.content_type),
        ("content-length", str(len(response.body))),
        *response.headers,
    ]
    data = conn.send(h11.Response(status_code=response.status, headers=headers))
    assert data is not None
    data += conn.send(h11.Data(data=response.body)) or b""
    data += conn.send(h11.EndOfMessage()) or b""
    try:
        await stream.send_all(data)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        raise _ClientGone from None
