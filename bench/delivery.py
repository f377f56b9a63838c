"""Delivery benchmark: how close webhookd gets to what the HTTP layer alone can do.

Everything runs on loopback and is started here: a redis-server of its own, an nginx
sink answering 200 to every POST over plain HTTP and over HTTPS (TLS 1.3, a test CA),
and ``webhookd run`` subprocesses. For each of the two schemes, in one run:

- baselines: a bare h11-on-trio client, and a bare client that renders the request
  head once and parses responses with httptools (the Python limit), both POSTing the
  same bodies at the same concurrency;
- sustained deliveries/s of one daemon process and of two, over a pre-published
  backlog, first receipt to last, with the daemons' CPU per delivery;
- end-to-end latency, XADD to nginx receipt, with events published at half the
  sustained rate;
- Redis's cost per delivery (commands, round trips, bytes) in both daemon phases;
- the quota check's cost: one daemon over plain HTTP drains the same backlog without
  quotas and then with them on, at limits high enough never to refuse.

Latency needs no clock of its own: the daemon's ``X-Event-ID`` is ``evt_<ms>-<seq>``,
the ms part being Redis's XADD time, and nginx logs ``$msec`` when the request is
done. The rates move with whatever else runs on the machine, so each phase also
reports CPU time per delivery by process, and how much CPU everything else took.
Run ``.venv/bin/python bench/delivery.py --help`` for the knobs; bench/README.md
says how to read the output.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import redis

from clients import CLIENTS, ClientRun, measure_client
from daemons import (
    GROUP,
    configure_daemon,
    daemon_logs,
    leftovers,
    prepare_backlog,
    run_daemons,
    wait_acked,
    wait_until_reading,
)
from hotspots import hot_spots, profiling
from nginx import Receipts, Sink, start_nginx
from processes import OtherLoad, cpu_per_item, cpu_s, interpreter, load_average
from redis_cost import RedisCost, RedisMeter, Traffic
from report import (
    DaemonRun,
    Latency,
    QuotaRun,
    Report,
    SchemeResults,
    Sustained,
    print_client,
    print_daemon_run,
    print_quota_run,
    print_redis_table,
    print_table,
    run_and_write,
    scheme_title,
    targets,
)
from webhookd.embedded import running_redis
from workload import DATA_BYTES, percentile, publish, sample_body, xadd_ms

SCHEMES = ("http", "https")
PROCESS_COUNTS = (1, 2)
QUOTA_ROUNDS = 2


def quota_runs(rounds: int) -> tuple[str, ...]:
    return tuple(f"quotas-{side}-{i}" for i in range(rounds) for side in ("off", "on"))


OPS_STREAM = "webhookd:ops"  # the daemons' default: quota.exceeded would land here
BENCH_PLANS = """\
[plans.bench]
limits = ["100000000/day"]
webhooks_per_day = 100000000
"""
QUOTA_CONF = """
[quotas]
vendor_rate = "10000000/minute"
default_plan = "bench"
plans = "{plans}"
limiter_prefix = "{name}:rl"
"""


@dataclass(frozen=True, slots=True)
class Options:
    events: int
    vendors: int
    endpoint_concurrency: int
    seconds: float
    profile: Path | None
    json_path: Path | None
    quota_rounds: int = QUOTA_ROUNDS

    @property
    def concurrency(self) -> int:
        return self.vendors * self.endpoint_concurrency


@dataclass(frozen=True, slots=True)
class Rig:
    """What every phase runs against: started once, stopped at the end."""

    workdir: Path
    redis_url: str
    redis_pid: int
    client: redis.Redis
    sink: Sink
    meter: RedisMeter


def measure_sustained(
    rig: Rig,
    name: str,
    backlog: list[str],
    publish_cost: Traffic,
    receipts: Receipts,
    roles: dict[str, list[int]],
    opts: Options,
) -> tuple[Sustained, RedisCost]:
    """Release the backlog to every daemon at once and time its delivery.

    The group is rewound to the start, and the last event's XADD wakes every blocked
    daemon at the same moment: a rewind alone wakes nobody.
    """
    stream = f"{name}:events"
    before = {role: cpu_s(pids) for role, pids in roles.items()}
    others = OtherLoad([pid for pids in roles.values() for pid in pids])
    rig.meter.start()
    rig.client.xgroup_setid(stream, GROUP, "0")
    ids = backlog + publish(rig.client, stream, range(opts.events - 1, opts.events), opts.vendors)
    missing = receipts.wait_for(ids)
    polls = wait_acked(rig.client, name)
    after = {role: cpu_s(pids) for role, pids in roles.items()}
    others_cores = others.cores()
    delivered = len(ids) - len(missing)
    ours = publish_cost + Traffic({"xgroup|setid": 1, "xpending": polls}, 0, 0)
    redis_cost = rig.meter.cost(delivered, ours)
    times = sorted(receipts.at_ms[i] for i in ids if i in receipts.at_ms)
    span_s = (times[-1] - times[0]) / 1000 if len(times) > 1 else 0.0
    rate = (len(times) - 1) / span_s if span_s > 0 else 0.0
    # Busy share from the gate (the last XADD) to the last receipt; all sit idle after it.
    wall_s = max(1e-3, (times[-1] - xadd_ms(ids[-1])) / 1000) if times else 1e-3
    share = {role: (after[role] - before[role]) / wall_s for role in roles}
    share["everything else"] = others_cores
    cpu_us = cpu_per_item(before, after, delivered)
    return Sustained(delivered, rate, span_s, cpu_us, share), redis_cost


def measure_latency(
    rig: Rig,
    name: str,
    publish_cost: Traffic,
    receipts: Receipts,
    rate: float,
    ours: Sequence[int],
    opts: Options,
) -> tuple[Latency, RedisCost]:
    """Publish at ``rate`` events/s in 10 ms ticks for ``opts.seconds``; XADD to receipt."""
    stream = f"{name}:events"
    others = OtherLoad(ours)
    rig.meter.start()
    first = opts.events
    sent = 0
    ids: list[str] = []
    started = time.monotonic()
    while (elapsed := time.monotonic() - started) < opts.seconds:
        due = int(rate * elapsed) + 1
        ids += publish(rig.client, stream, range(first + sent, first + due), opts.vendors)
        sent = due
        time.sleep(max(0.0, 0.01 - (time.monotonic() - started - elapsed)))
    others_cores = others.cores()
    missing = set(receipts.wait_for(ids))
    polls = wait_acked(rig.client, name)
    latencies = sorted(receipts.at_ms[i] - xadd_ms(i) for i in ids if i not in missing)
    mine = publish_cost.times(len(ids)) + Traffic({"xpending": polls}, 0, 0)
    latency = Latency(
        offered_rate=len(ids) / opts.seconds,
        published=len(ids),
        delivered=len(latencies),
        p50_ms=percentile(latencies, 0.50),
        p99_ms=percentile(latencies, 0.99),
        max_ms=percentile(latencies, 1.0),
        others=others_cores,
    )
    return latency, rig.meter.cost(len(latencies), mine)


def run_webhookd(rig: Rig, scheme: str, count: int, opts: Options) -> DaemonRun:
    """One daemon configuration: its sustained run, then its latency run, then checks."""
    name = f"{scheme}-{count}"
    receipts = Receipts(rig.workdir / f"{name}.log")
    config = configure_daemon(
        rig.workdir, name, rig.redis_url, rig.sink, scheme, opts.vendors, opts.endpoint_concurrency
    )
    rig.meter.start()
    backlog = prepare_backlog(rig.client, name, opts.events, opts.vendors)
    publishing = rig.meter.used() - Traffic({"xgroup|create": 1}, 0, 0)
    publish_cost = publishing.times(1 / len(backlog))
    with contextlib.ExitStack() as phase:
        daemons = run_daemons(phase, config, count, rig.workdir)
        wait_until_reading(rig.client, daemons, rig.workdir)
        roles = {
            "daemon": [d.pid for d in daemons],
            "redis-server": [rig.redis_pid],
            "nginx": rig.sink.workers,
        }
        ours = [pid for pids in roles.values() for pid in pids]
        profile = opts.profile if (scheme, count) == ("http", 1) else None
        with profiling(daemons[0].pid, profile, rig.workdir):
            sustained, redis_backlog = measure_sustained(
                rig, name, backlog, publish_cost, receipts, roles, opts
            )
        latency, redis_half = measure_latency(
            rig, name, publish_cost, receipts, sustained.rate / 2, ours, opts
        )
        left = leftovers(rig.client, name)
    lost = (opts.events - sustained.delivered) + (latency.published - latency.delivered)
    return DaemonRun(
        scheme=scheme,
        processes=count,
        sustained=sustained,
        latency=latency,
        publish=publish_cost,
        redis_backlog=redis_backlog,
        redis_half_load=redis_half,
        lost=lost,
        duplicates=receipts.duplicates,
        left=left,
        exit_statuses=[d.returncode for d in daemons],
    )


def run_quota_check(rig: Rig, opts: Options) -> QuotaRun:
    """The same backlog drained by one daemon without quotas, then by one with them on
    (every vendor on a plan and a rate that never refuse), in alternating rounds."""
    plans = rig.workdir / "bench-plans.toml"
    plans.write_text(BENCH_PLANS)
    runs: dict[str, Sustained] = {}
    clean = True
    for name in quota_runs(opts.quota_rounds):
        extra = QUOTA_CONF.format(plans=plans, name=name) if "-on-" in name else ""
        receipts = Receipts(rig.workdir / f"{name}.log")
        config = configure_daemon(rig.workdir, name, rig.redis_url, rig.sink, "http",
                                  opts.vendors, opts.endpoint_concurrency, extra)  # fmt: skip
        rig.meter.start()
        backlog = prepare_backlog(rig.client, name, opts.events, opts.vendors)
        publishing = rig.meter.used() - Traffic({"xgroup|create": 1}, 0, 0)
        with contextlib.ExitStack() as phase:
            daemons = run_daemons(phase, config, 1, rig.workdir)
            wait_until_reading(rig.client, daemons, rig.workdir)
            roles = {"daemon": [d.pid for d in daemons], "redis-server": [rig.redis_pid],
                     "nginx": rig.sink.workers}  # fmt: skip
            runs[name], _ = measure_sustained(rig, name, backlog,
                                              publishing.times(1 / len(backlog)), receipts,
                                              roles, opts)  # fmt: skip
            left = leftovers(rig.client, name)
        clean = clean and runs[name].delivered == opts.events and not receipts.duplicates
        clean = clean and not any(left.values())
    clean = clean and not rig.client.xlen(OPS_STREAM)  # no quota.exceeded: nothing refused
    return QuotaRun([run for n, run in runs.items() if "-off-" in n],
                    [run for n, run in runs.items() if "-on-" in n], clean)  # fmt: skip


def print_header(opts: Options, sink: Sink) -> None:
    print(
        f"webhookd delivery benchmark: {os.cpu_count()} CPUs, shared by nginx (1 worker), "
        f"redis-server, the daemons and this script"
    )
    body = sample_body()
    print(f"  {opts.events:,} events per run, data {DATA_BYTES} B (POST body ~{len(body):,} B)")
    print(
        f"  layout: {opts.vendors} vendors x 1 endpoint, endpoint_concurrency "
        f"{opts.endpoint_concurrency}: at most {opts.concurrency} requests in flight; "
        f"the bare clients use {opts.concurrency} keep-alive connections"
    )
    print(
        f"  nginx: plain HTTP on 127.0.0.1:{sink.port}, HTTPS on 127.0.0.1:{sink.tls_port} "
        "(TLS 1.3 only, certificate from a test CA the endpoints trust)"
    )
    print(
        '  daemon config: log.level = "warning", delivery.require_https = true over HTTPS '
        "(false over plain HTTP), delivery.allow_private_targets = true, secrets.key set, "
        "the rest at defaults"
    )
    print(f"  Python: {interpreter()}")
    print(f"  load average before the run: {load_average():.2f} (other work skews every figure)")


def benchmark(opts: Options) -> Report:
    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-")))
        server = stack.enter_context(running_redis(workdir / "redis", persistent=False))
        client = stack.enter_context(redis.Redis.from_url(server.url, decode_responses=True))
        names = [f"{scheme}-{count}" for scheme in SCHEMES for count in PROCESS_COUNTS]
        names += quota_runs(opts.quota_rounds)
        sink = start_nginx(stack, workdir, [*CLIENTS, *names])
        rig = Rig(workdir, server.url, server.process.pid, client, sink, RedisMeter(client))
        load_before = load_average()
        print_header(opts, sink)
        results = []
        for scheme in SCHEMES:
            print(f"\n{scheme_title(scheme)}")
            clients: dict[str, ClientRun] = {}
            for kind in CLIENTS:
                run = measure_client(kind, sink, scheme, opts.concurrency, opts.seconds)
                print_client(run, clients.get("h11"))
                clients[kind] = run
            daemons = []
            for count in PROCESS_COUNTS:
                daemons.append(run_webhookd(rig, scheme, count, opts))
                print_daemon_run(daemons[-1])
            results.append(SchemeResults(scheme, clients, daemons))
        print()
        quotas = run_quota_check(rig, opts)
        print_quota_run(quotas)
        load_after = load_average()
        print(f"\nload average after the run: {load_after:.2f}")
        options = {key: getattr(opts, key) for key in Options.__slots__}
        report = Report(
            options,
            os.cpu_count() or 0,
            load_before,
            load_after,
            results,
            [*(target for scheme in results for target in targets(scheme)), quotas.target()],
            quotas,
        )
        print_table(report)
        print_redis_table(report)
        logged = daemon_logs(workdir)
        print(f"\ndaemon log lines (warning and above): {len(logged)}")
        for line in logged[:10]:
            print(f"  {line[:300]}")
        if opts.profile is not None:
            print(f"\nprofile of the 1-process daemon during its sustained run ({opts.profile}):")
            print(hot_spots(opts.profile))
        return report


def parse_args(argv: Sequence[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="short phases (2,000 events, 1 s) for a smoke test; --events and --seconds win",
    )
    parser.add_argument("--events", type=int, help="backlog per sustained run (20,000)")
    parser.add_argument("--vendors", type=int, default=4, help="vendors, one endpoint each")
    parser.add_argument(
        "--endpoint-concurrency", type=int, default=16, help="delivery.endpoint_concurrency"
    )
    parser.add_argument(
        "--seconds", type=float, help="duration of each bare client and latency run (5)"
    )
    parser.add_argument(
        "--profile",
        type=Path,
        default=None,
        help="py-spy the 1-process daemon over plain HTTP; raw stacks go to this file",
    )
    parser.add_argument("--json", type=Path, default=None, help="also write every figure here")
    parser.add_argument("--quota-rounds", type=int, default=QUOTA_ROUNDS,
                        help="alternating rounds of the quota check, each off then on")  # fmt: skip
    args = parser.parse_args(argv)
    events = args.events if args.events is not None else 2_000 if args.quick else 20_000
    seconds = args.seconds if args.seconds is not None else 1.0 if args.quick else 5.0
    if events < 2 or args.vendors < 1 or args.endpoint_concurrency < 1:
        parser.error("--events must be at least 2, --vendors and --endpoint-concurrency 1")
    profile = args.profile.resolve() if args.profile else None
    json_path = args.json.resolve() if args.json else None
    if args.quota_rounds < 1:
        parser.error("--quota-rounds must be at least 1")
    return Options(events, args.vendors, args.endpoint_concurrency, seconds, profile, json_path,
                   args.quota_rounds)  # fmt: skip


def main() -> None:
    options = parse_args()
    run_and_write(lambda: benchmark(options), options.json_path)


if __name__ == "__main__":
    main()
