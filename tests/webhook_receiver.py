"""A real HTTP receiver for tests: records every request and answers from a script.

It speaks HTTP/1.1 through h11 on a loopback trio listener, like a vendor's server
would, and can be told to fail, stall, answer with any status and headers, or drop
the connection without answering.
"""

from __future__ import annotations

import ssl
from collections import defaultdict, deque
from dataclasses import dataclass, field

import h11
import trio


@dataclass(frozen=True)
class Reply:
    status: int = 200
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b"ok"
    stall_s: float = 0.0  # wait this long (trio clock) before answering
    drop: bool = False  # close the connection without answering


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float  # trio.current_time() when the request was complete


@dataclass
class Receiver:
    default: Reply = field(default_factory=Reply)
    requests: list[Received] = field(default_factory=list)
    scripts: defaultdict[str, deque[Reply]] = field(default_factory=lambda: defaultdict(deque))
    port: int = 0
    tls: ssl.SSLContext | None = None  # serve HTTPS with this server context
    _arrived: trio.Event = field(default_factory=trio.Event)

    def url(self, path: str = "/hook") -> str:
        scheme = "http" if self.tls is None else "https"
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    def script(self, path: str, *replies: Reply) -> None:
        """Answer the next requests to ``path`` with these replies, then with the default."""
        self.scripts[path].extend(replies)

    def to(self, path: str) -> list[Received]:
        return [r for r in self.requests if r.path == path]

    async def wait_for(self, count: int, path: str | None = None) -> list[Received]:
        """Block until ``count`` requests (to ``path``, if given) have arrived."""
        while True:
            seen = self.requests if path is None else self.to(path)
            if len(seen) >= count:
                return seen
            await self._arrived.wait()

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        tcp = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = tcp[0].socket.getsockname()[1]
        listeners: list[trio.abc.Listener[trio.abc.Stream]] = list(tcp)
        if self.tls is not None:
            listeners = [trio.SSLListener(lst, self.tls, https_compatible=True) for lst in tcp]
        task_status.started()
        await trio.serve_listeners(self._handle, listeners)

    async def _handle(self, stream: trio.abc.Stream) -> None:
        conn = h11.Connection(h11.SERVER)
        try:
            while True:
                request, body = await self._read_request(stream, conn)
                if request is None:
                    return
                path = request.target.decode()
                self.requests.append(
                    Received(
                        method=request.method.decode(),
                        path=path,
                        headers={k.decode().lower(): v.decode() for k, v in request.headers},
                        body=body,
                        at=trio.current_time(),
                    )
                )
                self._arrived.set()
                self._arrived = trio.Event()
                queued = self.scripts[path]
                reply = queued.popleft() if queued else self.default
                if reply.stall_s:
                    await trio.sleep(reply.stall_s)
                if reply.drop:
                    return
                headers = [("content-length", str(len(reply.body))), *reply.headers]
                data = conn.send(h11.Response(status_code=reply.status, headers=headers))
                data += conn.send(h11.Data(data=reply.body)) + conn.send(h11.EndOfMessage())
                await stream.send_all(data)
                if conn.our_state is h11.MUST_CLOSE:
                    return
                conn.start_next_cycle()
        except (trio.BrokenResourceError, trio.ClosedResourceError, h11.ProtocolError):
            return  # includes a failed TLS handshake: the client is told by its own side
        finally:
            await stream.aclose()

    @staticmethod
    async def _read_request(
        stream: trio.abc.Stream, conn: h11.Connection
    ) -> tuple[h11.Request | None, bytes]:
        request: h11.Request | None = None
        body = bytearray()
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await stream.receive_some(65536))
            elif isinstance(event, h11.Request):
                request = event
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                return request, bytes(body)
            else:
                return None, b""
