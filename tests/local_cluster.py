"""A real Redis Cluster on loopback for tests: three masters joined by ``redis-cli``.

Each master is a ``redis-server --cluster-enabled yes`` on a free port P whose cluster
bus port, P + 10000, is free too; ``redis-cli --cluster create`` hands out the 16384
slots. Nothing is persisted: the nodes keep their data in memory and their cluster
state in a file under a directory of their own.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import redis

from webhookd.embedded import find_redis_server, free_port

BUS_PORT_OFFSET = 10000
START_TIMEOUT_S = 30.0
MISSING_REDIS_CLI = (
    "redis-cli was not found on PATH (command -v redis-cli): it is needed to build the "
    "test Redis Cluster. Install the Debian package redis-tools (or redis-server)."
)


class ClusterStartError(RuntimeError):
    """The local cluster could not be built; the message says which step failed."""


@dataclass(frozen=True, slots=True)
class LocalCluster:
    ports: tuple[int, ...]

    @property
    def url(self) -> str:
        """The ``redis+cluster://`` URL webhookd takes, every master listed."""
        return "redis+cluster://" + ",".join(f"127.0.0.1:{port}" for port in self.ports)


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def cluster_ports(count: int) -> list[int]:
    """Free ports whose bus ports (+10000) are free too, since the bus port is implied."""
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        bus = port + BUS_PORT_OFFSET
        if bus <= 65535 and port not in ports and _bindable(bus):
            ports.append(port)
    return ports


def _wait(what: str, check: Callable[[], bool], deadline: float) -> None:
    while not check():
        if time.monotonic() > deadline:
            raise ClusterStartError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _answers(port: int) -> bool:
    try:
        with redis.Redis(port=port, socket_timeout=0.5, socket_connect_timeout=0.5) as client:
            return bool(client.ping())
    except redis.RedisError:
        return False


def _wait_answering(
    port: int, process: subprocess.Popen[bytes], log: Path, deadline: float
) -> None:
    def up() -> bool:
        if process.poll() is not None:
            raise ClusterStartError(
                f"redis-server on port {port} exited with status {process.returncode}; see {log}"
            )
        return _answers(port)

    _wait(f"redis-server on port {port}", up, deadline)


def _state_ok(port: int, masters: int) -> bool:
    with redis.Redis(port=port, decode_responses=True, socket_timeout=2) as client:
        info = client.cluster("info")
    return info["cluster_state"] == "ok" and int(info["cluster_known_nodes"]) == masters


@contextlib.contextmanager
def running_cluster(data_dir: Path, masters: int = 3) -> Iterator[LocalCluster]:
    """A fresh cluster of ``masters`` masters and no replicas, stopped on exit."""
    redis_cli = shutil.which("redis-cli")
    if redis_cli is None:
        raise ClusterStartError(MISSING_REDIS_CLI)
    server = find_redis_server()
    ports = cluster_ports(masters)
    processes: list[subprocess.Popen[bytes]] = []
    try:
        for port in ports:
            node_dir = data_dir / str(port)
            node_dir.mkdir(parents=True)
            args = [
                server,
                "--port", str(port),
                "--bind", "127.0.0.1",
                "--dir", str(node_dir),
                "--cluster-enabled", "yes",
                "--cluster-config-file", "nodes.conf",
                "--save", "",
                "--appendonly", "no",
                "--logfile", "redis.log",
            ]  # fmt: skip
            processes.append(
                subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        for port, process in zip(ports, processes, strict=True):
            _wait_answering(port, process, data_dir / str(port) / "redis.log", deadline)
        create = subprocess.run(
            [redis_cli, "--cluster", "create", *(f"127.0.0.1:{port}" for port in ports),
             "--cluster-replicas", "0", "--cluster-yes"],
            capture_output=True, text=True, timeout=START_TIMEOUT_S, check=False,
        )  # fmt: skip
        if create.returncode != 0:
            raise ClusterStartError(
                f"redis-cli --cluster create failed ({create.returncode}):\n"
                f"{create.stdout}{create.stderr}"
            )
        for port in ports:
            _wait(
                f"cluster_state:ok on port {port}", lambda p=port: _state_ok(p, masters), deadline
            )
        yield LocalCluster(tuple(ports))
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
