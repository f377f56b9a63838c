"""Delivery benchmark: how close webhookd gets to what the HTTP layer alone can do.

Everything runs on loopback and is started here: a redis-server of its own, an nginx
sink answering 200 to every POST, and ``webhookd run`` subprocesses. Four figures,
each against its target:

- ceiling: a bare h11-on-trio client POSTing the same bodies at the same concurrency;
- sustained deliveries/s of one daemon process (target: 60 % of the ceiling) and of
  two (target: 1.6x one), over a pre-published backlog, first receipt to last;
- end-to-end latency, XADD to nginx receipt, with events published at half the
  sustained rate (target: p99 under 50 ms).

Latency needs no clock of its own: the daemon's ``X-Event-ID`` is ``evt_<ms>-<seq>``,
the ms part being Redis's XADD time, and nginx logs ``$msec`` when the request is
done. The rates move with whatever else runs on the machine, so each phase also
reports CPU time per delivery by process, and how much CPU everything else took.
Run ``.venv/bin/python bench/delivery.py --help`` for the knobs; bench/README.md
says how to read the output.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import http.client
import json
import math
import os
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import h11
import redis
import trio

from webhookd.config import load_settings
from webhookd.connection import open_client
from webhookd.embedded import free_port, running_redis
from webhookd.events import format_timestamp, render_body
from webhookd.publisher import entry_fields
from webhookd.registry import registry_for

NGINX = "/usr/sbin/nginx"
BIN = Path(sys.executable).parent
EVENT_TYPE = "order.created"
DATA_BYTES = 1024
PUBLISH_CHUNK = 1000
IDLE_FRAME = "trio/_core/_io_epoll.py:EpollIOManager.get_events"
STALL_S = 10.0  # no new receipt for this long: whatever is missing is reported lost
TARGET_SHARE_OF_CEILING = 0.60
TARGET_SCALE_TWO = 1.6
TARGET_P99_MS = 50.0

NGINX_CONF = """\
worker_processes 1;
pid {dir}/nginx.pid;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    log_format bench '$msec $http_x_event_id';
    keepalive_requests 1000000;
    keepalive_timeout 300s;
    client_body_buffer_size 64k;
{temp_paths}
    server {{
        listen 127.0.0.1:{port};
{locations}
    }}
}}
"""
LOCATION = """\
        location /{name}/ {{
            access_log {dir}/{name}.log bench buffer=256k flush=1s;
            return 200 "ok";
        }}
"""
TEMP_MODULES = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")

DAEMON_CONF = """\
[redis]
url = "{redis_url}"
data_dir = "{workdir}/data"
key_prefix = "{name}"

[stream]
name = "{name}:events"
dead = "{name}:dead"

[delivery]
require_https = false
allow_private_targets = true
endpoint_concurrency = {endpoint_concurrency}

[admin]
listen = "127.0.0.1:0"

[secrets]
key = "{master_key}"

