"""Benchmark of the limiter service over loopback HTTP keep-alive, driven by wrk.

Run as ``.venv/bin/python bench/service.py`` (``--seconds``, ``--endpoints``). It
starts, on free loopback ports and in processes of their own:

- a redis-server (never 6379), for the Redis backend;
- ``ratelimiter serve`` twice: on the memory store and on that Redis;
- the ceiling: a bare h11-on-trio server (this script with ``--ceiling PORT``) that
  reads each request and answers a fixed 200, the least any h11-on-trio server does;

and drives each with ``wrk`` (Debian's package, ``/usr/bin/wrk``; one thread) at 1,
16 and 64 keep-alive connections: ``POST /v1/check`` with ``{"key": "bench:<i>"}``
over 64 keys, and ``GET /v1/auth`` with ``X-RateLimit-Key`` and an nginx-style route.
The plan is high enough that every hit is admitted (and counted), and
``service.redis_timeout`` is 1 s, so that no answer comes from the failure mode. Each
figure is one run of ``--seconds`` after a one-second warm-up; at each concurrency the
ceiling and the services run one after another, so load from elsewhere falls on all of
them alike.

Printed per run: decisions/s, p50 and p99 latency (wrk's, in ms), the ratio to the
ceiling at the same concurrency, and the server's CPU time per request (from /proc:
it moves far less with other load than the rates do). The targets of the issue are
checked at concurrency 64 on Redis: 3,000 decisions/s, 60 % of the ceiling, p99
under 20 ms. The machines have 2 cores shared by wrk, the server and redis-server:
run it more than once and on an idle machine.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import h11
import trio

from webhookd.embedded import free_port, running_redis

WRK = shutil.which("wrk") or "/usr/bin/wrk"
RATELIMITER = str(Path(sys.executable).with_name("ratelimiter"))
CONCURRENCY = (1, 16, 64)
PLANS = """
[plans.bench]
limits = ["100000000/day", "1000000/minute"]
"""
WRK_SCRIPT = """
local requests = {}
local endpoint = os.getenv("BENCH_ENDPOINT")
function init(args)
  for i = 0, 63 do
    if endpoint == "auth" then
      requests[i] = wrk.format("GET", "/v1/auth", {
        ["X-RateLimit-Key"] = "bench:" .. i,
        ["X-Original-Method"] = "GET",
        ["X-Original-URI"] = "/api/v2/products?page=" .. i}, nil)
    else
      requests[i] = wrk.format("POST", "/v1/check", {["Content-Type"] = "application/json"},
        '{"key":"bench:' .. i .. '"}')
    end
  end
