"""The trio edge: listeners, one task per connection, and one watchdog for the time limits."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from functools import partial

import structlog
import trio

from httpserve._messages import Handler, Heads, Limits, Response
from httpserve._reader import Refusal, RequestReader
from socketbytes import faster

log = structlog.get_logger("httpserve")

RECEIVE_BYTES = 65536
LINGER_S = 1.0  # after a refusal, how long the rest of the request may drain
LINGER_BYTES = 256 * 1024
_DEFAULT_LIMITS = Limits()
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_INTERNAL_ERROR = Response.error(500, "internal_error", "the server failed to answer")


class _ClientGone(Exception):
    """The peer closed, broke or stalled the connection; nothing more to send."""


class _Timer:
    """One connection's current deadline, kept in a plain attribute for the watchdog."""

    __slots__ = ("begun", "deadline", "scope")

    def __init__(self) -> None:
        self.scope = trio.CancelScope()
        self.deadline = math.inf
        self.begun = False  # a request has started to arrive: a timeout now earns a 408


class Pacer:
    """Groups the answers of a server's connections into one pass of the scheduler.

    Writing to a client that sleeps wakes it, and the wake-up costs the writer about
    10 µs of system time (on a VM, an interrupt sent to another processor): as much as
    parsing a request. Answers written one after another in one pass wake a client
    once for all of them. So while other connections are answering too (woken together
    by the same batch of input, or by the same round trip of their handlers), a
    connection whose answer is ready lets them render theirs first. Alone, it writes
    at once: the extra pass would only add latency.
    """

    __slots__ = ("answering",)

    def __init__(self) -> None:
        self.answering = 0  # connections between a whole request and its answer's write


