"""The HTTP/1.1 client transport: keep-alive connection pools over trio streams.

It owns the wire side of one delivery attempt: opening a connection through a replaceable
connector, TLS, sending the request and reading the response (rendered and parsed in
`webhookd.http1`: heads from validated parts, responses by llhttp), connection reuse per
origin, the per-attempt timeout, and the translation of every trio, ssl, parser and OS
error into the `webhookd.errors.TransportError` tree. Each key (an endpoint) has a route:
its URL parsed once (`webhookd.urls`), the constant part of its request head rendered
once, and its pool. What a status code means (success, retry, gone) is the caller's
business, not this module's.
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from types import TracebackType

import httptools
import trio

from socketbytes import faster, receive_reply, tls_client
from webhookd.errors import (
    ConnectError,
    EndpointError,
    ProtocolError,
    TimeoutError_,
    TransportError,
)
from webhookd.http1 import (
    MalformedResponse,
    RequestHead,
    Response,
    ResponseReader,
    UnsendableRequest,
)
from webhookd.urls import EndpointUrl, Origin

__all__ = ["ConnectionPool", "Connector", "Origin", "Response", "Transport"]

_RECEIVE_SIZE = 65536


Connector = Callable[[Origin], Awaitable[trio.abc.Stream]]
"""Opens the byte stream (TCP) to an origin; TLS, when the scheme asks for it, goes on top.

A plain callable so that a caller can resolve the host, vet the address and connect to
exactly that address. It fails with OSError (as trio does) or a TransportError of its own.
"""


async def _open_tcp(origin: Origin) -> trio.abc.Stream:
    return await trio.open_tcp_stream(origin.host, origin.port)


class _StaleConnection(Exception):
    """A reused connection died before any response byte: the peer closed it while idle."""


class _TimedOut(Exception):
    """The watchdog closed the connection at the request's deadline."""


@dataclass(slots=True, eq=False)
class _Connection:
    stream: trio.abc.Stream
    reader: ResponseReader
    idle_since: float = 0.0
    timed_out: bool = False  # the watchdog closed it mid-exchange


class _Watchdog:
    """The per-request timeout of every pool of a transport, without a cancel scope per
    request: entering and leaving one cost about as much as parsing the response.

    An exchange is registered with its deadline; one task (a system task, started when
    needed and ended after a second with nothing in flight) closes the stream of every
    exchange past its deadline, which ends its pending send or receive with an error that
    the exchange reports as a timeout. It wakes at the earliest deadline it knows of, and
    every ``TICK_S`` for those registered meanwhile, which fire up to that much late.
    """

    TICK_S = 0.05
    IDLE_TICKS = 20

    __slots__ = ("_due", "_running")

    def __init__(self) -> None:
        self._due: dict[_Connection, float] = {}
        self._running = False

    def watch(self, conn: _Connection, deadline: float) -> None:
        self._due[conn] = deadline
        if not self._running:
            self._running = True
            trio.lowlevel.spawn_system_task(self._run, name="webhookd.transport.watchdog")

    def forget(self, conn: _Connection) -> None:
        self._due.pop(conn, None)

    async def _run(self) -> None:
        try:
            idle = 0
            while idle < self.IDLE_TICKS:
                due = self._due
                wake = trio.current_time() + self.TICK_S
                await trio.sleep_until(min(wake, min(due.values())) if due else wake)
                idle = 0 if due else idle + 1
                now = trio.current_time()
                late = [conn for conn, deadline in self._due.items() if deadline <= now]
                for conn in late:
                    del self._due[conn]
                    conn.timed_out = True
                    with contextlib.suppress(Exception):  # a system task must not fail
                        await trio.aclose_forcefully(conn.stream)
        finally:
            self._running = False


def _reason(exc: BaseException) -> str:
    """The innermost message of a wrapped error ("Connection refused", not "all attempts...")."""
    while exc.__cause__ is not None:
        exc = exc.__cause__
    if isinstance(exc, BaseExceptionGroup):
        return "; ".join(dict.fromkeys(_reason(inner) for inner in exc.exceptions))
    return str(exc) or type(exc).__name__


class _translated:
    """The one place where foreign errors become TransportError subclasses.

    `stage` is "connect", "tls" or "exchange": the same OSError means a failed connection
    in the first two and a connection lost mid-response in the last. A context manager
    written as a class: it wraps every request, and a generator-based one costs more.
    """

    __slots__ = ("origin", "stage")

    def __init__(self, origin: Origin, stage: str) -> None:
        self.origin = origin
        self.stage = stage

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc is None or isinstance(exc, TransportError | _StaleConnection | _TimedOut):
            return
        origin = self.origin
        if isinstance(
            exc, MalformedResponse | httptools.HttpParserError | httptools.HttpParserUpgrade
        ):
            raise ProtocolError(f"malformed response from {origin}: {exc}") from exc
        if isinstance(exc, UnsendableRequest | UnicodeError):
            # A header from the caller that HTTP cannot carry (a newline, non-ASCII text).
            raise ProtocolError(f"cannot send this request to {origin}: {exc}") from exc
        if isinstance(exc, OSError | trio.BrokenResourceError | trio.ClosedResourceError):
            if self.stage == "connect":
                raise ConnectError(f"connect to {origin} failed: {_reason(exc)}") from exc
            if self.stage == "tls":
                raise ConnectError(f"TLS handshake with {origin} failed: {_reason(exc)}") from exc
            raise ProtocolError(f"connection to {origin} lost: {_reason(exc)}") from exc