end
local n = 0
function request()
  n = (n + 1) % 64
  return requests[n]
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT %d %d %d %d %d\\n", summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.status + e.timeout))
end
"""


@dataclass(frozen=True, slots=True)
class Run:
    rate: float
    p50_ms: float
    p99_ms: float
    errors: int
    cpu_us: float  # server CPU per request


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wrk(port: int, connections: int, seconds: int, endpoint: str, script: Path) -> Run:
    command = [WRK, "-t1", f"-c{connections}", f"-d{seconds}s", "-s", str(script),
               f"http://127.0.0.1:{port}/"]  # fmt: skip
    env = {**os.environ, "BENCH_ENDPOINT": endpoint}
    output = subprocess.run(command, capture_output=True, text=True, env=env, check=True).stdout
    match = re.search(r"RESULT (\d+) (\d+) (\d+) (\d+) (\d+)", output)
    if match is None:
        raise RuntimeError(f"wrk printed no result:\n{output}")
    requests, duration_us, p50, p99, errors = (int(group) for group in match.groups())
    return Run(requests / (duration_us / 1e6), p50 / 1000, p99 / 1000, errors, 0.0)


def measure(pid: int, port: int, connections: int, seconds: int, endpoint: str,
            script: Path) -> Run:  # fmt: skip
    wrk(port, connections, 1, endpoint, script)  # warm-up: connections, scripts, caches
    before = cpu_s(pid)
    run = wrk(port, connections, seconds, endpoint, script)
    cpu_us = (cpu_s(pid) - before) / max(run.rate * seconds, 1) * 1e6
    return Run(run.rate, run.p50_ms, run.p99_ms, run.errors, cpu_us)


@contextlib.contextmanager
def process(command: list[str], port: int) -> Iterator[subprocess.Popen[bytes]]:
    """A server process, once it accepts connections; stopped on exit."""
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 15
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                break
            if child.poll() is not None or time.monotonic() > deadline:
                stderr = child.stderr.read().decode() if child.stderr else ""
                raise RuntimeError(f"{command[0]} did not start:\n{stderr}")
            time.sleep(0.05)
        yield child
    finally:
        child.send_signal(signal.SIGTERM)
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def service_command(directory: Path, name: str, port: int, redis_url: str) -> list[str]:
    """Raw-key mode: /v1/auth is driven with X-RateLimit-Key, as a trusted gateway sends."""
    config = directory / f"{name}.toml"
    config.write_text(
        f'[redis]\nurl = "{redis_url}"\nkey_prefix = "bench"\n'
        f'[service]\nlisten = "127.0.0.1:{port}"\ndefault_plan = "bench"\n'
        f"redis_timeout = 1.0\ntrust_key_header = true\n"
        f'[plans]\nfile = "{directory / "plans.toml"}"\n[log]\nlevel = "warning"\n'
    )
    return [RATELIMITER, "serve", "--config", str(config)]


def bench(seconds: int, endpoints: list[str]) -> None:
    """Start everything, measure, print each figure as it comes, then the verdicts."""
    with tempfile.TemporaryDirectory() as temp, contextlib.ExitStack() as stack:
        directory = Path(temp)
        (directory / "plans.toml").write_text(PLANS)
        script = directory / "bench.lua"
        script.write_text(WRK_SCRIPT)
        redis = stack.enter_context(running_redis(directory / "redis", persistent=False))
        ports = {name: free_port() for name in ("ceiling", "memory", "redis")}
        commands = {
            "ceiling": [sys.executable, __file__, "--ceiling", str(ports["ceiling"])],
            "memory": service_command(directory, "memory", ports["memory"], "memory://"),
            "redis": service_command(directory, "redis", ports["redis"], redis.url),
        }
        pids = {name: stack.enter_context(process(command, ports[name])).pid
                for name, command in commands.items()}  # fmt: skip
        print(f"load average before: {os.getloadavg()[0]:.2f}")
        print(f"{'server':<26}{'conns':>6}{'decisions/s':>13}{'p50 ms':>9}{'p99 ms':>9}"
              f"{'of ceiling':>12}{'CPU us/req':>12}{'errors':>8}", flush=True)  # fmt: skip
        results: dict[tuple[str, int], Run] = {}
        for connections in CONCURRENCY:
            ceiling = measure(pids["ceiling"], ports["ceiling"], connections, seconds,
                              "check", script)  # fmt: skip
            results[("ceiling", connections)] = ceiling
            print(row("bare h11 ceiling", connections, ceiling, ceiling), flush=True)
            for endpoint in endpoints:
                for name in ("memory", "redis"):
                    run = measure(pids[name], ports[name], connections, seconds, endpoint, script)
                    results[(f"{endpoint}/{name}", connections)] = run
                    print(row(f"/v1/{endpoint} on {name}", connections, run, ceiling), flush=True)
        print(f"load average after: {os.getloadavg()[0]:.2f}")
        print("\n".join(targets(results, endpoints)))


def row(name: str, connections: int, run: Run, ceiling: Run) -> str:
    share = run.rate / ceiling.rate if ceiling.rate else 0.0
    return (f"{name:<26}{connections:>6}{run.rate:>13,.0f}{run.p50_ms:>9.2f}{run.p99_ms:>9.2f}"
            f"{share:>12.0%}{run.cpu_us:>12.0f}{run.errors:>8}")  # fmt: skip


def targets(results: dict[tuple[str, int], Run], endpoints: list[str]) -> list[str]:
    lines = ["targets at 64 connections on Redis (3,000/s, 60 % of the ceiling, p99 < 20 ms):"]
    ceiling = results[("ceiling", 64)]
    for endpoint in endpoints:
        run = results[(f"{endpoint}/redis", 64)]
        checks = [
            (f"{run.rate:,.0f}/s", run.rate >= 3000),
            (f"{run.rate / ceiling.rate:.0%} of the ceiling", run.rate >= 0.6 * ceiling.rate),
            (f"p99 {run.p99_ms:.1f} ms", run.p99_ms < 20),
            (f"{run.errors} errors", run.errors == 0),
        ]  # fmt: skip
        verdict = "  ".join(f"{text} {'PASS' if ok else 'MISS'}" for text, ok in checks)
        lines.append(f"  /v1/{endpoint}: {verdict}")
    return lines


# --- the ceiling: a bare h11-on-trio server ----------------------------------------------

CEILING_BODY = b'{"allowed":true}'
CEILING_HEADERS = [("content-type", "application/json"), ("content-length", str(len(CEILING_BODY)))]


async def ceiling_connection(stream: trio.SocketStream) -> None:
    conn = h11.Connection(h11.SERVER)
    with contextlib.suppress(trio.BrokenResourceError, h11.ProtocolError):
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await stream.receive_some(65536)
                if not data:
                    return
                conn.receive_data(data)
            elif isinstance(event, h11.EndOfMessage):
                response = conn.send(h11.Response(status_code=200, headers=CEILING_HEADERS))
                body = conn.send(h11.Data(data=CEILING_BODY))
                end = conn.send(h11.EndOfMessage())
                await stream.send_all((response or b"") + (body or b"") + (end or b""))
                if conn.our_state is not h11.DONE:
                    return
                conn.start_next_cycle()
            elif isinstance(event, h11.ConnectionClosed):
                return


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=5, help="length of each run")
    parser.add_argument("--endpoints", default="check,auth", help="check, auth or both")
    parser.add_argument("--ceiling", type=int, help=argparse.SUPPRESS)  # the ceiling server
    args = parser.parse_args()
    if args.ceiling:
        trio.run(partial(trio.serve_tcp, ceiling_connection, args.ceiling, host="127.0.0.1"))
        return 0
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    endpoints = [name for name in args.endpoints.split(",") if name]
    print(f"ratelimiter service benchmark: wrk -t1, {args.seconds:g} s per run, 64 keys")
    bench(args.seconds, endpoints)
    return 0


if __name__ == "__main__":
    sys.exit(main())
