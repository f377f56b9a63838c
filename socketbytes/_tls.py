"""A TLS client connection on OpenSSL's own socket I/O (``ssl.SSLSocket``, non-blocking).

``trio.SSLStream`` drives an ``ssl.SSLObject`` through memory buffers from Python: every
send and receive copies the bytes between OpenSSL and the socket in several Python-level
steps. Here OpenSSL reads and writes the socket itself, and the task only waits on the
socket when OpenSSL says it must (``SSLWantReadError`` / ``SSLWantWriteError``).
"""

from __future__ import annotations

import socket
import ssl

import trio

from socketbytes._plain import RECEIVE_BYTES, SocketBytes


class TLSBytes(trio.abc.Stream):
    """A client connection after its handshake; errors as ``SocketBytes``'s."""

    __slots__ = ("_fd", "_tls")

    def __init__(self, tls: ssl.SSLSocket) -> None:
        self._tls = tls
        self._fd = tls.fileno()

    @property
    def ssl_object(self) -> ssl.SSLSocket:
        """The TLS connection (its peer certificate, cipher and protocol version)."""
        return self._tls

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data)
        while view:
            try:
                view = view[self._tls.send(view) :]
            except ssl.SSLWantWriteError:
                await trio.lowlevel.wait_writable(self._fd)
            except ssl.SSLWantReadError:
                await trio.lowlevel.wait_readable(self._fd)
            except OSError as exc:
                raise self._broken(exc) from exc

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        """What arrived; b"" once the peer closed, with or without a TLS goodbye (as
        HTTPS clients do). OpenSSL reports a reset while reading as such an end too."""
        while True:
            try:
                data = self._tls.recv(max_bytes or RECEIVE_BYTES)
            except ssl.SSLWantReadError:
                await trio.lowlevel.wait_readable(self._fd)
                continue
            except ssl.SSLWantWriteError:
                await trio.lowlevel.wait_writable(self._fd)
                continue
            except OSError as exc:
                raise self._broken(exc) from exc
            await trio.lowlevel.checkpoint_if_cancelled()
            return data

    async def receive_reply(self, max_bytes: int | None = None) -> bytes:
        """``receive_some`` for the answer to what was just sent: unless OpenSSL holds
        bytes already read, it waits first and saves a read that would find nothing."""
        if self._tls.fileno() == -1:
            raise trio.ClosedResourceError("the stream was closed")
        if not self._tls.pending():
            await trio.lowlevel.wait_readable(self._fd)
        return await self.receive_some(max_bytes)

    async def wait_send_all_might_not_block(self) -> None:
        await trio.lowlevel.wait_writable(self._fd)

    async def aclose(self) -> None:
        """Close without a TLS goodbye: it could block, and no HTTP/1.1 peer needs it."""
        _close(self._tls)
        await trio.lowlevel.checkpoint()

    def _broken(self, exc: OSError) -> Exception:
        if self._tls.fileno() == -1:
            return trio.ClosedResourceError("the stream was closed")
        return trio.BrokenResourceError(exc)


async def tls_client(
    stream: trio.abc.Stream, context: ssl.SSLContext, server_hostname: str
) -> trio.abc.Stream:
    """The TLS client side of a connected stream, handshake done: a ``TLSBytes`` over a
    trio socket stream (whose socket it takes over), a ``trio.SSLStream`` over any other.
    Handshake failures raise ``ssl.SSLError`` or ``OSError`` (trio's stream raises
    ``trio.BrokenResourceError``), and the stream is closed."""
    if not isinstance(stream, trio.SocketStream | SocketBytes):
        wrapped = trio.SSLStream(stream, context, server_hostname=server_hostname,
                                 https_compatible=True)  # fmt: skip
        try:
            await wrapped.do_handshake()
        except BaseException:
            await trio.aclose_forcefully(wrapped)
            raise
        return wrapped
    own = stream.socket
    raw = socket.socket(own.family, own.type, own.proto, fileno=own.detach())
    try:
        raw.setblocking(False)
        tls = context.wrap_socket(raw, server_hostname=server_hostname,
                                  do_handshake_on_connect=False)  # fmt: skip
    except BaseException:
        trio.lowlevel.notify_closing(raw)
        raw.close()
        raise
    try:
        fd = tls.fileno()
        while True:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                await trio.lowlevel.wait_readable(fd)
            except ssl.SSLWantWriteError:
                await trio.lowlevel.wait_writable(fd)
    except BaseException:
        _close(tls)
        raise
    return TLSBytes(tls)


def _close(tls: ssl.SSLSocket) -> None:
    """Wake any task waiting on the socket (with ``ClosedResourceError``), then close it."""
    if tls.fileno() != -1:
        trio.lowlevel.notify_closing(tls.fileno())
        tls.close()
