"""The ``redis+cluster://`` URL form, taken apart the same way for both Redis clients
(coredis in the daemon, redis-py in the publisher). Pure."""

from __future__ import annotations

from urllib.parse import urlsplit

CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}


def split_cluster_url(url: str) -> tuple[str, list[tuple[str, int]]] | None:
    """``redis+cluster://[user:pass@]host:port,host:port/…`` as a plain URL of the first
    node and every node's (host, port); None for any other URL."""
    scheme, _, rest = url.partition("://")
    if scheme not in CLUSTER_SCHEMES:
        return None
    authority, slash, path = rest.partition("/")
    credentials, _, hosts = authority.rpartition("@")
    nodes = []
    for host in hosts.split(","):
        parts = urlsplit(f"redis://{host}")
        nodes.append((parts.hostname or "localhost", parts.port or 6379))
    login = f"{credentials}@" if credentials else ""
    first = hosts.split(",")[0]
    return f"{CLUSTER_SCHEMES[scheme]}://{login}{first}{slash}{path}", nodes
