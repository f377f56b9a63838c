"""Benchmark of the limiter service over loopback HTTP keep-alive, driven by wrk.

Run as ``.venv/bin/python bench/service.py`` (``--quick``, ``--seconds``,
``--endpoints``, ``--profile FILE``: py-spy on the Redis service in its last run at 64
connections, raw stacks to FILE; pick the endpoint with ``--endpoints``). It starts,
on free loopback ports and in processes of their own:

- a redis-server (never 6379), for the Redis store;
- ``ratelimiter serve`` twice: on the memory store and on that Redis;
- two ceilings (``bare_servers.py``): bare trio servers that read each request and
  answer a fixed 200, one parsing with h11 (the service's parser before httpserve), one
  with httptools (httpserve's);

and drives each with ``wrk`` (Debian's package; one thread) at 1, 16 and 64 keep-alive
connections: ``POST /v1/check`` with ``{"key": "bench:<i>"}`` over 64 keys; ``GET
/v1/auth`` in raw-key mode (``X-RateLimit-Key``, as a trusted gateway sends it) with an
nginx-style route; and, on Redis only (the memory store keeps no API keys), ``GET
/v1/auth`` with ``Authorization: Bearer mk_live_…``, 64 API keys of 64 vendors. The plan
is high enough that every hit is admitted (and counted), and ``service.redis_timeout``
is 1 s, so that no answer comes from the failure mode. Each figure is one run after a
one-second warm-up; at each concurrency the ceilings and the services run one after
another, so load from elsewhere falls on all of them alike.

Printed per run: decisions/s, wrk's p50 and p99 (ms), the rate as a multiple of the
bare h11 server's at the same concurrency, the server's CPU time per request (from
/proc: it moves far less with other load than the rates do) and wrk's errors. Then the
targets on Redis, PASS or MISS: every endpoint at 64 connections at least 1.5x the bare
h11 server's rate, and p99 under 3 ms at 16 connections.
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
from pathlib import Path

import trio

from hotspots import hot_spots, profiling
from processes import cpu_s, interpreter, load_average
from ratelimiter import AsyncLimiter, AsyncRedisBackend
from ratelimiter.keys import KeyStore
from webhookd.embedded import free_port, running_redis

WRK = shutil.which("wrk") or "/usr/bin/wrk"
RATELIMITER = str(Path(sys.executable).with_name("ratelimiter"))
BARE_SERVERS = str(Path(__file__).with_name("bare_servers.py"))
CONCURRENCY = (1, 16, 64)
KEYS = 64
PREFIX = "bench"
RATE_TARGET = 1.5  # times the bare h11 server's rate, at 64 connections
P99_TARGET_MS = 3.0  # at 16 connections
PLANS = """
[plans.bench]
limits = ["100000000/day", "1000000/minute"]
"""
# BENCH_ENDPOINT: check, auth (raw-key mode) or apikey; BENCH_KEYS: the API keys, comma-separated
WRK_SCRIPT = """
local requests = {}
local endpoint = os.getenv("BENCH_ENDPOINT")
local keys, count = {}, 0
for key in string.gmatch(os.getenv("BENCH_KEYS") or "", "[^,]+") do
  keys[count] = key
  count = count + 1
end
function init(args)
  for i = 0, 63 do
    local route = {["X-Original-Method"] = "GET",
                   ["X-Original-URI"] = "/api/v2/products?page=" .. i}
    if endpoint == "auth" then
      route["X-RateLimit-Key"] = "bench:" .. i
      requests[i] = wrk.format("GET", "/v1/auth", route, nil)
    elseif endpoint == "apikey" then
      route["Authorization"] = "Bearer " .. keys[i]
      requests[i] = wrk.format("GET", "/v1/auth", route, nil)
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
ENDPOINT_NAMES = {"check": "/v1/check", "auth": "/v1/auth raw key", "apikey": "/v1/auth API key"}


@dataclass(frozen=True, slots=True)
class Run:
    rate: float
    p50_ms: float
    p99_ms: float
    errors: int
    cpu_us: float  # server CPU per request