def _head(
    origin: Origin, method: str, target: str, static_headers: Sequence[tuple[str, str]]
) -> RequestHead:
    """The constant part of requests to `target` on `origin`, rendered once, sent many times."""
    with _translated(origin, "exchange"):
        return RequestHead.build(method, target, origin.authority, static_headers)


async def _close(conn: _Connection) -> None:
    """Close without a TLS goodbye: it could block, and no HTTP/1.1 peer needs it."""
    await trio.aclose_forcefully(conn.stream)


class ConnectionPool:
    """Keep-alive connections to one origin.

    At most `size` requests are in flight (the endpoint's concurrency cap), so the pool
    never holds more than `size` connections.
    """

    def __init__(
        self,
        origin: Origin,
        *,
        size: int,
        ssl_context: ssl.SSLContext | None = None,
        body_cap: int = 65536,
        connector: Connector | None = None,
        keepalive_expiry_s: float = 30.0,
        watchdog: _Watchdog | None = None,
    ) -> None:
        if size < 1:
            raise ValueError(f"a connection pool needs size >= 1, not {size}")
        self.origin = origin
        self.size = size
        self._slots = trio.Semaphore(size)
        https = origin.scheme == "https"
        self._tls = (ssl_context or ssl.create_default_context()) if https else None
        self._body_cap = body_cap
        self._connector = connector or _open_tcp
        self._keepalive_expiry_s = keepalive_expiry_s
        self._idle: list[_Connection] = []  # oldest first: released connections are appended
        self._closed = False
        self._watchdog = watchdog or _Watchdog()

    async def request(
        self,
        method: str,
        target: str,
        headers: Sequence[tuple[str, str]],
        body: bytes,
        *,
        timeout_s: float,
    ) -> Response:
        """Send one request and read its response; waiting for a free slot is not timed."""
        head = _head(self.origin, method, target, ())
        return await self.send(head, headers, body, timeout_s=timeout_s)

    async def send(
        self,
        head: RequestHead,
        headers: Sequence[tuple[str, str]],
        body: bytes,
        *,
        timeout_s: float,
    ) -> Response:
        """`request` with a head rendered beforehand for this pool's origin.

        `headers` are this request's own, checked on every call; Content-Length is ours.
        """
        if self._closed:
            raise ConnectError(f"the connection pool for {self.origin} is closed")
        with _translated(self.origin, "exchange"):
            request = head.render(headers, body)
            try:
                # A free slot costs no trip through the scheduler; the exchange checkpoints.
                self._slots.acquire_nowait()
            except trio.WouldBlock:
                await self._slots.acquire()
            try:
                now = trio.current_time()
                deadline = now + timeout_s
                conn = self._idle.pop() if self._idle else None
                if conn is not None and now - conn.idle_since > self._keepalive_expiry_s:
                    await self._expire(conn)  # and every older idle connection
                    conn = None
                if conn is not None:
                    try:
                        return await self._exchange(conn, request, True, deadline)
                    except _StaleConnection:
                        pass
                conn = await self._connect(deadline)
                if conn is not None:
                    return await self._exchange(conn, request, False, deadline)
            except _TimedOut:
                pass
            finally:
                self._slots.release()
            raise TimeoutError_(f"no complete response from {self.origin} within {timeout_s:g} s")

    async def aclose(self) -> None:
        """Close the idle connections; those in use are closed when their request ends."""
        self._closed = True
        idle, self._idle = self._idle, []
        for conn in idle:
            await _close(conn)

    async def _expire(self, newest: _Connection) -> None:
        """Close `newest`, taken from the idle list past its expiry, and the older ones."""
        expired, self._idle = [newest, *self._idle], []
        for conn in expired:
            await _close(conn)

    async def _connect(self, deadline: float) -> _Connection | None:
        """A new connection, or None when ``deadline`` passed first (connections are
        opened rarely enough for a cancel scope of their own)."""
        with trio.move_on_at(deadline):
            with _translated(self.origin, "connect"):
                stream = await self._connector(self.origin)
            if self._tls is None:
                stream = faster(stream)
            else:
                with _translated(self.origin, "tls"):
                    stream = await tls_client(stream, self._tls, self.origin.host)
            return _Connection(stream, ResponseReader(self._body_cap))
        return None

    async def _exchange(
        self, conn: _Connection, request: bytes, reused: bool, deadline: float
    ) -> Response:
        """One request/response on `conn`, which ends up idle again or closed; _TimedOut
        when the watchdog closed it at ``deadline``."""
        stream, reader = conn.stream, conn.reader
        watchdog = self._watchdog
        watchdog.watch(conn, deadline)
        try:
            reader.start()
            reusable = True
            # The other lanes' requests are written in the same pass: the receiver is
            # woken once for all of them (docs/decisions.md, "written together").
            await trio.lowlevel.cancel_shielded_checkpoint()
            try:
                await stream.send_all(request)
            except trio.BrokenResourceError:
                # The peer may have answered before reading the body (a 413, say): read on.
                reusable = False
            received = False
            response = None
            while response is None:
                try:
                    data = await (
                        stream.receive_some(_RECEIVE_SIZE)
                        if received
                        else receive_reply(stream, _RECEIVE_SIZE)  # waits before it reads
                    )
                except trio.BrokenResourceError:
                    if reused and not received:
                        raise _StaleConnection from None
                    raise
                if data:
                    received = True
                    response = reader.feed(data)
                elif received:
                    response = reader.feed_eof()
                elif reused:
                    raise _StaleConnection
                else:
                    raise ProtocolError(f"{self.origin} closed the connection without a response")
        except BaseException as exc:
            watchdog.forget(conn)
            await _close(conn)
            if conn.timed_out and not isinstance(exc, trio.Cancelled):
                raise _TimedOut from None
            raise
        watchdog.forget(conn)
        if reusable and reader.reusable and not self._closed and not conn.timed_out:
            conn.idle_since = trio.current_time()
            self._idle.append(conn)
        else:
            await _close(conn)
        return response


