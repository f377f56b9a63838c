"""The ``redis+cluster://`` URL form, taken apart the same way for both Redis clients
(coredis in the daemon, redis-py in the publisher). ``rediswire`` owns it."""

from rediswire import split_cluster_url

__all__ = ["split_cluster_url"]
