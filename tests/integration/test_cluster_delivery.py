"""Delivery on Redis Cluster, end to end through the public surface only.

A ``webhookd run`` process on a ``redis+cluster://`` URL with one and with three stream
partitions; endpoints added and events published with the CLI and with
``webhookd.Publisher.from_url``; outcomes seen by a real receiver, in the streams and
through ``webhookd dead list`` / ``dead redrive``.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
import trio
from conftest import daemon_config, publish, until
from webhook_receiver import Receiver, Reply

import webhookd
from processes import running_daemons, webhookd_cli, webhookd_cli_json, write_config
from webhookd.verify import verify

ORDER = {"order_id": "ord_1001", "total": "39.80"}
DELIVERY_S = 15.0  # bound for anything the daemon should do within moments


@dataclass(frozen=True)
class ClusterSetup:
    config: Path
    url: str
    stream: str
    dead: str
    partitions: int
    redis: redis.RedisCluster  # for reading streams the way any Redis tool would

    @property
    def streams(self) -> list[str]:
        if self.partitions == 1:
            return [self.stream]
        return [f"{self.stream}:{k}" for k in range(self.partitions)]

    def entry_of(self, event_id: str) -> tuple[str, dict[str, str]] | None:
        """The stream and fields of the entry a default event id names, per the contract."""
        if self.partitions == 1:
            match = re.fullmatch(r"evt_(\d+-\d+)", event_id)
            stream = self.stream
        else:
            match = re.fullmatch(r"evt_p(\d+)_(\d+-\d+)", event_id)
            stream = f"{self.stream}:{match.group(1)}" if match else ""
        if match is None:
            return None
        entry_id = match.groups()[-1]
        found = self.redis.xrange(stream, entry_id, entry_id)
        return (stream, found[0][1]) if found else None

    def pending(self) -> int:
        return sum(int(self.redis.xpending(s, "webhookd")["pending"]) for s in self.streams)


@pytest.fixture(params=[1, 3], ids=lambda p: f"partitions={p}")
def cluster(
    request: pytest.FixtureRequest, tmp_path: Path, redis_cluster_url: str, key_prefix: str
) -> ClusterSetup:
    partitions: int = request.param
    config = daemon_config(
        redis_cluster_url,
        key_prefix,
        stream={"partitions": partitions, "block": 0.1},
        retry={"schedule": [0.2, 0.4], "jitter": 0},
        log={"level": "warning"},
    )
    first_node = redis_cluster_url.removeprefix("redis+cluster://").split(",")[0]
    client = redis.RedisCluster.from_url(f"redis://{first_node}", decode_responses=True)
    request.addfinalizer(client.close)
    stream = config["stream"]
    return ClusterSetup(
        write_config(tmp_path / "webhookd.toml", config), redis_cluster_url, stream["name"],
        stream["dead"], partitions, client,
    )  # fmt: skip


@pytest.fixture
async def daemon(cluster: ClusterSetup, tmp_path: Path) -> AsyncIterator[None]:
    """One ``webhookd run`` on the cluster, up (``/healthz`` answers) before the test."""
    async with running_daemons(cluster.config, tmp_path, 1):
        yield


async def add_endpoint(cluster: ClusterSetup, vendor: str, url: str) -> dict[str, Any]:
    added: dict[str, Any] = await webhookd_cli_json(
        cluster.config, "endpoint", "add", "--vendor", vendor, "--url", url
    )
    assert added["id"] and added["secret"].startswith("whsec_")
    return added


async def dead_letters(cluster: ClusterSetup) -> list[dict[str, Any]]:
    letters: list[dict[str, Any]] = await webhookd_cli_json(cluster.config, "dead", "list")
    return letters


def check_event_id(cluster: ClusterSetup, event_id: str, vendor: str) -> str:
    """The stream of the entry behind a default event id, checked against that entry."""
    found = cluster.entry_of(event_id)
    assert found is not None, f"{event_id} names no entry of {cluster.streams}"
    stream, fields = found
    assert fields["vendor"] == vendor
    return stream


async def wait_for(check: Callable[[], object]) -> None:
    """Wait for a check that reads the cluster with redis-py, off the trio thread."""
    with trio.fail_after(DELIVERY_S):
        await until(lambda: trio.to_thread.run_sync(check), interval_s=0.05)


async def test_cli_publish_is_delivered_signed(
    cluster: ClusterSetup, daemon: None, receiver: Receiver
) -> None:
    endpoint = await add_endpoint(cluster, "v_1", receiver.url())
    published = await webhookd_cli(
        cluster.config, "publish", "order.created", "--vendor", "v_1", "--data", json.dumps(ORDER)
    )
    event_id = published.strip()
    await trio.to_thread.run_sync(check_event_id, cluster, event_id, "v_1")
    with trio.fail_after(DELIVERY_S):
        [request] = await receiver.wait_for(1)
    payload = verify(request.body, request.headers, endpoint["secret"])
    assert payload["event_id"] == event_id == request.headers["x-event-id"]
    assert payload["event"] == "order.created" and payload["data"] == ORDER
    await wait_for(lambda: cluster.pending() == 0)


async def test_publisher_from_url_reaches_every_vendor(
    cluster: ClusterSetup, daemon: None, receiver: Receiver
) -> None:
    vendors = ["v_0", "v_1", "v_2"]
    async with trio.open_nursery() as nursery:
        for vendor in vendors:
            nursery.start_soon(add_endpoint, cluster, vendor, receiver.url(f"/{vendor}"))
    publisher = webhookd.Publisher.from_url(
        cluster.url, stream=cluster.stream, partitions=cluster.partitions
    )
    try:
        ids = {
            (vendor, n): await publish(publisher, "order.created", vendor=vendor, data={"n": n})
            for vendor in vendors
            for n in range(2)
        }
    finally:
        publisher.close()
    streams = {
        key: await trio.to_thread.run_sync(check_event_id, cluster, event_id, key[0])
        for key, event_id in ids.items()
    }
    for vendor in vendors:  # one vendor's events share a partition, so they keep their order
        assert streams[vendor, 0] == streams[vendor, 1]
    with trio.fail_after(DELIVERY_S):
        received = await receiver.wait_for(len(ids))
    assert {(r.path[1:], r.headers["x-event-id"]) for r in received} == {
        (vendor, event_id) for (vendor, _), event_id in ids.items()
    }
    assert len(set(ids.values())) == len(ids)
    await wait_for(lambda: cluster.pending() == 0)


async def test_a_failed_attempt_is_retried_until_it_succeeds(
    cluster: ClusterSetup, daemon: None, receiver: Receiver
) -> None:
    receiver.script("/hook", Reply(status=500))
    await add_endpoint(cluster, "v_1", receiver.url())
    published = await webhookd_cli(
        cluster.config, "publish", "order.paid", "--vendor", "v_1", "--data", json.dumps(ORDER)
    )
    with trio.fail_after(DELIVERY_S):
        first, second = await receiver.wait_for(2)
    assert first.headers["x-event-id"] == second.headers["x-event-id"] == published.strip()
    assert second.at - first.at >= 0.2  # the first retry's delay
    await wait_for(lambda: cluster.pending() == 0)
    assert await dead_letters(cluster) == []


async def test_a_failing_delivery_is_dead_lettered_then_redriven(
    cluster: ClusterSetup, daemon: None, receiver: Receiver
) -> None:
    receiver.script("/hook", *[Reply(status=500)] * 3)  # the first attempt and both retries
    endpoint = await add_endpoint(cluster, "v_1", receiver.url())
    published = await webhookd_cli(
        cluster.config, "publish", "order.created", "--vendor", "v_1", "--data", json.dumps(ORDER)
    )
    event_id = published.strip()
    with trio.fail_after(DELIVERY_S):
        await receiver.wait_for(3)
    await wait_for(lambda: cluster.redis.xlen(cluster.dead) == 1)
    [letter] = await dead_letters(cluster)
    assert (letter["event_id"], letter["endpoint_id"]) == (event_id, endpoint["id"])
    assert (str(letter["attempts"]), str(letter["last_status"])) == ("3", "500")
    await wait_for(lambda: cluster.pending() == 0)
    await webhookd_cli(cluster.config, "dead", "redrive")
    with trio.fail_after(DELIVERY_S):
        *_, again = await receiver.wait_for(4)
    assert again.headers["x-event-id"] == event_id
    assert json.loads(again.body)["data"] == ORDER
