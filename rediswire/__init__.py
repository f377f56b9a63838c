"""A thin Redis client on trio for the hot paths: requests rendered here, replies parsed
by hiredis, the I/O done by the calling task. Everything else keeps using coredis::

    Arg = bytes | str | int | float
    Reply = int | bytes | list[Reply | ReplyError] | None   # hiredis's: bytes, never str

    encode(commands) -> bytes            # RESP arrays of bulk strings, one request
    key_slot(key: bytes) -> int          # the Redis Cluster slot, hash tags honoured
    split_cluster_url(url) -> (first node's plain URL, [(host, port), ...]) | None

    Script(source)                       # .source, .sha (SHA-1 hex)
    Wire.from_url(url, *, max_idle=8, ssl_context=None)
        await .call(*args, route=None) -> Reply                  # raises ReplyError
        await .pipeline(commands, *, route=None) -> [Reply | ReplyError]
        await .evalsha(script, keys, args) -> Reply              # loads it on NOSCRIPT
        await .evalsha_each(script, [(keys, args), ...]) -> [Reply]   # one round trip
        await .aclose()                                          # or ``async with``

URLs: ``redis://[user:pass@]host:port[/db]``, ``rediss://`` (TLS), ``unix:///path[?db=N]``,
``redis+cluster://[user:pass@]host:port,host:port`` and ``rediss+cluster://``. On a
cluster, ``route`` is a key whose slot picks the master (``evalsha`` routes by its
first key); without it any node answers.

Errors::

    ReplyError       Redis answered an error (str: its message, "NOGROUP …"); raised by
                     call, evalsha and evalsha_each, returned in place by pipeline
    WireUnavailable  no connection, or it broke or closed mid-reply; names the node

A caller cancelled mid-exchange loses nothing but that exchange's connection, which is
closed rather than reused.
"""

from rediswire._client import Script, Wire, WireUnavailable
from rediswire._resp import Arg, Reply, ReplyError, encode, key_slot
from rediswire._urls import split_cluster_url

__all__ = [
    "Arg",
    "Reply",
    "ReplyError",
    "Script",
    "Wire",
    "WireUnavailable",
    "encode",
    "key_slot",
    "split_cluster_url",
]
