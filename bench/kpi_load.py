"""The load of bench/kpi.py: the receivers' process, the daemons, the paced publisher, the drain.

What a run starts and how it watches it; the figures are worked out in kpi_figures.py.
Each deployment of daemons has a name of its own (``sustain``, ``headroom-1``, ...)
used for its stream, its keys, its endpoints' paths and the receivers' logs of it.
"""

from __future__ import annotations

import contextlib
import socket
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import redis

from daemons import GROUP, configure_daemon, run_daemons, wait_until_reading
from kpi_figures import due_by, next_batch
from nginx import Receipts
from processes import spawn
from webhookd.embedded import free_port
from webhookd.keyspace import PartitionKeys
from workload import publish

TICK_S = 0.01  # the publisher's pace: a small batch every 10 ms
ENDPOINT_CONCURRENCY = 16  # the contract's default
RETRY_CONF = """
[retry]
schedule = [1, 2, 4, 8, 16]
"""
SETTLE_S = 0.3  # the receiver flushes its logs every 0.1 s: wait this long for the last lines


@dataclass(frozen=True, slots=True)
class ReceiverProcess:
    """bench/kpi_receiver.py, serving every endpoint over plain HTTP."""

    port: int
    pid: int
    logdir: Path
    ca_pem: str = ""  # plain HTTP: no CA

    def port_of(self, scheme: str) -> int:
        return self.port


@dataclass(frozen=True, slots=True)
class Rig:
    """What every deployment runs against: started once, stopped at the end."""

    workdir: Path
    redis_url: str
    redis_pid: int
    client: redis.Redis
    receivers: ReceiverProcess


@dataclass(frozen=True, slots=True)
class Deployment:
    """Daemons on a stream of their own, and what the receivers logged for it."""

    name: str
    pids: list[int]
    ok: Receipts  # first 200 of each event, and the 200s beyond it as duplicates
    failed: Receipts  # the 500s

    @property
    def stream(self) -> str:
        return f"{self.name}:events"


@dataclass(frozen=True, slots=True)
class Published:
    ids: list[str]
    start_ms: float  # epoch ms when publishing began and ended
    end_ms: float


def start_receivers(
    stack: contextlib.ExitStack, workdir: Path, fail_share: float, slow: int, seed: int
) -> ReceiverProcess:
    """The receivers' process on a free port; the first ``slow`` endpoints answer slowly."""
    logdir = workdir / "receipts"
    logdir.mkdir()
    port = free_port()
    script = Path(__file__).with_name("kpi_receiver.py")
    slow_names = ",".join(f"v{index}" for index in range(slow))
    args = [sys.executable, str(script), str(port), str(logdir), "--fail", str(fail_share),
            "--slow", slow_names, "--seed", str(seed)]  # fmt: skip
    process = spawn(stack, args, workdir / "receiver.log")
    deadline = time.monotonic() + 10
    while True:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return ReceiverProcess(port, process.pid, logdir)
        if process.poll() is not None or time.monotonic() > deadline:
            logged = (workdir / "receiver.log").read_text()
            raise SystemExit(f"the receiver did not start: {logged}")
        time.sleep(0.05)


def deploy(
    stack: contextlib.ExitStack, rig: Rig, name: str, count: int, vendors: int
) -> Deployment:
    """Register one endpoint per vendor, make the group, start ``count`` daemons, wait
    until each reads; the stack stops them."""
    config = configure_daemon(rig.workdir, name, rig.redis_url, rig.receivers, "http", vendors,
                              ENDPOINT_CONCURRENCY, RETRY_CONF)  # fmt: skip
    rig.client.xgroup_create(f"{name}:events", GROUP, id="$", mkstream=True)
    daemons = run_daemons(stack, config, count, rig.workdir)
    wait_until_reading(rig.client, daemons, rig.workdir)
    logs = rig.receivers.logdir
    return Deployment(name, [d.pid for d in daemons], Receipts(logs / f"{name}.ok.log"),
                      Receipts(logs / f"{name}.failed.log"))  # fmt: skip


def publish_paced(
    client: redis.Redis,
    stream: str,
    rate_per_s: float,
    seconds: float,
    first_seq: int,
    vendors: int,
    each_second: Callable[[], None] = lambda: None,
) -> Published:
    """Publish ``rate_per_s`` events a second for ``seconds``, a small batch every tick;
    ``each_second`` runs once a second in between (memory samples)."""
    ids: list[str] = []
    started, start_ms = time.monotonic(), time.time() * 1000
    next_second = started + 1
    while (elapsed := time.monotonic() - started) < seconds:
        count = next_batch(rate_per_s, elapsed, len(ids))
        if count:
            seqs = range(first_seq + len(ids), first_seq + len(ids) + count)
            ids += publish(client, stream, seqs, vendors)
        now = time.monotonic()
        if now >= next_second:
            each_second()
            next_second += 1
        if not next_batch(rate_per_s, now - started, len(ids)):  # behind: no sleep
            time.sleep(max(0.0, TICK_S - (time.monotonic() - started - elapsed)))
    owed = range(first_seq + len(ids), first_seq + due_by(rate_per_s, seconds))  # the last tick
    ids += publish(client, stream, owed, vendors)
    return Published(ids, start_ms, time.time() * 1000)


def settled(client: redis.Redis, stream: str) -> bool:
    """Nothing unread, pending or scheduled for retry: no more answers will come."""
    groups = cast(list[dict[str, Any]], client.xinfo_groups(stream))
    lag = next(group["lag"] for group in groups if group["name"] == GROUP)
    pending = cast(dict[str, int], client.xpending(stream, GROUP))["pending"]
    retries = cast(int, client.zcard(PartitionKeys(stream).retry))
    unread = 1 if lag is None else lag  # None: Redis cannot tell
    return not (unread or pending or retries)


def drain(client: redis.Redis, deployment: Deployment, ids: Sequence[str], limit_s: float) -> float:
    """Until every id got its 200, or nothing more will come, or ``limit_s`` passed;
    returns the seconds it took."""
    started = time.monotonic()
    missing = set(ids).difference(deployment.ok.at_ms)
    while missing and time.monotonic() - started < limit_s:
        time.sleep(0.2)
        missing.difference_update(deployment.ok.poll())
        if missing and settled(client, deployment.stream):
            time.sleep(SETTLE_S)
            missing.difference_update(deployment.ok.poll())
            break
    deployment.failed.poll()
    return time.monotonic() - started
