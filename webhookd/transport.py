"""The HTTP/1.1 client transport: keep-alive connection pools speaking h11 over trio streams.

It owns the wire side of one delivery attempt: opening a connection through a replaceable
connector, TLS, framing the request and parsing the response with h11 (nothing here parses
HTTP by hand), connection reuse per origin, the per-attempt timeout, and the translation of
every trio, ssl, h11 and OS error into the `webhookd.errors.TransportError` tree. What a
status code means (success, retry, gone) is the caller's business, not this module's.
"""

from __future__ import annotations

import ipaddress
import re
import ssl
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import cast
from urllib.parse import urlsplit

import h11
import trio

from webhookd.errors import (
    ConnectError,
    EndpointError,
    ProtocolError,
    TimeoutError_,
    TransportError,
)

__all__ = ["ConnectionPool", "Connector", "Origin", "Response", "Transport"]

_DEFAULT_PORTS = {"http": 80, "https": 443}
_RECEIVE_SIZE = 65536
_HOSTNAME = re.compile(r"[a-z0-9_.-]+")
_TARGET = re.compile(r"[\x21-\x7e]+")  # what h11 accepts as a request target, in ASCII


@dataclass(frozen=True, slots=True)
class Origin:
    """Where connections go; requests to one origin can share a keep-alive connection."""

    scheme: str  # "http" or "https"
    host: str  # lower case, IDNA-encoded, IPv6 without brackets
    port: int

    @classmethod
    def from_url(cls, url: str) -> Origin:
        """The origin of an endpoint URL; raises EndpointError for a URL we could not POST to."""
        return _split_url(url)[0]

    @property
    def authority(self) -> str:
        """The Host header value: the port only when it is not the scheme's default."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if _DEFAULT_PORTS[self.scheme] == self.port else f"{host}:{self.port}"

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def _split_url(url: str) -> tuple[Origin, str]:
    """Validate a whole endpoint URL once, so that a bad one fails at registration, not per POST."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise EndpointError(f"bad endpoint URL {url!r}: {exc}") from None
    if parts.scheme not in _DEFAULT_PORTS:
        raise EndpointError(f"bad endpoint URL {url!r}: the scheme must be http or https")
    if parts.username is not None or parts.password is not None:
        raise EndpointError(f"bad endpoint URL {url!r}: credentials in the URL are not supported")
    host = parts.hostname or ""
    try:
        if ":" in host:
            ipaddress.IPv6Address(host)
        else:
            host = host.encode("idna").decode("ascii")
            if not _HOSTNAME.fullmatch(host):
                raise ValueError("invalid host name")
    except ValueError as exc:  # UnicodeError is a ValueError
        raise EndpointError(f"bad endpoint URL {url!r}: host {host!r}: {exc}") from None
    if port == 0:
        raise EndpointError(f"bad endpoint URL {url!r}: port 0")
    target = f"{parts.path or '/'}?{parts.query}" if parts.query else parts.path or "/"
    if not _TARGET.fullmatch(target):
        raise EndpointError(f"bad endpoint URL {url!r}: the path must be printable ASCII")
    return Origin(parts.scheme, host, port or _DEFAULT_PORTS[parts.scheme]), target


@dataclass(frozen=True, slots=True)
class Response:
    """A complete response, its body capped: receivers' answers are only ever logged."""

    status: int
    headers: tuple[tuple[str, str], ...]  # names lower-cased, values decoded latin-1
    body: bytes  # at most body_cap bytes
    body_truncated: bool

    def header(self, name: str) -> str | None:
        """The first value of a header, by case-insensitive name."""
        name = name.lower()
        for key, value in self.headers:
            if key == name:
                return value
        return None


Connector = Callable[[Origin], Awaitable[trio.abc.Stream]]
"""Opens the byte stream (TCP) to an origin; TLS, when the scheme asks for it, goes on top.

A plain callable so that a caller can resolve the host, vet the address and connect to
exactly that address. It fails with OSError (as trio does) or a TransportError of its own.
"""


async def _open_tcp(origin: Origin) -> trio.abc.Stream:
    return await trio.open_tcp_stream(origin.host, origin.port)


class _StaleConnection(Exception):
    """A reused connection died before any response byte: the peer closed it while idle."""


