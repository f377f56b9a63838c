"""``webhookd run`` processes under test: their config, endpoints, start and state.

Each run has a name of its own (``http-1``, ``https-2``, ...) used as its key prefix,
its stream, its nginx location and its log files, so runs share one redis-server and
one nginx without seeing each other's data.
"""

from __future__ import annotations

import base64
import contextlib
import secrets
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, cast

import redis
import trio

from processes import BIN, spawn
from webhookd.config import load_settings
from webhookd.connection import open_client
from webhookd.keyspace import PartitionKeys
from webhookd.registry import endpoint_tls, registry_for
from workload import publish, vendor_of

GROUP = "webhookd"


class Receivers(Protocol):
    """Where the endpoints point: the nginx sink, or bench/kpi_receiver.py's server."""

    @property
    def ca_pem(self) -> str: ...  # the CA an HTTPS endpoint trusts

    def port_of(self, scheme: str) -> int: ...


DAEMON_CONF = """\
[redis]
url = "{redis_url}"
data_dir = "{workdir}/data"
key_prefix = "{name}"

[stream]
name = "{name}:events"
dead = "{name}:dead"

[delivery]
require_https = {require_https}
allow_private_targets = true
endpoint_concurrency = {endpoint_concurrency}

[admin]
listen = "127.0.0.1:0"

[secrets]
key = "{master_key}"

[log]
level = "warning"
"""


def configure_daemon(
    workdir: Path,
    name: str,
    redis_url: str,
    sink: Receivers,
    scheme: str,
    vendors: int,
    endpoint_concurrency: int,
    extra: str = "",
) -> Path:
    """Write a config of its own (stream, keys) and register one endpoint per vendor.

    Over HTTPS, ``delivery.require_https`` stays on and each endpoint trusts the test
    CA, as an endpoint with a private CA would. A master key of its own, too: left
    unset, webhookd would create a key file in the data directory and warn about it.
    ``extra`` is appended to the config (more sections).
    """
    config = workdir / f"{name}.toml"
    config.write_text(
        DAEMON_CONF.format(
            redis_url=redis_url,
            workdir=workdir,
            name=name,
            require_https=str(scheme == "https").lower(),
            endpoint_concurrency=endpoint_concurrency,
            master_key=base64.b64encode(secrets.token_bytes(32)).decode(),
        )
        + extra
    )
    settings = load_settings(config, environ={})
    tls = endpoint_tls(sink.ca_pem, None, None) if scheme == "https" else None
    base = f"{scheme}://127.0.0.1:{sink.port_of(scheme)}/{name}"

    async def register() -> None:
        async with open_client(redis_url) as client:
            registry = registry_for(client, settings)
            for index in range(vendors):
                vendor = vendor_of(index, vendors)
                await registry.add(vendor, f"{base}/v{index}", now_s=time.time(), tls=tls)

    trio.run(register)
    return config


def prepare_backlog(client: redis.Redis, name: str, events: int, vendors: int) -> list[str]:
    """All events but the last, behind a consumer group that starts after them.

    Daemons started now come up and block on XREADGROUP without taking anything, so
    their start-up stays outside the measurement.
    """
    stream = f"{name}:events"
    ids = publish(client, stream, range(events - 1), vendors)
    client.xgroup_create(stream, GROUP, id="$")
    return ids


def run_daemons(
    stack: contextlib.ExitStack, config: Path, count: int, workdir: Path
) -> list[subprocess.Popen[bytes]]:
    args = [str(BIN / "webhookd"), "--config", str(config), "run"]
    return [spawn(stack, args, workdir / f"daemon-{config.stem}-{i}.log") for i in range(count)]


def wait_until_reading(
    client: redis.Redis,
    daemons: Sequence[subprocess.Popen[bytes]],
    workdir: Path,
    timeout_s: float = 30.0,
) -> None:
    """Until every daemon sits in a blocked XREADGROUP, i.e. has started up completely."""
    deadline = time.monotonic() + timeout_s
    while True:
        clients = cast(list[dict[str, str]], client.client_list())
        blocked = [c for c in clients if c["cmd"] == "xreadgroup" and "b" in c["flags"]]
        if len(blocked) >= len(daemons):
            return
        if any(d.poll() is not None for d in daemons) or time.monotonic() > deadline:
            tails = daemon_logs(workdir, tail=8)
            raise SystemExit("a daemon did not start; its log ends:\n" + "\n".join(tails))
        time.sleep(0.05)


def wait_acked(client: redis.Redis, name: str, timeout_s: float = 5.0) -> int:
    """Until the group has nothing pending (the last acks landed); returns the polls made."""
    deadline = time.monotonic() + timeout_s
    polls = 0
    while True:
        polls += 1
        summary = cast(dict[str, int], client.xpending(f"{name}:events", GROUP))
        if not summary["pending"] or time.monotonic() > deadline:
            return polls
        time.sleep(0.02)


def leftovers(client: redis.Redis, name: str) -> dict[str, int]:
    """What should be empty once every delivery settled, after the last acks landed."""
    deadline = time.monotonic() + 5
    while True:
        found = {
            "pending": cast(dict[str, int], client.xpending(f"{name}:events", GROUP))["pending"],
            "scheduled retries": cast(int, client.zcard(PartitionKeys(f"{name}:events").retry)),
            "dead letters": cast(int, client.xlen(f"{name}:dead")),
        }
        if not any(found.values()) or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def daemon_logs(workdir: Path, tail: int | None = None) -> list[str]:
    """What the daemons logged (warning level and above), file by file, or each file's tail."""
    lines = []
    for path in sorted(workdir.glob("daemon-*.log")):
        logged = path.read_text().splitlines()
        lines += [f"{path.name}: {line}" for line in logged[-tail if tail else 0 :]]
    return lines
