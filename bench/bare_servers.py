"""The ceilings of bench/service.py: the least an HTTP server on trio does per request.

Each reads requests off keep-alive connections and answers every one with the same
fixed 200, parsing with h11 (the parser the service used before httpserve) or with
httptools (llhttp, the parser httpserve uses). Nothing else: no routing, no header
dictionary, no timeouts. Run as ``python bench/bare_servers.py h11|httptools PORT``.
"""

from __future__ import annotations

import contextlib
import sys
from functools import partial

import h11
import httptools
import trio

BODY = b'{"allowed":true}'
HEADERS = [("content-type", "application/json"), ("content-length", str(len(BODY)))]
ANSWER = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (
    len(BODY),
    BODY,
)


async def h11_connection(stream: trio.SocketStream) -> None:
    conn = h11.Connection(h11.SERVER)
    with contextlib.suppress(trio.BrokenResourceError, h11.ProtocolError):
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await stream.receive_some(65536)
                if not data:
                    return
                conn.receive_data(data)
            elif isinstance(event, h11.EndOfMessage):
                response = conn.send(h11.Response(status_code=200, headers=HEADERS))
                body = conn.send(h11.Data(data=BODY))
                end = conn.send(h11.EndOfMessage())
                await stream.send_all((response or b"") + (body or b"") + (end or b""))
                if conn.our_state is not h11.DONE:
                    return
                conn.start_next_cycle()
            elif isinstance(event, h11.ConnectionClosed):
                return


class _Completed:
    """httptools' callbacks: counts the requests a chunk of bytes completed."""

    def __init__(self) -> None:
        self.count = 0

    def on_message_complete(self) -> None:
        self.count += 1


async def httptools_connection(stream: trio.SocketStream) -> None:
    completed = _Completed()
    parser = httptools.HttpRequestParser(completed)
    with contextlib.suppress(trio.BrokenResourceError, httptools.HttpParserError):
        while True:
            data = await stream.receive_some(65536)
            if not data:
                return
            parser.feed_data(data)
            if completed.count:  # pipelined requests are answered in one write
                await stream.send_all(ANSWER * completed.count)
                completed.count = 0
                if not parser.should_keep_alive():
                    return


SERVERS = {"h11": h11_connection, "httptools": httptools_connection}


def main() -> int:
    kind, port = sys.argv[1], int(sys.argv[2])
    trio.run(partial(trio.serve_tcp, SERVERS[kind], port, host="127.0.0.1"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