[log]
level = "warning"
"""


@dataclass(frozen=True, slots=True)
class Options:
    events: int
    vendors: int
    endpoint_concurrency: int
    seconds: float
    profile: Path | None

    @property
    def concurrency(self) -> int:
        return self.vendors * self.endpoint_concurrency


@dataclass(frozen=True, slots=True)
class Ceiling:
    rate: float  # requests/s
    cpu_us: dict[str, float]  # CPU time per request, by process


@dataclass(frozen=True, slots=True)
class Sustained:
    delivered: int
    rate: float  # deliveries/s from the first receipt to the last
    span_s: float
    cpu_us: dict[str, float]  # CPU time per delivery, by process
    cpu_share: dict[str, float]  # cores busy while the backlog drained, by process and others


@dataclass(frozen=True, slots=True)
class Latency:
    offered_rate: float
    published: int
    delivered: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    others: float  # cores that other processes used meanwhile


def event_data(seq: int) -> dict[str, Any]:
    """A data object whose JSON is exactly DATA_BYTES long, as the issue asks."""
    data: dict[str, Any] = {"order_id": f"ord_{seq:08d}", "amount_cents": 1999 + seq % 1000}
    data["note"] = ""
    data["note"] = "x" * (DATA_BYTES - len(json.dumps(data, separators=(",", ":"))))
    return data


def vendor_of(seq: int, vendors: int) -> str:
    return f"vendor-{seq % vendors}"


def percentile(ordered: Sequence[float], share: float) -> float:
    """Nearest-rank percentile of an already sorted sequence; NaN when it is empty."""
    if not ordered:
        return math.nan
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def cpu_s(pids: Sequence[int]) -> float:
    """User + system CPU seconds the processes used so far, from /proc."""
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")


def machine_busy_s() -> float:
    """CPU seconds the machine was busy so far (all cores), from /proc/stat.

    Busy is every column of the ``cpu`` line up to steal but idle and iowait; steal
    counts too, as CPU time the benchmark could not have.
    """
    ticks = [int(field) for field in Path("/proc/stat").read_text().split()[1:9]]
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


class OtherLoad:
    """CPU that processes other than ours have used since it was made, in cores."""

    def __init__(self, ours: Sequence[int]) -> None:
        self._ours = ours
        self._start = self._sample()

    def _sample(self) -> tuple[float, float, float]:
        return time.monotonic(), machine_busy_s(), cpu_s(self._ours) + time.process_time()

    def cores(self) -> float:
        wall_s, machine_s, ours_s = (
            b - a for a, b in zip(self._start, self._sample(), strict=True)
        )
        return (machine_s - ours_s) / wall_s


def cpu_per_item(before: dict[str, float], after: dict[str, float], items: int) -> dict[str, float]:
    """Microseconds of CPU per request or delivery, by process role."""
    return {role: (after[role] - before[role]) * 1e6 / max(1, items) for role in before}


def show_cpu(cpu_us: dict[str, float]) -> str:
    return ", ".join(f"{role} {us:,.0f} us" for role, us in cpu_us.items())


# --- processes -------------------------------------------------------------------------


def stop(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM, wait_s: float = 20) -> None:
    """Signal, wait, then kill: no child outlives the benchmark."""
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout=wait_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def spawn(stack: contextlib.ExitStack, args: Sequence[str], log: Path) -> subprocess.Popen[bytes]:
    """A child in its own session, so Ctrl-C reaches only us and we stop it in order."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEBHOOKD_")}
    with log.open("wb") as out:
        process = subprocess.Popen(
            args, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    stack.callback(stop, process)
    return process


def start_nginx(
    stack: contextlib.ExitStack, workdir: Path, locations: Sequence[str]
) -> tuple[int, list[int]]:
    """nginx on a free loopback port, every path under ``workdir``.

    Returns the port and the worker processes' ids.
    """
    port = free_port()
    built = subprocess.run([NGINX, "-V"], capture_output=True, text=True).stderr
    temp_paths = "".join(
        f"    {module}_temp_path {workdir}/{module}_temp;\n"
        for module in TEMP_MODULES
        if f"--without-http_{module}_module" not in built
    )
    conf = workdir / "nginx.conf"
    conf.write_text(
        NGINX_CONF.format(
            dir=workdir,
            port=port,
            temp_paths=temp_paths,
            locations="".join(LOCATION.format(dir=workdir, name=name) for name in locations),
        )
    )
    args = [NGINX, "-p", str(workdir), "-c", str(conf), "-e", str(workdir / "error.log")]
    process = spawn(stack, [*args, "-g", "daemon off;"], workdir / "nginx.out")
    deadline = time.monotonic() + 10
    while not check_sink(port, locations[0]):
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"nginx did not start: {(workdir / 'error.log').read_text()}")
        time.sleep(0.05)
    children = Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text()
    return port, [int(pid) for pid in children.split()]


