"""Publishing events: the producer side of the stream contract, for Python services."""

from __future__ import annotations

import json
import zlib
from collections.abc import Mapping
from typing import Any

import redis
from redis.cluster import ClusterNode

from webhookd.errors import InvalidEventError
from webhookd.events import EVENT_ID, EVENT_TYPE, VENDOR_ID, default_event_id
from webhookd.redis_urls import split_cluster_url

DEFAULT_STREAM = "webhookd:events"


def partition_of(vendor: str, partitions: int) -> int:
    """A vendor's events always land in one partition, so they keep their order."""
    return zlib.crc32(vendor.encode()) % partitions


def entry_fields(
    event_type: str, vendor: str, data: Mapping[str, Any], event_id: str | None
) -> dict[str, str]:
    """The stream entry of an event, checked as the daemon will check it."""
    if not EVENT_TYPE.fullmatch(event_type):
        raise InvalidEventError(f"type: {event_type!r} is not a valid event type")
    if not VENDOR_ID.fullmatch(vendor):
        raise InvalidEventError(f"vendor: {vendor!r} is not a valid vendor id")
    if not isinstance(data, Mapping):
        raise InvalidEventError("data must be a JSON object (a mapping)")
    fields = {"type": event_type, "vendor": vendor, "data": json.dumps(data, separators=(",", ":"))}
    if event_id is not None:
        if not EVENT_ID.fullmatch(event_id):
            raise InvalidEventError("id must be 1-256 printable ASCII characters without spaces")
        fields["id"] = event_id
    return fields


class Publisher:
    def __init__(
        self,
        client: redis.Redis | redis.RedisCluster,
        *,
        stream: str = DEFAULT_STREAM,
        partitions: int = 1,
    ):
        if partitions < 1:
            raise ValueError("partitions must be at least 1")
        self._redis = client
        self._stream = stream
        self._partitions = partitions

    @classmethod
    def from_url(cls, url: str, *, stream: str = DEFAULT_STREAM, partitions: int = 1) -> Publisher:
        """On ``redis://``, ``rediss://``, ``unix://`` or ``redis+cluster://host:port,…``."""
        cluster = split_cluster_url(url)
        if cluster is None:
            return cls(redis.Redis.from_url(url), stream=stream, partitions=partitions)
        plain, hosts = cluster
        nodes = [ClusterNode(host, port) for host, port in hosts]  # type: ignore[no-untyped-call]
        client = redis.RedisCluster.from_url(plain, startup_nodes=nodes)
        return cls(client, stream=stream, partitions=partitions)

    def partition_for(self, vendor: str) -> int | None:
        return None if self._partitions == 1 else partition_of(vendor, self._partitions)

    def stream_for(self, vendor: str) -> str:
        partition = self.partition_for(vendor)
        return self._stream if partition is None else f"{self._stream}:{partition}"

    def publish(
        self, type: str, *, vendor: str, data: Mapping[str, Any], id: str | None = None
    ) -> str:
        """XADD one event; returns its event id (the default one when none is given)."""
        fields = entry_fields(type, vendor, data, id)
        entry_id = self._redis.xadd(self.stream_for(vendor), fields)  # type: ignore[arg-type]
        if id is not None:
            return id
        text = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
        return default_event_id(text, self.partition_for(vendor))

    def close(self) -> None:
        self._redis.close()
