"""A connected socket's bytes as a trio stream, with one trip through the scheduler per
exchange instead of three.

``trio.SocketStream`` tries each send and receive at once, and after one succeeds it
yields to the scheduler anyway; a receive that finds nothing raises, waits, and tries
again. A request and its answer so cost three scheduler trips where one would do (the
wait for the answer). Here a send or receive that can go ahead goes ahead, one that
cannot waits on the socket, and a receive that did not wait still notices a pending
cancellation. Measured in the delivery bench: 184 to 142 µs of daemon CPU a delivery
over plain HTTP, 257 to 170 over HTTPS, where ``trio.SSLStream`` makes several calls
per exchange.

Errors are trio's: ``BrokenResourceError`` for the peer's (a reset, a broken pipe),
``ClosedResourceError`` once the stream is closed, also under a task waiting on it
(a watchdog's way of ending an exchange).
"""

from __future__ import annotations

import os

import trio

__all__ = ["RECEIVE_BYTES", "SocketBytes", "faster"]

RECEIVE_BYTES = 65536


class SocketBytes(trio.abc.HalfCloseableStream):
    __slots__ = ("_fd", "_socket", "_stream")

    def __init__(self, stream: trio.SocketStream) -> None:
        self._stream = stream
        self._socket = stream.socket
        self._fd = stream.socket.fileno()

    @property
    def socket(self) -> trio.socket.SocketType:
        return self._socket

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(self._fd, view) :]
            except BlockingIOError:
                await trio.lowlevel.wait_writable(self._socket)
            except OSError as exc:
                raise self._broken(exc) from exc

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        while True:
            try:
                data = os.read(self._fd, max_bytes or RECEIVE_BYTES)
            except BlockingIOError:
                await trio.lowlevel.wait_readable(self._socket)
                continue
            except OSError as exc:
                raise self._broken(exc) from exc
            await trio.lowlevel.checkpoint_if_cancelled()
            return data

    async def wait_send_all_might_not_block(self) -> None:
        await trio.lowlevel.wait_writable(self._socket)

    async def send_eof(self) -> None:
        await self._stream.send_eof()

    async def aclose(self) -> None:
        await self._stream.aclose()

    def _broken(self, exc: OSError) -> Exception:
        if self._socket.fileno() == -1:
            return trio.ClosedResourceError("the stream was closed")
        return trio.BrokenResourceError(exc)


def faster(stream: trio.abc.Stream) -> trio.abc.Stream:
    """``SocketBytes`` over a ``trio.SocketStream``; any other stream as it is."""
    return SocketBytes(stream) if isinstance(stream, trio.SocketStream) else stream
