"""Talking to Redis on trio from the caller's own task: a pool of idle connections per
node, and for a Redis Cluster the slot map that picks the node.

An exchange takes an idle connection (or opens one), writes the whole request with one
``send_all``, reads until ``hiredis`` has every reply, and puts the connection back.
There is no reader task, cancel scope or channel per call: that is what makes a round
trip cheap. A blocking command holds its connection while it waits. A connection whose
exchange did not finish (the caller was cancelled, the link broke, the reply was
garbled) is closed, since what it would read next is unknown; a broken link also closes
the node's idle connections, which likely died with it.

Cluster: ``CLUSTER SLOTS`` from any node gives each slot's master. A call goes to the
master of its ``route``'s slot (any node without one). A ``MOVED`` reply refreshes the
map and repeats the exchange once on the node it names; an ``ASK`` reply repeats the
asked commands once on the named node, each after ``ASKING``. A node that cannot be
reached makes the next call refresh the map first.
"""

from __future__ import annotations

import hashlib
import ssl
from collections.abc import Sequence
from types import TracebackType

import hiredis
import trio

from rediswire._resp import (
    SLOTS,
    Arg,
    Reply,
    ReplyError,
    as_bytes,
    encode,
    key_slot,
    pack_command,
)
from rediswire._urls import Location, Target, parse_url
from socketbytes import faster, receive_reply, tls_client

_CLUSTER_SLOTS = encode([("CLUSTER", "SLOTS")])
_ASKING = ("ASKING",)


class WireUnavailable(Exception):
    """Redis could not be reached, or the connection was lost or closed mid-reply; the
    message names the node (``host:port`` or socket path) and the cause."""


class Script:
    """A Lua script as ``EVALSHA`` names it: its source and the source's SHA-1."""

    __slots__ = ("sha", "source")

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()


class _ConnectionClosed(Exception):
    """The server closed the connection before every reply came."""


_LINK_ERRORS = (
    OSError,
    trio.BrokenResourceError,
    trio.ClosedResourceError,
    hiredis.ProtocolError,
    _ConnectionClosed,
)


class _Connection:
    __slots__ = ("reader", "stream")

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.reader = hiredis.Reader(replyError=ReplyError)

    async def exchange(self, payload: bytes, count: int) -> list[Reply | ReplyError]:
        """Send a request of ``count`` commands and read their ``count`` replies."""
        await self.stream.send_all(payload)
        reader = self.reader
        replies: list[Reply | ReplyError] = []
        data = await receive_reply(self.stream)  # waits before it reads
        while True:
            if not data:
                raise _ConnectionClosed("connection closed by the server")
            reader.feed(data)  # type: ignore[arg-type]  # any buffer will do
            reply = reader.gets()
            while reply is not False:
                replies.append(reply)
                if len(replies) == count:
                    return replies
                reply = reader.gets()
            data = await self.stream.receive_some()


class _Node:
    """One Redis server and its idle connections (at most ``max_idle``)."""

    __slots__ = ("_idle", "_login", "_login_count", "_max_idle", "_ssl", "closed", "location")

    def __init__(
        self, location: Location, login: bytes, login_count: int,
        ssl_context: ssl.SSLContext | None, max_idle: int,
    ) -> None:  # fmt: skip
        self.location = location
        self.closed = False
        self._login = login
        self._login_count = login_count
        self._ssl = ssl_context
        self._max_idle = max_idle
        self._idle: list[_Connection] = []

    async def exchange(self, payload: bytes, count: int) -> list[Reply | ReplyError]:
        if self.closed:
            raise WireUnavailable(f"Redis at {self.location.name}: the wire is closed")
        connection = self._idle.pop() if self._idle else await self._open()
        replies = await self._use(connection, payload, count)
        if len(self._idle) < self._max_idle and not self.closed:
            self._idle.append(connection)
        else:
            await trio.aclose_forcefully(connection.stream)
        return replies

    async def aclose(self) -> None:
        """Close the idle connections; those in use are closed when they come back."""
        self.closed = True
        await self._drop_idle()

    async def _use(
        self, connection: _Connection, payload: bytes, count: int
    ) -> list[Reply | ReplyError]:
        try:
            return await connection.exchange(payload, count)
        except BaseException as exc:
            await trio.aclose_forcefully(connection.stream)
            if isinstance(exc, _LINK_ERRORS):
                await self._drop_idle()
                raise self._unavailable(exc) from exc
            raise

    async def _open(self) -> _Connection:
        location = self.location
        stream: trio.abc.Stream
        try:
            if location.unix_path is not None:
                stream = await trio.open_unix_socket(location.unix_path)
            else:
                stream = await trio.open_tcp_stream(location.host, location.port)
            if self._ssl is None:
                stream = faster(stream)
            else:
                stream = await tls_client(stream, self._ssl, location.host)
        except OSError as exc:  # ssl.SSLError included
            raise self._unavailable(exc) from exc
        connection = _Connection(stream)
        if self._login_count:
            for reply in await self._use(connection, self._login, self._login_count):
                if isinstance(reply, ReplyError):
                    await trio.aclose_forcefully(stream)
                    raise self._unavailable(reply) from reply
        return connection

    async def _drop_idle(self) -> None:
        idle, self._idle = self._idle, []
        for connection in idle:
            await trio.aclose_forcefully(connection.stream)

    def _unavailable(self, exc: BaseException) -> WireUnavailable:
        cause = exc.__cause__ if isinstance(exc, trio.BrokenResourceError) else exc
        reason = str(cause) or type(cause).__name__
        return WireUnavailable(f"Redis at {self.location.name} unavailable: {reason}")


