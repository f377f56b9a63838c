"""Bare HTTP clients on trio: what the HTTP layer alone can do, with no Redis behind it.

Both POST the same ~1.1 KB body over keep-alive connections (plain or TLS), one
request at a time per connection, for a fixed time:

- ``h11``: each request built anew as an ``h11.Request`` with only the headers HTTP
  needs and the event id nginx logs, the response read through h11;
- ``httptools``: what a webhook sender in Python can do at best. The request line and
  the constant headers (Host, Content-Type, User-Agent, X-Event-Type) are rendered
  once; each request appends its own (Content-Length, X-Event-ID, both signatures with
  their timestamps and webhook-id), 11 headers in all as the daemon sends, signed with
  the same HMAC functions. Responses go through ``httptools.HttpResponseParser``.
"""

from __future__ import annotations

import functools
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import h11
import httptools
import trio

from nginx import Sink
from processes import cpu_per_item, cpu_s
from webhookd.sender import USER_AGENT
from webhookd.signing import standard_signature, x_signature
from workload import EVENT_TYPE, sample_body

CLIENTS = ("h11", "httptools")
RECEIVE_BYTES = 65536
PER_REQUEST_HEADERS = (
    "Content-Length: %d\r\nX-Event-ID: %s\r\nX-Timestamp: %d\r\nX-Signature: %s\r\n"
    "webhook-id: %s\r\nwebhook-timestamp: %d\r\nwebhook-signature: %s\r\n\r\n"
)
SIGNING_KEY = bytes(range(32))

# (stream, connection index, stop at trio time) -> requests completed
Poster = Callable[[trio.abc.Stream, int, float], Awaitable[int]]


@dataclass(frozen=True, slots=True)
class ClientRun:
    client: str  # "h11" or "httptools"
    scheme: str  # "http" or "https"
    requests: int
    rate: float  # requests/s
    cpu_us: dict[str, float]  # CPU time per request, by process


async def h11_posts(
    stream: trio.abc.Stream, index: int, stop_at: float, *, authority: str, body: bytes
) -> int:
    headers = [
        ("Host", authority),
        ("Content-Length", str(len(body))),
        ("Content-Type", "application/json"),
        ("X-Event-ID", "ceiling"),
    ]
    connection = h11.Connection(h11.CLIENT)
    completed = 0
    while trio.current_time() < stop_at:
        request = h11.Request(method="POST", target="/h11/", headers=headers)
        await stream.send_all(
            connection.send(request)
            + connection.send(h11.Data(data=body))
            + connection.send(h11.EndOfMessage())
        )
        while True:
            event = connection.next_event()
            if event is h11.NEED_DATA:
                connection.receive_data(bytes(await stream.receive_some(RECEIVE_BYTES)))
            elif type(event) is h11.Response and event.status_code != 200:
                raise SystemExit(f"nginx answered {event.status_code} to the h11 client")
            elif type(event) is h11.EndOfMessage:
                break
        connection.start_next_cycle()
        completed += 1
    return completed


class _ResponseEnd:
    """httptools callbacks: only the end of each response matters here."""

    def __init__(self) -> None:
        self.complete = False

    def on_message_complete(self) -> None:
        self.complete = True


def head_prefix(authority: str, target: str) -> bytes:
    """The request line and the headers every request shares, rendered once."""
    return (
        f"POST {target} HTTP/1.1\r\nHost: {authority}\r\nContent-Type: application/json\r\n"
        f"User-Agent: {USER_AGENT}\r\nX-Event-Type: {EVENT_TYPE}\r\n"
    ).encode("latin-1")


def signed_request(prefix: bytes, body: bytes, event_id: str, timestamp: int) -> bytes:
    """One request: the shared head, this request's own headers, the body."""
    own = PER_REQUEST_HEADERS % (
        len(body),
        event_id,
        timestamp,
        x_signature(SIGNING_KEY, timestamp, body),
        event_id,
        timestamp,
        standard_signature(SIGNING_KEY, event_id, timestamp, body),
    )
    return prefix + own.encode("latin-1") + body


async def httptools_posts(
    stream: trio.abc.Stream, index: int, stop_at: float, *, authority: str, body: bytes
) -> int:
    prefix = head_prefix(authority, "/httptools/")
    end = _ResponseEnd()
    parser = httptools.HttpResponseParser(end)
    completed = 0
    while trio.current_time() < stop_at:
        event_id = f"evt_{index}-{completed}"
        await stream.send_all(signed_request(prefix, body, event_id, int(time.time())))
        end.complete = False
        while not end.complete:
            data = await stream.receive_some(RECEIVE_BYTES)
            if not data:
                raise SystemExit("nginx closed a connection of the httptools client")
            parser.feed_data(data)
        if parser.get_status_code() != 200:
            raise SystemExit(f"nginx answered {parser.get_status_code()} to the httptools client")
        completed += 1
    return completed


async def connect(port: int, tls: ssl.SSLContext | None) -> trio.abc.Stream:
    """A connection ready to send on: for HTTPS, the handshake done."""
    tcp = await trio.open_tcp_stream("127.0.0.1", port)
    if tls is None:
        return tcp
    stream = trio.SSLStream(tcp, tls, server_hostname="127.0.0.1", https_compatible=True)
    await stream.do_handshake()
    return stream


def measure_client(
    client: str, sink: Sink, scheme: str, concurrency: int, seconds: float
) -> ClientRun:
    """Requests/s of one bare client over ``concurrency`` connections opened beforehand."""
    port = sink.port_of(scheme)
    tls = sink.client_context() if scheme == "https" else None
    posts = {"h11": h11_posts, "httptools": httptools_posts}[client]
    poster: Poster = functools.partial(
        posts, authority=f"127.0.0.1:{port}", body=sample_body(time.time())
    )
    completed = 0

    def cpu() -> dict[str, float]:
        return {"client": time.process_time(), "nginx": cpu_s(sink.workers)}

    async def post_until(stream: trio.abc.Stream, index: int, stop_at: float) -> None:
        nonlocal completed
        async with stream:
            done = await poster(stream, index, stop_at)
        completed += done  # not `completed += await ...`: that reads `completed` first

    async def run() -> ClientRun:
        streams = [await connect(port, tls) for _ in range(concurrency)]
        before = cpu()
        started = trio.current_time()
        async with trio.open_nursery() as nursery:
            for index, stream in enumerate(streams):
                nursery.start_soon(post_until, stream, index, started + seconds)
        rate = completed / (trio.current_time() - started)
        return ClientRun(client, scheme, completed, rate, cpu_per_item(before, cpu(), completed))

    return trio.run(run)