def check_sink(port: int, location: str) -> bool:
    """Two 1 KiB POSTs on one connection: both 200, and the connection kept alive."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        sockets = []
        for _ in range(2):
            connection.request("POST", f"/{location}/check", body=b"x" * DATA_BYTES)
            response = connection.getresponse()
            if response.status != 200 or response.read() != b"ok":
                raise SystemExit(f"nginx answered {response.status} to a POST")
            sockets.append(connection.sock)
        if sockets[0] is not sockets[1]:
            raise SystemExit("nginx closed a keep-alive connection after a POST")
        return True
    except OSError:
        return False
    finally:
        connection.close()


# --- the sink's receipts -----------------------------------------------------------------


class Receipts:
    """What nginx logged in one access log: event id -> receipt time (epoch ms)."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._offset = 0
        self._partial = b""
        self.at_ms: dict[str, float] = {}
        self.duplicates = 0

    def poll(self) -> list[str]:
        """Read what nginx flushed since the last poll; returns the ids new to us."""
        if not self._path.exists():
            return []
        with self._path.open("rb") as file:
            file.seek(self._offset)
            chunk = file.read()
        self._offset += len(chunk)
        *lines, self._partial = (self._partial + chunk).split(b"\n")
        fresh = []
        for line in lines:
            msec, _, event_id = line.decode().partition(" ")
            if event_id in self.at_ms:
                self.duplicates += 1
            else:
                self.at_ms[event_id] = float(msec) * 1000
                fresh.append(event_id)
        return fresh

    def wait_for(self, ids: Sequence[str]) -> list[str]:
        """Wait until every id was received or progress stalled; returns the missing ids."""
        missing = set(ids).difference(self.at_ms)
        progress = time.monotonic()
        while missing and time.monotonic() - progress < STALL_S:
            time.sleep(0.1)
            fresh = self.poll()
            if missing.intersection(fresh):
                missing.difference_update(fresh)
                progress = time.monotonic()
        return sorted(missing)


# --- webhookd ------------------------------------------------------------------------------


def publish(client: redis.Redis, stream: str, seqs: range, vendors: int) -> list[str]:
    """Pipelined XADDs of the events ``seqs``; returns their event ids (evt_ + entry id)."""
    ids: list[str] = []
    for start in range(seqs.start, seqs.stop, PUBLISH_CHUNK):
        pipe = client.pipeline(transaction=False)
        for seq in range(start, min(start + PUBLISH_CHUNK, seqs.stop)):
            fields = entry_fields(EVENT_TYPE, vendor_of(seq, vendors), event_data(seq), None)
            pipe.xadd(stream, fields)  # type: ignore[arg-type]
        ids += [f"evt_{entry_id}" for entry_id in pipe.execute()]
    return ids


def xadd_ms(event_id: str) -> float:
    """The XADD time Redis put into an entry id (``evt_<ms>-<seq>``)."""
    return float(event_id.removeprefix("evt_").partition("-")[0])


def configure_daemon(workdir: Path, name: str, redis_url: str, port: int, opts: Options) -> Path:
    """Write a config of its own (stream, keys) and register one endpoint per vendor.

    A master key of its own, too: left unset, webhookd would create a key file in the
    data directory and warn about it.
    """
    config = workdir / f"{name}.toml"
    config.write_text(
        DAEMON_CONF.format(
            redis_url=redis_url,
            workdir=workdir,
            name=name,
            endpoint_concurrency=opts.endpoint_concurrency,
            master_key=base64.b64encode(secrets.token_bytes(32)).decode(),
        )
    )
    settings = load_settings(config, environ={})

    async def register() -> None:
        async with open_client(redis_url) as client:
            registry = registry_for(client, settings)
            for index in range(opts.vendors):
                url = f"http://127.0.0.1:{port}/{name}/v{index}"
                await registry.add(vendor_of(index, opts.vendors), url, now_s=time.time())

    trio.run(register)
    return config


def wait_until_reading(
    client: redis.Redis, daemons: Sequence[subprocess.Popen[bytes]], workdir: Path
) -> None:
    """Until every daemon sits in a blocked XREADGROUP, i.e. has started up completely."""
    deadline = time.monotonic() + 30
    while True:
        clients = cast(list[dict[str, str]], client.client_list())
        blocked = [c for c in clients if c["cmd"] == "xreadgroup" and "b" in c["flags"]]
        if len(blocked) >= len(daemons):
            return
        if any(d.poll() is not None for d in daemons) or time.monotonic() > deadline:
            tails = daemon_logs(workdir, tail=8)
            raise SystemExit("a daemon did not start; its log ends:\n" + "\n".join(tails))
        time.sleep(0.05)