@dataclass(frozen=True, slots=True)
class Bench:
    script: Path
    seconds: int
    keys: str  # the API keys, comma-separated


def wrk(port: int, connections: int, seconds: int, endpoint: str, bench: Bench) -> Run:
    command = [WRK, "-t1", f"-c{connections}", f"-d{seconds}s", "-s", str(bench.script),
               f"http://127.0.0.1:{port}/"]  # fmt: skip
    env = {**os.environ, "BENCH_ENDPOINT": endpoint, "BENCH_KEYS": bench.keys}
    output = subprocess.run(command, capture_output=True, text=True, env=env, check=True).stdout
    match = re.search(r"RESULT (\d+) (\d+) (\d+) (\d+) (\d+)", output)
    if match is None:
        raise RuntimeError(f"wrk printed no result:\n{output}")
    requests, duration_us, p50, p99, errors = (int(group) for group in match.groups())
    return Run(requests / (duration_us / 1e6), p50 / 1000, p99 / 1000, errors, 0.0)


def measure(pid: int, port: int, connections: int, endpoint: str, bench: Bench) -> Run:
    wrk(port, connections, 1, endpoint, bench)  # warm-up: connections, scripts, caches
    before = cpu_s([pid])
    run = wrk(port, connections, bench.seconds, endpoint, bench)
    cpu_us = (cpu_s([pid]) - before) / max(run.rate * bench.seconds, 1) * 1e6
    return Run(run.rate, run.p50_ms, run.p99_ms, run.errors, cpu_us)