@dataclass(slots=True)
class _Connection:
    stream: trio.abc.Stream
    h11: h11.Connection
    idle_since: float = 0.0


def _reason(exc: BaseException) -> str:
    """The innermost message of a wrapped error ("Connection refused", not "all attempts...")."""
    while exc.__cause__ is not None:
        exc = exc.__cause__
    if isinstance(exc, BaseExceptionGroup):
        return "; ".join(dict.fromkeys(_reason(inner) for inner in exc.exceptions))
    return str(exc) or type(exc).__name__


@contextmanager
def _translated(origin: Origin, stage: str) -> Iterator[None]:
    """The one place where foreign errors become TransportError subclasses.

    `stage` is "connect", "tls" or "exchange": the same OSError means a failed connection
    in the first two and a connection lost mid-response in the last.
    """
    try:
        yield
    except (TransportError, _StaleConnection):
        raise
    except h11.RemoteProtocolError as exc:
        raise ProtocolError(f"malformed response from {origin}: {exc}") from exc
    except (h11.LocalProtocolError, UnicodeError) as exc:
        # A header value from the caller that HTTP cannot carry (a newline, non-ASCII text).
        raise ProtocolError(f"cannot send this request to {origin}: {exc}") from exc
    except (OSError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
        if stage == "connect":
            raise ConnectError(f"connect to {origin} failed: {_reason(exc)}") from exc
        if stage == "tls":
            raise ConnectError(f"TLS handshake with {origin} failed: {_reason(exc)}") from exc
        raise ProtocolError(f"connection to {origin} lost: {_reason(exc)}") from exc


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
    ) -> None:
        if size < 1:
            raise ValueError(f"a connection pool needs size >= 1, not {size}")
        self.origin = origin
        self.size = size
        self._authority = origin.authority
        self._slots = trio.Semaphore(size)
        https = origin.scheme == "https"
        self._tls = (ssl_context or ssl.create_default_context()) if https else None
        self._body_cap = body_cap
        self._connector = connector or _open_tcp
        self._keepalive_expiry_s = keepalive_expiry_s
        self._idle: list[_Connection] = []  # oldest first: released connections are appended
        self._closed = False

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
        if self._closed:
            raise ConnectError(f"the connection pool for {self.origin} is closed")
        try:
            # A free slot costs no trip through the scheduler; the exchange checkpoints anyway.
            self._slots.acquire_nowait()
        except trio.WouldBlock:
            await self._slots.acquire()
        try:
            with (
                trio.CancelScope(deadline=trio.current_time() + timeout_s),
                _translated(self.origin, "exchange"),
            ):
                event = h11.Request(
                    method=method,
                    target=target,
                    headers=[
                        ("Host", self._authority),
                        ("Content-Length", str(len(body))),
                        *headers,
                    ],
                )
                conn = await self._checkout()
                if conn is None:
                    return await self._exchange(await self._connect(), event, body, False)
                try:
                    return await self._exchange(conn, event, body, True)
                except _StaleConnection:
                    return await self._exchange(await self._connect(), event, body, False)
        finally:
            self._slots.release()
        raise TimeoutError_(f"no complete response from {self.origin} within {timeout_s:g} s")

    async def aclose(self) -> None:
        """Close the idle connections; those in use are closed when their request ends."""
        self._closed = True
        idle, self._idle = self._idle, []
        for conn in idle:
            await _close(conn)

    async def _checkout(self) -> _Connection | None:
        """The most recently used idle connection if it has not expired, else None."""
        if not self._idle:
            return None
        conn = self._idle.pop()
        if trio.current_time() - conn.idle_since <= self._keepalive_expiry_s:
            return conn
        # The newest idle connection has expired, so every older one has too.
        expired, self._idle = [conn, *self._idle], []
        for old in expired:
            await _close(old)
        return None

    async def _connect(self) -> _Connection:
        with _translated(self.origin, "connect"):
            stream = await self._connector(self.origin)
        if self._tls is not None:
            stream = trio.SSLStream(
                stream, self._tls, server_hostname=self.origin.host, https_compatible=True
            )
            try:
                with _translated(self.origin, "tls"):
                    await stream.do_handshake()
            except BaseException:
                await trio.aclose_forcefully(stream)
                raise
        return _Connection(stream, h11.Connection(h11.CLIENT))

    async def _exchange(
        self, conn: _Connection, event: h11.Request, body: bytes, reused: bool
    ) -> Response:
        """One request/response on `conn`, which ends up idle again or closed."""
        try:
            response, reusable = await self._send_and_receive(conn, event, body, reused)
        except BaseException:
            await _close(conn)
            raise
        state = conn.h11
        if (
            reusable
            and not self._closed
            and state.our_state is h11.DONE
            and state.their_state is h11.DONE
        ):
            state.start_next_cycle()
            # Bytes after the response, or an EOF already seen: nothing more to send here.
            if state.trailing_data == (b"", False):
                conn.idle_since = trio.current_time()
                self._idle.append(conn)
                return response
        await _close(conn)
        return response

    async def _send_and_receive(
        self, conn: _Connection, event: h11.Request, body: bytes, reused: bool
    ) -> tuple[Response, bool]:
        """The response, and whether the connection may carry another request."""
        state, stream = conn.h11, conn.stream
        request_bytes = state.send(event) + state.send(h11.Data(data=body))
        state.send(h11.EndOfMessage())  # Content-Length framing: nothing more to write
        reusable = True
        try:
            await stream.send_all(request_bytes)
        except trio.BrokenResourceError:
            # The peer may have answered before reading the body (a 413, say): read on.
            reusable = False
        status, received = 0, False
        headers: tuple[tuple[str, str], ...] = ()
        chunks = bytearray()
        while True:
            next_event = state.next_event()
            if next_event is h11.NEED_DATA:
                try:
                    data = await stream.receive_some(_RECEIVE_SIZE)
                except trio.BrokenResourceError:
                    if reused and not received:
                        raise _StaleConnection from None
                    raise
                if not data and not received:
                    if reused:
                        raise _StaleConnection
                    raise ProtocolError(f"{self.origin} closed the connection without a response")
                received = True
                state.receive_data(cast(bytes, data))  # h11 takes any bytes-like object
            elif type(next_event) is h11.Response:
                status = next_event.status_code
                headers = tuple(
                    (name.decode("latin-1"), value.decode("latin-1"))
                    for name, value in next_event.headers
                )
            elif type(next_event) is h11.Data:
                room = self._body_cap - len(chunks)
                if len(next_event.data) > room:
                    chunks += next_event.data[:room]
                    return Response(status, headers, bytes(chunks), True), False
                chunks += next_event.data
            elif type(next_event) is h11.EndOfMessage:
                return Response(status, headers, bytes(chunks), False), reusable
            elif type(next_event) is not h11.InformationalResponse:  # 1xx: keep reading
                # PAUSED or ConnectionClosed cannot come before EndOfMessage; looping on
                # them would spin without a checkpoint, out of reach of the timeout.
                raise ProtocolError(f"unexpected {next_event!r} from {self.origin}")