@dataclass(frozen=True, slots=True)
class _Route:
    url: str
    size: int
    tls: ssl.SSLContext | None
    static_headers: tuple[tuple[str, str], ...]
    head: RequestHead
    pool: ConnectionPool


class Transport:
    """The pools of one process, one per key.

    The daemon uses the endpoint id as key, which also isolates endpoints from each other.
    """

    def __init__(
        self,
        *,
        ssl_context: ssl.SSLContext | None = None,
        body_cap: int = 65536,
        connector: Connector | None = None,
    ) -> None:
        # One context for every pool: building one reads the system's CA store.
        self._ssl_context = ssl_context or ssl.create_default_context()
        self._body_cap = body_cap
        self._connector = connector
        self._routes: dict[str, _Route] = {}
        self._watchdog = _Watchdog()

    async def post(
        self,
        key: str,
        url: str,
        headers: Sequence[tuple[str, str]],
        body: bytes,
        *,
        size: int,
        timeout_s: float,
        ssl_context: ssl.SSLContext | None = None,
        static_headers: Sequence[tuple[str, str]] = (),
    ) -> Response:
        """POST through the key's route, rebuilt when its URL, size, TLS or static headers change.

        `static_headers` are the same for every request to this key (Content-Type,
        User-Agent, a vendor's own): checked and rendered once. `headers` are this
        request's own, checked on every call. `ssl_context` is the key's own (a custom
        CA, a client certificate); None uses the transport's shared one. Raises
        EndpointError for a URL that `Origin.from_url` rejects, else only
        TransportError subclasses (ProtocolError for a header HTTP cannot carry).
        """
        route = self._routes.get(key)
        if (
            route is None
            or route.url != url
            or route.size != size
            or route.tls is not ssl_context
            or (
                static_headers is not route.static_headers
                and tuple(static_headers) != route.static_headers
            )
        ):
            route = await self._replace_route(key, url, size, ssl_context, tuple(static_headers))
        return await route.pool.send(route.head, headers, body, timeout_s=timeout_s)

    async def aclose(self) -> None:
        """Close every pool; a later post opens new ones."""
        routes, self._routes = self._routes, {}
        for route in routes.values():
            await route.pool.aclose()

    async def _replace_route(
        self,
        key: str,
        url: str,
        size: int,
        tls: ssl.SSLContext | None,
        static_headers: tuple[tuple[str, str], ...],
    ) -> _Route:
        """A new route; its pool is kept if only the path or the static headers changed."""
        try:
            parsed = EndpointUrl.parse(url)
        except EndpointError as exc:
            raise EndpointError(f"bad endpoint URL {url!r}: {exc}") from None
        head = _head(parsed.origin, "POST", parsed.target, static_headers)
        old = self._routes.get(key)
        if old is not None and (old.pool.origin, old.size, old.tls) == (parsed.origin, size, tls):
            pool = old.pool
        else:
            pool = ConnectionPool(
                parsed.origin,
                size=size,
                ssl_context=tls or self._ssl_context,
                body_cap=self._body_cap,
                connector=self._connector,
                watchdog=self._watchdog,
            )
        route = self._routes[key] = _Route(url, size, tls, static_headers, head, pool)
        if old is not None and old.pool is not pool:
            await old.pool.aclose()
        return route