def leftovers(client: redis.Redis, name: str) -> dict[str, int]:
    """What should be empty once every delivery settled, after the last acks landed."""
    deadline = time.monotonic() + 5
    while True:
        found = {
            "pending": cast(dict[str, int], client.xpending(f"{name}:events", "webhookd"))[
                "pending"
            ],
            "scheduled retries": cast(int, client.zcard(f"{name}:retry")),
            "dead letters": cast(int, client.xlen(f"{name}:dead")),
        }
        if not any(found.values()) or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


@contextlib.contextmanager
def profiling(pid: int, output: Path | None, workdir: Path) -> Iterator[None]:
    """py-spy on the daemon for the duration of the block.

    Idle samples are kept, so the share spent waiting in epoll tells a CPU-bound
    daemon from one that waits on something.
    """
    if output is None:
        yield
        return
    log = workdir / "py-spy.log"
    args = [str(BIN / "py-spy"), "record", "--pid", str(pid), "--rate", "200", "--idle"]
    args += ["--format", "raw", "--output", str(output)]
    with contextlib.ExitStack() as stack:
        process = spawn(stack, args, log)
        deadline = time.monotonic() + 10
        while b"Sampling process" not in log.read_bytes():
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"py-spy did not start: {log.read_text()}")
            time.sleep(0.05)
        yield
        stop(process, signal.SIGINT, wait_s=60)


def hot_spots(path: Path, top: int = 12) -> str:
    """Where the daemon's time went, from py-spy's raw (collapsed) stacks.

    Shares are of all samples, idle ones included, so they add up across sections:
    self time by function and by package (webhookd by module), and inclusive time
    in webhookd's own functions below the entry point.
    """
    own: Counter[str] = Counter()
    package: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        count = int(count_text)
        total += count
        frames = [re.sub(r"^(.*) \((.*?)(?::\d+)?\)$", r"\2:\1", f) for f in stack.split(";")]
        own[frames[-1]] += count
        source = frames[-1].rpartition(":")[0]
        package[source if source.startswith("webhookd/") else source.split("/")[0]] += count
        for frame in set(frames):
            if frame.startswith("webhookd/") and not frame.startswith("webhookd/cli.py"):
                inclusive[frame] += count
    idle = own[IDLE_FRAME] / total
    del own[IDLE_FRAME]
    lines = [f"  {total:,} samples; {idle:.1%} waiting in epoll, the rest on CPU or runnable"]
    sections = (
        ("self time by function", own),
        ("self time by package", package),
        ("inclusive time in webhookd functions", inclusive),
    )
    for title, counts in sections:
        lines.append(f"  {title}, top {top}:")
        lines += [f"    {n / total:6.1%}  {name}" for name, n in counts.most_common(top)]
    return "\n".join(lines)


# --- phases --------------------------------------------------------------------------------


def measure_ceiling(port: int, sink: list[int], opts: Options) -> Ceiling:
    """Requests/s of a bare h11-on-trio client: keep-alive, same body, same concurrency.

    Each request is built anew, as any client must, with only the headers HTTP needs
    and the event id nginx logs.
    """
    body = render_body(EVENT_TYPE, "evt_0-0", format_timestamp(time.time()), event_data(0))
    headers = [
        ("Host", f"127.0.0.1:{port}"),
        ("Content-Length", str(len(body))),
        ("Content-Type", "application/json"),
        ("X-Event-ID", "ceiling"),
    ]
    completed = 0

    async def post_until(stream: trio.SocketStream, stop_at: float) -> None:
        nonlocal completed
        connection = h11.Connection(h11.CLIENT)
        async with stream:
            while trio.current_time() < stop_at:
                request = h11.Request(method="POST", target="/ceiling/", headers=headers)
                await stream.send_all(
                    connection.send(request)
                    + connection.send(h11.Data(data=body))
                    + connection.send(h11.EndOfMessage())
                )
                while True:
                    event = connection.next_event()
                    if event is h11.NEED_DATA:
                        connection.receive_data(await stream.receive_some(65536))
                    elif type(event) is h11.Response and event.status_code != 200:
                        raise SystemExit(f"nginx answered {event.status_code} to the ceiling")
                    elif type(event) is h11.EndOfMessage:
                        break
                connection.start_next_cycle()
                completed += 1

    def cpu() -> dict[str, float]:
        return {"client": time.process_time(), "nginx": cpu_s(sink)}

    async def run() -> Ceiling:
        streams = [await trio.open_tcp_stream("127.0.0.1", port) for _ in range(opts.concurrency)]
        before = cpu()
        started = trio.current_time()
        async with trio.open_nursery() as nursery:
            for stream in streams:
                nursery.start_soon(post_until, stream, started + opts.seconds)
        rate = completed / (trio.current_time() - started)
        return Ceiling(rate, cpu_per_item(before, cpu(), completed))

    return trio.run(run)


