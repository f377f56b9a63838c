"""Instructions per delivery: the daemon's CPU in a unit that does not depend on the machine.

CPU time per delivery moves with the machine (the bare h11 client needed 81-87 us per
request on one VM and 273-302 us on a slower one), so a target in microseconds only
holds where it was set.
Valgrind's callgrind counts the instructions a process executes instead: the same
binary, code and inputs give the same count on any x86-64 machine, however loaded.

For each scheme (plain HTTP, HTTPS), against an nginx sink and a redis-server of its own:

- one ``webhookd run`` under callgrind: a warm-up batch is delivered first (connections
  and TLS sessions opened, code paths loaded, as in a daemon that has been running),
  the counters are zeroed, ``--events`` more are published and delivered, and the
  count is read;
- the bare h11 client of ``bench/delivery.py`` under callgrind: its connections are
  opened, the counters zeroed, and it POSTs for ``--seconds`` (of valgrind's slow time).

It prints instructions per delivery and per request, and their ratio. Under callgrind
everything runs about 50 times slower, so batches fill differently than at full speed;
the figure compares versions of the code, not absolute speeds. Needs valgrind (Debian's
``valgrind``); a run takes about six minutes with the defaults.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import signal
import ssl
import subprocess
import tempfile
import time
from pathlib import Path

import redis
import trio

from clients import connect, h11_posts
from daemons import GROUP, configure_daemon, wait_acked, wait_until_reading
from nginx import Receipts, Sink, start_nginx
from processes import BIN, spawn, stop
from webhookd.embedded import running_redis
from workload import publish, sample_body

SCHEMES = ("http", "https")
VENDORS = 4
ENDPOINT_CONCURRENCY = 16
STARTED_WITHIN_S = 600.0  # valgrind takes minutes over the daemon's imports
ACKED_WITHIN_S = 120.0


def callgrind(out: Path, *command: str) -> list[str]:
    """``command`` under callgrind; valgrind's own messages go to a file beside ``out``."""
    return ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
            f"--log-file={out}.log", *command]  # fmt: skip


def control(pid: int, *request: str) -> None:
    """``callgrind_control -z`` zeroes the counters, ``-d`` writes them out."""
    subprocess.run(["callgrind_control", *request, str(pid)], check=True, capture_output=True)


def dumped_instructions(out: Path) -> int:
    """The instructions of the dumps written by ``-d`` (``out.1``, …), since the zeroing."""
    total = 0
    for dump in sorted(out.parent.glob(out.name + ".[0-9]*")):
        for line in dump.read_text().splitlines():
            if line.startswith("totals:"):
                total += int(line.split()[1])
    if not total:
        raise SystemExit(f"callgrind wrote no counts next to {out}")
    return total


def deliver(client: redis.Redis, name: str, receipts: Receipts, first: int, count: int) -> None:
    """Publish ``count`` events and wait until nginx has them all and the group is done."""
    ids = publish(client, f"{name}:events", range(first, first + count), VENDORS)
    missing = receipts.wait_for(ids)
    if missing:
        raise SystemExit(f"{len(missing)} of {count} events never reached nginx")
    wait_acked(client, name, timeout_s=ACKED_WITHIN_S)


def daemon_instructions(
    workdir: Path, redis_url: str, sink: Sink, scheme: str, events: int, warm: int
) -> float:
    name = f"instr-{scheme}"
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    client.xgroup_create(f"{name}:events", GROUP, id="$", mkstream=True)
    config = configure_daemon(workdir, name, redis_url, sink, scheme, VENDORS,
                              ENDPOINT_CONCURRENCY)  # fmt: skip
    out = workdir / f"{name}.cg"
    command = callgrind(out, str(BIN / "python"), str(BIN / "webhookd"), "--config",
                        str(config), "run")  # fmt: skip
    receipts = Receipts(workdir / f"{name}.log")
    with contextlib.ExitStack() as stack:
        daemon = spawn(stack, command, workdir / f"daemon-{name}.log")
        wait_until_reading(client, [daemon], workdir, timeout_s=STARTED_WITHIN_S)
        deliver(client, name, receipts, 0, warm)
        control(daemon.pid, "-z")
        deliver(client, name, receipts, warm, events)
        control(daemon.pid, "-d")
        stop(daemon, signal.SIGKILL)
    return dumped_instructions(out) / events


def client_instructions(workdir: Path, sink: Sink, scheme: str, seconds: float) -> float:
    out = workdir / f"h11-{scheme}.cg"
    command = [str(BIN / "python"), __file__, "--h11-client", str(sink.port_of(scheme)),
               "--seconds", str(seconds)]  # fmt: skip
    if scheme == "https":
        command += ["--ca", str(workdir / "ca.pem")]
    done = subprocess.run(callgrind(out, *command), capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"the h11 client failed under valgrind:\n{done.stderr[-2000:]}")
    return dumped_instructions(out) / int(done.stdout.split()[-1])


def run_h11_client(port: int, seconds: float, ca: str | None) -> None:
    """Runs inside valgrind: connect, zero the counters, POST, write them out, print
    how many requests completed."""
    tls = None if ca is None else ssl.create_default_context(cafile=ca)
    poster = functools.partial(h11_posts, authority=f"127.0.0.1:{port}",
                               body=sample_body(time.time()))  # fmt: skip
    completed = 0

    async def post_until(stream: trio.abc.Stream, index: int, stop_at: float) -> None:
        nonlocal completed
        async with stream:
            done = await poster(stream, index, stop_at)
        completed += done

    async def main() -> None:
        streams = [await connect(port, tls) for _ in range(VENDORS * ENDPOINT_CONCURRENCY)]
        control(os.getpid(), "-z")
        started = trio.current_time()
        async with trio.open_nursery() as nursery:
            for index, stream in enumerate(streams):
                nursery.start_soon(post_until, stream, index, started + seconds)
        control(os.getpid(), "-d")

    trio.run(main)
    print(completed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=1000, help="counted deliveries (1,000)")
    parser.add_argument("--warm", type=int, default=200, help="deliveries before counting")
    parser.add_argument("--seconds", type=float, default=20.0,
                        help="the h11 client's run under valgrind (20)")  # fmt: skip
    parser.add_argument("--scheme", choices=SCHEMES, action="append", help="default: both")
    parser.add_argument("--h11-client", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--ca", help=argparse.SUPPRESS)
    opts = parser.parse_args()
    if opts.h11_client is not None:
        run_h11_client(opts.h11_client, opts.seconds, opts.ca)
        return
    if subprocess.run(["which", "valgrind"], capture_output=True).returncode:
        raise SystemExit("valgrind is missing: apt-get install valgrind")
    print(f"instructions per delivery under callgrind: {opts.events:,} deliveries after "
          f"{opts.warm:,} to warm up, {VENDORS} endpoints x {ENDPOINT_CONCURRENCY} "
          "connections")  # fmt: skip
    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="instr-")))
        server = stack.enter_context(running_redis(workdir / "redis", persistent=False))
        sink = start_nginx(stack, workdir, ["h11", *(f"instr-{scheme}" for scheme in SCHEMES)])
        for scheme in opts.scheme or SCHEMES:
            ours = daemon_instructions(workdir, server.url, sink, scheme, opts.events, opts.warm)
            h11 = client_instructions(workdir, sink, scheme, opts.seconds)
            print(f"  {scheme:5}  webhookd {ours:,.0f} per delivery, bare h11 client "
                  f"{h11:,.0f} per request: {ours / h11:.2f}x")  # fmt: skip


if __name__ == "__main__":
    main()
