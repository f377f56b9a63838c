"""The Redis URL forms, taken apart: where the nodes listen and how to log in. Pure.

``redis://[user:pass@]host:port[/db]``, ``rediss://…`` (TLS), ``unix:///path[?db=N]``,
and ``redis+cluster://[user:pass@]host:port,host:port[/…]`` (``rediss+cluster://`` for
TLS): the startup nodes of a Redis Cluster, every one sharing the login.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit

from rediswire._resp import Arg

_CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}
_SCHEMES = ("redis", "rediss", "unix")


def split_cluster_url(url: str) -> tuple[str, list[tuple[str, int]]] | None:
    """``redis+cluster://[user:pass@]host:port,host:port/…`` as a plain URL of the first
    node and every node's (host, port); None for any other URL."""
    scheme, _, rest = url.partition("://")
    if scheme not in _CLUSTER_SCHEMES:
        return None
    authority, slash, path = rest.partition("/")
    credentials, _, hosts = authority.rpartition("@")
    nodes = []
    for host in hosts.split(","):
        parts = urlsplit(f"redis://{host}")
        nodes.append((parts.hostname or "localhost", parts.port or 6379))
    login = f"{credentials}@" if credentials else ""
    first = hosts.split(",")[0]
    return f"{_CLUSTER_SCHEMES[scheme]}://{login}{first}{slash}{path}", nodes


@dataclass(frozen=True, slots=True)
class Location:
    """Where one Redis listens: ``host:port``, or a unix socket when ``unix_path`` is set."""

    host: str
    port: int = 6379
    unix_path: str | None = None

    @property
    def name(self) -> str:
        return self.unix_path if self.unix_path is not None else f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class Target:
    """What a URL asks for: the nodes (the startup nodes of a cluster) and the login."""

    locations: tuple[Location, ...]
    cluster: bool = False
    tls: bool = False
    username: str | None = None
    password: str | None = None
    db: int = 0

    def login(self) -> list[tuple[Arg, ...]]:
        """The commands a new connection sends first: AUTH and SELECT, when asked for."""
        commands: list[tuple[Arg, ...]] = []
        if self.password is not None:
            credentials = (
                (self.password,) if self.username is None else (self.username, self.password)
            )
            commands.append(("AUTH", *credentials))
        if self.db:
            commands.append(("SELECT", self.db))
        return commands


def parse_url(url: str) -> Target:
    """The target of a Redis URL; ``ValueError`` for a scheme or part it cannot be.

    Messages never quote the URL, since it may carry a password.
    """
    cluster = split_cluster_url(url)
    parts = urlsplit(cluster[0] if cluster else url)
    if parts.scheme not in _SCHEMES:
        raise ValueError(
            f"unsupported Redis URL scheme {parts.scheme!r}: use redis://, rediss://, "
            "unix://, redis+cluster:// or rediss+cluster://"
        )
    if parts.scheme == "unix":
        if not parts.path:
            raise ValueError("a unix:// Redis URL needs the socket's path (unix:///path)")
        locations: tuple[Location, ...] = (Location("", 0, unix_path=unquote(parts.path)),)
    elif cluster:
        locations = tuple(Location(host, port) for host, port in cluster[1])
    else:
        locations = (Location(parts.hostname or "localhost", parts.port or 6379),)
    return Target(
        locations=locations,
        cluster=cluster is not None,
        tls=parts.scheme == "rediss",
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
        db=_database(parts.scheme, parts.path, parts.query),
    )


def _database(scheme: str, path: str, query: str) -> int:
    """The database number: ``?db=N``, else the path of a TCP URL (``/N``), else 0."""
    number = parse_qs(query).get("db", [""])[-1]
    if not number and scheme != "unix":
        number = path.strip("/")
    if not number:
        return 0
    if not number.isdigit():
        raise ValueError(f"a Redis URL's database must be a number, not {number!r}")
    return int(number)