@dataclass(frozen=True, slots=True)
class _Route:
    url: str
    size: int
    tls: ssl.SSLContext | None
    target: str
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
    ) -> Response:
        """POST through the key's pool, rebuilt when the key's URL, size or TLS changes.

        `ssl_context` is the key's own (a custom CA, a client certificate); None uses
        the transport's shared one. Raises EndpointError for a URL that
        `Origin.from_url` rejects, else only TransportError subclasses.
        """
        route = self._routes.get(key)
        if route is None or route.url != url or route.size != size or route.tls is not ssl_context:
            route = await self._replace_route(key, url, size, ssl_context)
        return await route.pool.request("POST", route.target, headers, body, timeout_s=timeout_s)

    async def aclose(self) -> None:
        """Close every pool; a later post opens new ones."""
        routes, self._routes = self._routes, {}
        for route in routes.values():
            await route.pool.aclose()

    async def _replace_route(
        self, key: str, url: str, size: int, tls: ssl.SSLContext | None
    ) -> _Route:
        origin, target = _split_url(url)
        pool = ConnectionPool(
            origin,
            size=size,
            ssl_context=tls or self._ssl_context,
            body_cap=self._body_cap,
            connector=self._connector,
        )
        old = self._routes.get(key)
        route = self._routes[key] = _Route(url, size, tls, target, pool)
        if old is not None:
            await old.pool.aclose()
        return route
