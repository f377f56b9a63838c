"""A small HTTP/1.1 server on trio: llhttp parses, every connection is bounded.

webhookd's admin API and the ratelimiter service both answer through it; each passes
its own ``server_name``, the value of the ``server`` field of every answer. The API::

    Limits(max_header_bytes=16 * 1024, max_body_bytes=1024 * 1024,
           request_timeout_s=10.0, keepalive_timeout_s=75.0)
    Request(method, target, headers, body, path="", query={})
        .json() -> Any                   # the body as strict JSON; ValueError when it is not
    Response(status, body=b"", headers=(), content_type="application/json")
        Response.json(status, value, headers=()) -> Response
        Response.error(status, error, message, headers=()) -> Response  # {"error", "message"}
    Handler = Callable[[Request], Awaitable[Response]]

    await serve(handler, host, port, *, server_name, limits=Limits(), task_status=...)
    await serve_listeners(handler, listeners, *, server_name, limits=Limits(), task_status=...)
    await serve_connection(handler, limits, stream, *, server_name, watchdog=None)

``serve`` binds ``host:port`` and serves until cancelled; ``task_status.started`` gets
the bound port (useful with port 0). ``serve_listeners`` does the same on listeners the
caller opened (to report a bind failure its own way); ``serve_connection`` answers one
connection on any trio stream (tests drive it over in-memory streams), its time limits
enforced by the given ``Watchdog(limits)`` (whose ``run`` task watches every connection
of a server) or by one of its own. A server name is visible ASCII words
(``ratelimiter``, ``webhookd/0.1``); anything else is a ``ValueError`` before a port is
bound.

A request reaches the handler whole: ``headers`` has lower-cased names, repeated
fields joined with ``", "``; ``path`` and ``query`` are the target split (``query``
keeps the last of repeated parameters); the body is de-chunked. The handler's answer
is written with ``content-type`` and ``content-length``; 1xx, 204 and 304 get no body,
nor does a HEAD request (it still gets the length). A handler's exception, or a
header it should not have made (a name that is not a token, CR, LF or NUL in a value),
becomes a 500 and the connection goes on.

Connections: requests are answered in turn (pipelining works), and a connection is kept
between them for HTTP/1.1 unless either side says ``connection: close``. Connections
answering at the same time (their handlers woken together) write their answers one
after another in one pass of the scheduler, after all of them have rendered theirs:
a client that sleeps is woken once for all of them, and each wake-up costs the writer
as much system time as parsing a request. A connection answering alone writes at once.
``Expect: 100-continue`` gets its ``100 Continue`` once the requests before it are
answered, if the body has not arrived by then. Upgrade requests (``h2c``, websockets, ``CONNECT``)
are answered as plain requests; one that announces a body gets 400. Every dimension is
bounded by ``Limits``: header bytes (431), body bytes (413, from ``Content-Length``
alone when it says too much), the time to receive a request once its first byte came
(408: a slowloris trickle is cut off), the idle time between requests, and the time to
write an answer to a client that does not read. A request llhttp finds malformed or
ambiguous (a smuggling attempt: ``Content-Length`` with ``Transfer-Encoding``, duplicate
lengths, obs-fold, bad bytes) gets 400, an HTTP version other than 1.0 and 1.1 gets 505;
after a refusal, or an answer that closes, the server half-closes the connection and
drains for at most a second what the client still sends, so that the client reads the
answer instead of a reset. Nothing a client sends can crash the server: a failure closes
that one connection (logged as ``http.connection_failed``).
"""

from httpserve._messages import Handler, Limits, Request, Response
from httpserve._server import Watchdog, serve, serve_connection, serve_listeners

__all__ = [
    "Handler",
    "Limits",
    "Request",
    "Response",
    "Watchdog",
    "serve",
    "serve_connection",
    "serve_listeners",
]