def prepare_backlog(client: redis.Redis, name: str, opts: Options) -> list[str]:
    """All events but the last, behind a consumer group that starts after them.

    Daemons started now come up and block on XREADGROUP without taking anything, so
    their start-up stays outside the measurement (see `measure_sustained`).
    """
    stream = f"{name}:events"
    ids = publish(client, stream, range(opts.events - 1), opts.vendors)
    client.xgroup_create(stream, "webhookd", id="$")
    return ids


def measure_sustained(
    client: redis.Redis,
    name: str,
    backlog: list[str],
    receipts: Receipts,
    roles: dict[str, list[int]],
    opts: Options,
) -> Sustained:
    """Release the backlog to every daemon at once and time its delivery.

    The group is rewound to the start, and the last event's XADD wakes every blocked
    daemon at the same moment: a rewind alone wakes nobody.
    """
    stream = f"{name}:events"
    before = {role: cpu_s(pids) for role, pids in roles.items()}
    others = OtherLoad([pid for pids in roles.values() for pid in pids])
    client.xgroup_setid(stream, "webhookd", "0")
    ids = backlog + publish(client, stream, range(opts.events - 1, opts.events), opts.vendors)
    missing = receipts.wait_for(ids)
    after = {role: cpu_s(pids) for role, pids in roles.items()}
    others_cores = others.cores()
    times = sorted(receipts.at_ms[i] for i in ids if i in receipts.at_ms)
    span_s = (times[-1] - times[0]) / 1000 if len(times) > 1 else 0.0
    rate = (len(times) - 1) / span_s if span_s > 0 else 0.0
    delivered = len(ids) - len(missing)
    # Busy share from the gate (the last XADD) to the last receipt; all sit idle after it.
    wall_s = max(1e-3, (times[-1] - xadd_ms(ids[-1])) / 1000) if times else 1e-3
    share = {role: (after[role] - before[role]) / wall_s for role in roles}
    share["everything else"] = others_cores
    return Sustained(delivered, rate, span_s, cpu_per_item(before, after, delivered), share)


def measure_latency(
    client: redis.Redis,
    name: str,
    receipts: Receipts,
    rate: float,
    ours: Sequence[int],
    opts: Options,
) -> Latency:
    """Publish at ``rate`` events/s in 10 ms ticks for ``opts.seconds``; XADD to receipt."""
    stream = f"{name}:events"
    others = OtherLoad(ours)
    first = opts.events
    sent = 0
    ids: list[str] = []
    started = time.monotonic()
    while (elapsed := time.monotonic() - started) < opts.seconds:
        due = int(rate * elapsed) + 1
        ids += publish(client, stream, range(first + sent, first + due), opts.vendors)
        sent = due
        time.sleep(max(0.0, 0.01 - (time.monotonic() - started - elapsed)))
    others_cores = others.cores()
    missing = set(receipts.wait_for(ids))
    latencies = sorted(receipts.at_ms[i] - xadd_ms(i) for i in ids if i not in missing)
    return Latency(
        offered_rate=len(ids) / opts.seconds,
        published=len(ids),
        delivered=len(latencies),
        p50_ms=percentile(latencies, 0.50),
        p99_ms=percentile(latencies, 0.99),
        max_ms=percentile(latencies, 1.0),
        others=others_cores,
    )


