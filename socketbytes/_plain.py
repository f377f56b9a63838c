"""Plain sockets: ``SocketBytes``, and ``faster`` to put one under a trio socket stream."""

from __future__ import annotations

import os

import trio

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

    async def receive_reply(self, max_bytes: int | None = None) -> bytes:
        """``receive_some`` for the answer to what was just sent: it cannot be there yet,
        so this waits first and saves a read that would find nothing."""
        if self._socket.fileno() == -1:
            raise trio.ClosedResourceError("the stream was closed")
        await trio.lowlevel.wait_readable(self._socket)
        return await self.receive_some(max_bytes)

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