@contextlib.contextmanager
def process(command: list[str], port: int) -> Iterator[subprocess.Popen[bytes]]:
    """A server process, once it accepts connections; stopped on exit."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RATELIMITER_")}
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
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
    """Raw-key mode, so that /v1/auth can also be driven with X-RateLimit-Key."""
    config = directory / f"{name}.toml"
    config.write_text(
        f'[redis]\nurl = "{redis_url}"\nkey_prefix = "{PREFIX}"\n'
        f'[service]\nlisten = "127.0.0.1:{port}"\ndefault_plan = "bench"\n'
        f"redis_timeout = 1.0\ntrust_key_header = true\n"
        f'[plans]\nfile = "{directory / "plans.toml"}"\n[log]\nlevel = "warning"\n'
    )
    return [RATELIMITER, "--config", str(config), "serve"]


async def create_api_keys(redis_url: str, count: int) -> list[str]:
    """One API key for each of ``count`` vendors (on the default plan: no plan set)."""
    async with AsyncLimiter.from_url(redis_url, prefix=PREFIX) as limiter:
        assert isinstance(limiter.backend, AsyncRedisBackend)
        store = KeyStore(limiter.backend.client, prefix=PREFIX)
        return [(await store.create(f"v_{i}", None, now_s=time.time()))[0] for i in range(count)]


def bench(seconds: int, endpoints: list[str], profile: Path | None) -> None:
    """Start everything, measure, print each figure as it comes, then the verdicts."""
    with tempfile.TemporaryDirectory() as temp, contextlib.ExitStack() as stack:
        directory = Path(temp)
        (directory / "plans.toml").write_text(PLANS)
        script = directory / "bench.lua"
        script.write_text(WRK_SCRIPT)
        redis = stack.enter_context(running_redis(directory / "redis", persistent=False))
        keys = trio.run(create_api_keys, redis.url, KEYS) if "apikey" in endpoints else []
        run_bench = Bench(script, seconds, ",".join(keys))
        ports = {name: free_port() for name in ("h11", "httptools", "memory", "redis")}
        commands = {
            "h11": [sys.executable, BARE_SERVERS, "h11", str(ports["h11"])],
            "httptools": [sys.executable, BARE_SERVERS, "httptools", str(ports["httptools"])],
            "memory": service_command(directory, "memory", ports["memory"], "memory://"),
            "redis": service_command(directory, "redis", ports["redis"], redis.url),
        }
        pids = {name: stack.enter_context(process(command, ports[name])).pid
                for name, command in commands.items()}  # fmt: skip
        print(f"Python: {interpreter()}; load average before: {load_average():.2f}")
        print(f"{'server':<34}{'conns':>6}{'requests/s':>12}{'p50 ms':>9}{'p99 ms':>9}"
              f"{'x h11':>8}{'CPU us/req':>12}{'errors':>8}", flush=True)  # fmt: skip
        results: dict[tuple[str, int], Run] = {}

        def one(name: str, server: str, connections: int, endpoint: str) -> None:
            run = measure(pids[server], ports[server], connections, endpoint, run_bench)
            results[(name, connections)] = run
            print(row(name, connections, run, results[("bare h11", connections)]), flush=True)

        for connections in CONCURRENCY:
            for server in ("h11", "httptools"):
                one(f"bare {server}", server, connections, "check")
            for endpoint in endpoints:
                for store in ("memory", "redis"):
                    if endpoint != "apikey" or store == "redis":
                        watched = profile if (store, connections) == ("redis", 64) else None
                        with profiling(pids[store], watched, directory):
                            one(
                                f"{ENDPOINT_NAMES[endpoint]} on {store}",
                                store,
                                connections,
                                endpoint,
                            )
        print(f"load average after: {load_average():.2f}")
        print("\n".join(targets(results, endpoints)))
        if profile is not None:
            print(f"\nprofile of the Redis service at 64 connections ({profile}):")
            print(hot_spots(profile, own_package="ratelimiter"))


def row(name: str, connections: int, run: Run, h11: Run) -> str:
    times = run.rate / h11.rate if h11.rate else 0.0
    return (f"{name:<34}{connections:>6}{run.rate:>12,.0f}{run.p50_ms:>9.2f}{run.p99_ms:>9.2f}"
            f"{times:>8.2f}{run.cpu_us:>12.0f}{run.errors:>8}")  # fmt: skip


def targets(results: dict[tuple[str, int], Run], endpoints: list[str]) -> list[str]:
    lines = [f"targets on Redis: at 64 connections {RATE_TARGET}x the bare h11 server's rate; "
             f"p99 under {P99_TARGET_MS:g} ms at 16 connections"]  # fmt: skip
    h11 = results[("bare h11", 64)]
    for endpoint in endpoints:
        name = f"{ENDPOINT_NAMES[endpoint]} on redis"
        busy, moderate = results[(name, 64)], results[(name, 16)]
        checks = [
            (f"{busy.rate / h11.rate:.2f}x h11 at 64", busy.rate >= RATE_TARGET * h11.rate),
            (f"p99 {moderate.p99_ms:.2f} ms at 16", moderate.p99_ms < P99_TARGET_MS),
            (f"{busy.errors + moderate.errors} errors", busy.errors + moderate.errors == 0),
        ]
        verdict = "  ".join(f"{text} {'PASS' if ok else 'MISS'}" for text, ok in checks)
        lines.append(f"  {ENDPOINT_NAMES[endpoint]:<18} {verdict}")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    quick = "1 s runs: checks that the script works, in under a minute"
    parser.add_argument("--quick", action="store_true", help=quick)
    parser.add_argument("--seconds", type=int, default=None, help="length of each run (5)")
    which = "any of check, auth (raw-key mode), apikey, comma-separated"
    parser.add_argument("--endpoints", default="check,auth,apikey", help=which)
    watch = "py-spy the Redis service at 64 connections; raw stacks go to this file"
    parser.add_argument("--profile", type=Path, default=None, help=watch)
    args = parser.parse_args()
    seconds = args.seconds if args.seconds is not None else 1 if args.quick else 5
    endpoints = [name for name in args.endpoints.split(",") if name]
    unknown = set(endpoints) - set(ENDPOINT_NAMES)
    if unknown:
        parser.error(f"unknown endpoints: {', '.join(sorted(unknown))}")
    if shutil.which("wrk") is None and not Path(WRK).exists():
        parser.error("wrk is missing: apt-get install wrk (scripts/test installs it)")
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    print(f"ratelimiter service benchmark: wrk -t1, {seconds} s per run, {KEYS} keys")
    bench(seconds, endpoints, args.profile.resolve() if args.profile else None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