class Wire:
    """One Redis (or one Redis Cluster) for the hot paths."""

    def __init__(
        self, target: Target, *, max_idle: int = 8, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        if target.tls and ssl_context is None:
            ssl_context = ssl.create_default_context()
        login = target.login()
        self._node_settings = (encode(login), len(login), ssl_context, max_idle)
        self._nodes: dict[Location, _Node] = {}
        self._startup = [self._node(location) for location in target.locations]
        self._single = None if target.cluster else self._startup[0]
        self._slots: list[_Node] = []
        self._any = self._startup[0]
        self._stale = True
        self._generation = 0
        self._refreshing = trio.Lock()

    @classmethod
    def from_url(
        cls, url: str, *, max_idle: int = 8, ssl_context: ssl.SSLContext | None = None
    ) -> Wire:
        """A wire to the Redis a URL names (see ``rediswire._urls``); ``ssl_context``
        replaces the default one for ``rediss://`` (a private CA, a client certificate)."""
        return cls(parse_url(url), max_idle=max_idle, ssl_context=ssl_context)

    @property
    def cluster(self) -> bool:
        """Whether this is a Redis Cluster: a script's keys must then share one slot."""
        return self._single is None

    async def call(self, *args: Arg, route: Arg | None = None) -> Reply:
        """One command's reply; an error reply is raised as ``ReplyError``."""
        [reply] = await self._exchange((args,), pack_command(args), route)
        if isinstance(reply, ReplyError):
            raise reply
        return reply

    async def pipeline(
        self, commands: Sequence[Sequence[Arg]], *, route: Arg | None = None
    ) -> list[Reply | ReplyError]:
        """Every command's reply in one round trip, error replies in place. On a cluster
        they all go to the master of ``route``'s slot, so they must all live there."""
        if not commands:
            return []
        return await self._exchange(commands, encode(commands), route)

    async def evalsha(self, script: Script, keys: Sequence[Arg], args: Sequence[Arg]) -> Reply:
        """``EVALSHA`` of the script, routed by its first key. A server that does not
        know the script yet gets ``SCRIPT LOAD`` and the call again, in one round trip."""
        route = keys[0] if keys else None
        command = ("EVALSHA", script.sha, len(keys), *keys, *args)
        [reply] = await self._exchange((command,), pack_command(command), route)
        if _is_noscript(reply):
            retry = (("SCRIPT", "LOAD", script.source), command)
            loaded, reply = await self._exchange(retry, encode(retry), route)
            if isinstance(loaded, ReplyError):
                raise loaded
        if isinstance(reply, ReplyError):
            raise reply
        return reply

    async def evalsha_each(
        self, script: Script, calls: Sequence[tuple[Sequence[Arg], Sequence[Arg]]]
    ) -> list[Reply]:
        """The replies of several calls of one script, each ``(keys, args)``. On one
        Redis they go out in one round trip (and those the server did not know the script
        for, after ``SCRIPT LOAD``, in a second); on a cluster each goes to its own slot's
        master in turn. An error reply is raised: on one Redis once every call ran, on a
        cluster before the calls after it."""
        if self.cluster or len(calls) < 2:
            return [await self.evalsha(script, keys, args) for keys, args in calls]
        commands = [("EVALSHA", script.sha, len(keys), *keys, *args) for keys, args in calls]
        replies = await self.pipeline(commands)
        unknown = [i for i, reply in enumerate(replies) if _is_noscript(reply)]
        if unknown:
            retry = [("SCRIPT", "LOAD", script.source), *(commands[i] for i in unknown)]
            loaded, *again = await self.pipeline(retry)
            if isinstance(loaded, ReplyError):
                raise loaded
            for i, reply in zip(unknown, again, strict=True):
                replies[i] = reply
        answers: list[Reply] = []
        for reply in replies:
            if isinstance(reply, ReplyError):
                raise reply
            answers.append(reply)
        return answers

    async def aclose(self) -> None:
        for node in self._nodes.values():
            await node.aclose()

    async def __aenter__(self) -> Wire:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def _exchange(
        self, commands: Sequence[Sequence[Arg]], payload: bytes, route: Arg | None
    ) -> list[Reply | ReplyError]:
        if self._single is not None:
            return await self._single.exchange(payload, len(commands))
        generation = self._generation
        if self._stale:
            await self._refresh(generation)
            generation = self._generation
        node = self._any if route is None else self._slots[key_slot(as_bytes(route))]
        replies = await self._on(node, payload, len(commands))
        if any(isinstance(reply, ReplyError) for reply in replies):
            return await self._redirected(commands, payload, route, node, replies, generation)
        return replies

    async def _redirected(
        self, commands: Sequence[Sequence[Arg]], payload: bytes, route: Arg | None,
        node: _Node, replies: list[Reply | ReplyError], generation: int,
    ) -> list[Reply | ReplyError]:  # fmt: skip
        """The replies once redirections are followed, each at most once: ``MOVED``
        refreshes the map and repeats the whole exchange on the new owner, ``ASK``
        repeats each asked command on the node named, after ``ASKING``."""
        moved = _redirection(replies, "MOVED ")
        if moved is not None:
            node = self._redirected_to(moved, node)
            if route is not None:
                await self._refresh(generation)
                self._slots[int(moved.split(" ")[1])] = node
            replies = await self._on(node, payload, len(commands))
        asked = [index for index, reply in enumerate(replies) if _is_redirection(reply, "ASK ")]
        if asked:
            node = self._redirected_to(str(replies[asked[0]]), node)
            retry = [part for index in asked for part in (_ASKING, commands[index])]
            answers = await self._on(node, encode(retry), len(retry))
            for position, index in enumerate(asked):
                replies[index] = answers[2 * position + 1]
        return replies

    async def _on(self, node: _Node, payload: bytes, count: int) -> list[Reply | ReplyError]:
        """An exchange with one cluster node; losing it makes the slot map stale."""
        try:
            return await node.exchange(payload, count)
        except WireUnavailable:
            self._stale = True
            raise

    async def _refresh(self, seen_generation: int) -> None:
        """Load the slot map from the first node that answers, unless another task has
        loaded it since ``seen_generation``."""
        async with self._refreshing:
            if self._generation != seen_generation:
                return
            failures = []
            for node in dict.fromkeys([*self._startup, *self._nodes.values()]):
                try:
                    [reply] = await node.exchange(_CLUSTER_SLOTS, 1)
                except WireUnavailable as exc:
                    failures.append(str(exc))
                    continue
                if not isinstance(reply, list) or not reply:
                    failures.append(f"Redis at {node.location.name} answered {reply!r}")
                    continue
                self._slots = self._slot_map(reply, node)
                self._any = node
                self._stale = False
                self._generation += 1
                return
            raise WireUnavailable("no cluster node gave its slot map: " + "; ".join(failures))

    def _slot_map(self, ranges: list[Reply | ReplyError], answering: _Node) -> list[_Node]:
        """Each slot's master, from ``CLUSTER SLOTS``; a slot nobody serves goes to the
        node that answered, which then says so (``CLUSTERDOWN``)."""
        slots = [answering] * SLOTS
        for entry in ranges:
            assert isinstance(entry, list)
            start, end, master = entry[0], entry[1], entry[2]
            assert isinstance(start, int) and isinstance(end, int) and isinstance(master, list)
            host, port = master[0], master[1]
            assert isinstance(host, bytes) and isinstance(port, int)
            node = self._node(Location(host.decode() or answering.location.host, port))
            slots[start : end + 1] = [node] * (end + 1 - start)
        return slots

    def _redirected_to(self, message: str, answering: _Node) -> _Node:
        """The node a ``MOVED``/``ASK`` reply names (``MOVED 3999 host:port``)."""
        host, _, port = message.split(" ")[2].rpartition(":")
        return self._node(Location(host or answering.location.host, int(port)))

    def _node(self, location: Location) -> _Node:
        node = self._nodes.get(location)
        if node is None:
            node = self._nodes[location] = _Node(location, *self._node_settings)
        return node


def _is_noscript(reply: Reply | ReplyError) -> bool:
    return isinstance(reply, ReplyError) and str(reply).startswith("NOSCRIPT")


def _is_redirection(reply: Reply | ReplyError, prefix: str) -> bool:
    return isinstance(reply, ReplyError) and str(reply).startswith(prefix)


def _redirection(replies: list[Reply | ReplyError], prefix: str) -> str | None:
    """The message of the first reply that redirects with ``prefix``, if any."""
    for reply in replies:
        if _is_redirection(reply, prefix):
            return str(reply)
    return None