class Watchdog:
    """Enforces the time limits of every connection of a server, from one task.

    A cancel scope with a deadline around each read and each write costs as much as
    parsing the request. Instead each connection keeps its deadline in a plain
    attribute, and ``run`` cancels those that have passed theirs, looking every tenth
    of the shortest limit: a limit is enforced that much late, at most. The
    connections it watches share its ``pacer`` too.
    """

    def __init__(self, limits: Limits) -> None:
        shortest = min(limits.request_timeout_s, limits.keepalive_timeout_s)
        self.tick_s = min(max(shortest / 10, 0.001), 1.0)
        self._timers: set[_Timer] = set()
        self.pacer = Pacer()  # the connections it watches answer in step

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
    server_name: str,
    limits: Limits = _DEFAULT_LIMITS,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve until cancelled; ``task_status.started`` gets the bound port (useful with 0)."""
    Heads(server_name)  # a bad name fails here, before the port is bound
    listeners = await trio.open_tcp_listeners(port, host=host)
    await serve_listeners(
        handler, listeners, server_name=server_name, limits=limits, task_status=task_status
    )


async def serve_listeners(
    handler: Handler,
    listeners: list[trio.SocketListener],
    *,
    server_name: str,
    limits: Limits = _DEFAULT_LIMITS,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """``serve`` on listeners opened by the caller (to report a bind failure plainly)."""
    heads = Heads(server_name)
    watchdog = Watchdog(limits)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(watchdog.run)
        serve_one = partial(_serve_connection, handler, limits, heads, watchdog)
        task_status.started(listeners[0].socket.getsockname()[1])
        await trio.serve_listeners(serve_one, listeners)


async def serve_connection(
    handler: Handler,
    limits: Limits,
    stream: trio.abc.Stream,
    *,
    server_name: str,
    watchdog: Watchdog | None = None,
) -> None:
    """Answer the requests of one connection in turn; raises nothing but cancellation.

    Without a server's ``watchdog``, the connection runs one of its own.
    """
    heads = Heads(server_name)
    if watchdog is not None:
        await _serve_connection(handler, limits, heads, watchdog, stream)
        return
    async with trio.open_nursery() as nursery:
        watchdog = Watchdog(limits)
        nursery.start_soon(watchdog.run)
        await _serve_connection(handler, limits, heads, watchdog, stream)
        nursery.cancel_scope.cancel()


async def _serve_connection(
    handler: Handler, limits: Limits, heads: Heads, watchdog: Watchdog, stream: trio.abc.Stream
) -> None:
    stream = faster(stream)
    try:
        with watchdog.watching() as timer:
            refusal = None
            with timer.scope:
                refusal = await _serve(handler, limits, heads, stream, timer, watchdog.pacer)
            if timer.scope.cancelled_caught and timer.begun:
                refusal = Refusal(408, "request_timeout", "request took too long")
            if refusal is not None:
                await _refuse(stream, limits, heads, refusal)
    except _ClientGone:
        return
    except Exception:  # one broken connection must never take the listener down
        log.exception("http.connection_failed")
    finally:
        await trio.aclose_forcefully(stream)


async def _serve(
    handler: Handler,
    limits: Limits,
    heads: Heads,
    stream: trio.abc.Stream,
    timer: _Timer,
    pacer: Pacer,
) -> Refusal | None:
    """Answer requests until the connection is done; the refusal that ended it, if any."""
    reader = RequestReader(limits)
    ready = reader.ready
    while True:
        if not ready:
            await _receive_request(reader, stream, limits, timer)
            if not ready:
                return None  # the client closed between requests
        item = ready.popleft()
        if isinstance(item, Refusal):
            return item
        request, keep_alive = item
        timer.begun, timer.deadline = False, math.inf  # the handler bounds its own work
        pacer.answering += 1
        try:
            try:
                data, keep_alive = heads.render(await handler(request), request.method,
                                                keep_alive)  # fmt: skip
            except Exception:  # a handler's exception, or a header it should not have made
                log.exception("http.handler_failed", method=request.method, path=request.path)
                data, keep_alive = heads.render(_INTERNAL_ERROR, request.method, keep_alive)
            timer.deadline = trio.current_time() + limits.request_timeout_s
            if pacer.answering > 1:
                await trio.lowlevel.cancel_shielded_checkpoint()
        finally:
            pacer.answering -= 1
        await _send(stream, data)
        if not keep_alive:
            await _linger(stream, limits)
            return None


async def _receive_request(
    reader: RequestReader, stream: trio.abc.Stream, limits: Limits, timer: _Timer
) -> None:
    """Receive until the reader has something to answer, or the client closed."""
    timer.begun = reader.busy
    timer.deadline = trio.current_time() + (
        limits.request_timeout_s if reader.busy else limits.keepalive_timeout_s
    )
    while not reader.ready:
        if reader.continue_due:
            reader.continue_due = False
            await _send(stream, _CONTINUE)
        data = await _receive(stream)
        if not data:
            reader.end_of_input()
            return
        if not timer.begun:
            timer.begun = True  # the request has begun: it must now arrive promptly
            timer.deadline = min(timer.deadline, trio.current_time() + limits.request_timeout_s)
        reader.feed(data)


async def _refuse(stream: trio.abc.Stream, limits: Limits, heads: Heads, refusal: Refusal) -> None:
    """Answer a request we will not serve, within ``request_timeout_s``; the connection
    is closed next."""
    response = Response.error(refusal.status, refusal.error, refusal.message)
    data, _ = heads.render(response, "GET", keep_alive=False)
    with contextlib.suppress(_ClientGone):
        with trio.move_on_after(limits.request_timeout_s) as sending:
            await _send(stream, data)
        if not sending.cancelled_caught:
            await _linger(stream, limits)


async def _linger(stream: trio.abc.Stream, limits: Limits) -> None:
    """Before the server closes a connection: half-close it, and drain for a moment
    what the client still sends (the rest of a refused body, pipelined requests).
    Closing with unread bytes would reset the connection: the client could lose the
    answer it has not read yet."""
    with trio.move_on_after(min(LINGER_S, limits.request_timeout_s)):
        if isinstance(stream, trio.abc.HalfCloseableStream):
            await stream.send_eof()
        drained = 0
        while drained < LINGER_BYTES and (chunk := await _receive(stream)):
            drained += len(chunk)


async def _receive(stream: trio.abc.Stream) -> bytes | bytearray:
    try:
        return await stream.receive_some(RECEIVE_BYTES)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        raise _ClientGone from None


async def _send(stream: trio.abc.Stream, data: bytes) -> None:
    try:
        await stream.send_all(data)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        raise _ClientGone from None