def run_daemons(
    stack: contextlib.ExitStack, config: Path, count: int, workdir: Path
) -> list[subprocess.Popen[bytes]]:
    args = [str(BIN / "webhookd"), "--config", str(config), "run"]
    return [spawn(stack, args, workdir / f"{config.stem}-{i}.log") for i in range(count)]


def daemon_logs(workdir: Path, tail: int | None = None) -> list[str]:
    """What the daemons logged (warning level and above), file by file, or each file's tail."""
    lines = []
    for path in sorted(workdir.glob("[a-z]*-[0-9].log")):
        logged = path.read_text().splitlines()
        lines += [f"{path.name}: {line}" for line in logged[-tail if tail else 0 :]]
    return lines


# --- report --------------------------------------------------------------------------------


def load_average() -> str:
    """The 1-minute load average: above ~0.3 before the run, something else is busy."""
    return f"{os.getloadavg()[0]:.2f}"


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def report_phase(label: str, s: Sustained, lat: Latency, left: dict[str, int], dups: int) -> None:
    print(
        f"{label}: {s.delivered:,} delivered, {s.rate:,.0f}/s over {s.span_s:.2f} s "
        f"(first receipt to last); then {lat.offered_rate:,.0f} events/s offered: "
        f"{lat.delivered:,}/{lat.published:,} delivered, latency p50 {lat.p50_ms:.1f} ms, "
        f"p99 {lat.p99_ms:.1f} ms, max {lat.max_ms:.0f} ms "
        f"(everything else meanwhile: {lat.others:.0%})"
    )
    print(f"  CPU per delivery in the sustained run: {show_cpu(s.cpu_us)}")
    busy = ", ".join(f"{role} {share:.0%}" for role, share in s.cpu_share.items())
    print(f"  CPU busy meanwhile (100% = one core): {busy}")
    problems = {k: v for k, v in left.items() if v} | ({"duplicates": dups} if dups else {})
    if problems:
        print("  after the phase: " + ", ".join(f"{k} {v}" for k, v in problems.items()))


def print_table(
    ceiling: Ceiling, one: Sustained, two: Sustained, lat_one: Latency, lat_two: Latency
) -> None:
    share = one.rate / ceiling.rate
    scale = two.rate / one.rate if one.rate else 0.0
    rows = [
        ("ceiling: bare h11 on trio", f"{ceiling.rate:,.0f} req/s", "", ""),
        (
            "1 process",
            f"{one.rate:,.0f} /s",
            f">= {TARGET_SHARE_OF_CEILING:.0%} of ceiling",
            f"{share:.0%}  {verdict(share >= TARGET_SHARE_OF_CEILING)}",
        ),
        (
            "2 processes",
            f"{two.rate:,.0f} /s",
            f">= {TARGET_SCALE_TWO:.1f}x 1 process",
            f"{scale:.2f}x  {verdict(scale >= TARGET_SCALE_TWO)}",
        ),
    ]
    for label, lat in (("1 process", lat_one), ("2 processes", lat_two)):
        at = f"{label} at {lat.offered_rate:,.0f}/s"
        rows.append((f"{at}: p50", f"{lat.p50_ms:.1f} ms", "", ""))
        rows.append(
            (
                f"{at}: p99",
                f"{lat.p99_ms:.1f} ms",
                f"< {TARGET_P99_MS:.0f} ms",
                verdict(lat.p99_ms < TARGET_P99_MS),
            )
        )
    table = [("", "measured", "target", "result"), *rows]
    widths = [max(len(row[i]) for row in table) for i in range(4)]
    print()
    for row in table:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )


def benchmark(opts: Options) -> None:
    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-")))
        server = stack.enter_context(running_redis(workdir / "redis", persistent=False))
        redis_url = server.url
        client = stack.enter_context(redis.Redis.from_url(redis_url, decode_responses=True))
        port, sink = start_nginx(stack, workdir, ["ceiling", "one", "two"])
        body = render_body(EVENT_TYPE, "evt_0-0", format_timestamp(0), event_data(0))
        print(
            f"webhookd delivery benchmark: {os.cpu_count()} CPUs, shared by nginx (1 worker), "
            f"redis-server, the daemons and this script"
        )
        print(f"  {opts.events:,} events per run, data {DATA_BYTES} B (POST body ~{len(body):,} B)")
        print(
            f"  layout: {opts.vendors} vendors x 1 endpoint, endpoint_concurrency "
            f"{opts.endpoint_concurrency}: at most {opts.concurrency} requests in flight; "
            f"the ceiling client uses {opts.concurrency} keep-alive connections"
        )
        print(
            '  daemon config: log.level = "warning", delivery.require_https = false, '
            "delivery.allow_private_targets = true, secrets.key set, the rest at defaults"
        )
        print(f"  load average before the run: {load_average()} (other work skews every figure)")
        ceiling = measure_ceiling(port, sink, opts)
        print(f"ceiling: {ceiling.rate:,.0f} req/s; CPU per request: {show_cpu(ceiling.cpu_us)}")
        results = []
        for name, count in (("one", 1), ("two", 2)):
            receipts = Receipts(workdir / f"{name}.log")
            config = configure_daemon(workdir, name, redis_url, port, opts)
            backlog = prepare_backlog(client, name, opts)
            with contextlib.ExitStack() as phase:
                daemons = run_daemons(phase, config, count, workdir)
                wait_until_reading(client, daemons, workdir)
                roles = {
                    "daemon": [d.pid for d in daemons],
                    "redis-server": [server.process.pid],
                    "nginx": sink,
                }
                ours = [pid for pids in roles.values() for pid in pids]
                profile = opts.profile if count == 1 else None
                with profiling(daemons[0].pid, profile, workdir):
                    sustained = measure_sustained(client, name, backlog, receipts, roles, opts)
                latency = measure_latency(client, name, receipts, sustained.rate / 2, ours, opts)
                left = leftovers(client, name)
            exits = [d.returncode for d in daemons]
            report_phase(
                f"{count} process{'es' if count > 1 else ''}",
                sustained,
                latency,
                left,
                receipts.duplicates,
            )
            if any(exits):
                print(f"  daemon exit statuses after SIGTERM: {exits}")
            results.append((sustained, latency))
        print(f"load average after the run: {load_average()}")
        (one, lat_one), (two, lat_two) = results
        print_table(ceiling, one, two, lat_one, lat_two)
        logged = daemon_logs(workdir)
        print(f"\ndaemon log lines (warning and above): {len(logged)}")
        for line in logged[:10]:
            print(f"  {line[:300]}")
        if opts.profile is not None:
            print(f"\nprofile of the 1-process daemon during its sustained run ({opts.profile}):")
            print(hot_spots(opts.profile))


def parse_args(argv: Sequence[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=20_000, help="backlog per sustained run")
    parser.add_argument("--vendors", type=int, default=4, help="vendors, one endpoint each")
    parser.add_argument(
        "--endpoint-concurrency", type=int, default=16, help="delivery.endpoint_concurrency"
    )
    parser.add_argument(
        "--seconds", type=float, default=5.0, help="duration of the ceiling and of each latency run"
    )
    parser.add_argument(
        "--profile",
        type=Path,
        default=None,
        help="py-spy the 1-process daemon; raw stacks go to this file",
    )
    args = parser.parse_args(argv)
    if args.events < 2 or args.vendors < 1 or args.endpoint_concurrency < 1:
        parser.error("--events must be at least 2, --vendors and --endpoint-concurrency 1")
    profile = args.profile.resolve() if args.profile else None
    return Options(args.events, args.vendors, args.endpoint_concurrency, args.seconds, profile)


def main() -> None:
    options = parse_args()
    try:
        benchmark(options)
    except* KeyboardInterrupt:  # trio wraps it in a group when it lands in a nursery
        print("interrupted; everything the benchmark started is stopped", file=sys.stderr)
        raise SystemExit(130) from None


if __name__ == "__main__":
    main()
