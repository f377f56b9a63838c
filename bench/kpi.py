"""KPI benchmark: the platform's promises, measured under sustained load with failing receivers.

The promises: 99.5 % of webhooks delivered within the 5 retries, p95 event-to-vendor
latency under 2 s, 50,000 webhooks a minute sustained. Everything runs on loopback
and is started here: a redis-server of its own, the vendors' receivers
(bench/kpi_receiver.py, one process: 5 % of answers are 500 at random, a few endpoints
answer after 300-800 ms) and ``webhookd run`` processes with the contract's retry
schedule. This process publishes at a steady rate, in small pipelined XADD batches.

- ``--mode sustain`` (the default): ``--rate`` webhooks/minute for ``--minutes`` after
  a warm-up, then up to ``--drain-seconds`` for the retries to land; prints the share
  delivered, latency percentiles, deliveries/minute, the daemons' memory, and each
  promise PASS or MISS.
- ``--mode headroom``: one daemon, then two, on a ladder of rates (``--rate``, then
  ``--step-factor`` times more each ``--step-seconds`` step) until a step misses the
  share or the p95; prints the last rate that passed for each, over the promise.

Latency is the receiver's arrival time of an event's first 200 minus its XADD time,
which Redis put into the entry id and the daemon sends as ``X-Event-ID``
(``evt_<ms>-<seq>``). bench/README.md says how to read the output.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import redis

from daemons import daemon_logs
from kpi_figures import delivery, last_passing, rate_ladder, targets
from kpi_load import Deployment, Published, Rig, deploy, drain, publish_paced, start_receivers
from kpi_report import (
    Ladder,
    Phase,
    memory,
    print_ladders,
    print_memory,
    print_phase,
    print_targets,
    step_summary,
)
from processes import OtherLoad, cpu_s, load_average, rss_bytes
from report import run_and_write
from webhookd.embedded import running_redis
from workload import xadd_ms


@dataclass(frozen=True, slots=True)
class Options:
    mode: str
    rate_per_min: float
    minutes: float
    daemons: int
    vendors: int
    slow: int
    fail_share: float
    warmup_s: float
    drain_s: float
    step_seconds: float
    step_factor: float
    max_steps: int
    seed: int
    json_path: Path | None


def measure(
    rig: Rig,
    deployment: Deployment,
    rate_per_min: float,
    seconds: float,
    first_seq: int,
    opts: Options,
    each_second: Callable[[], None] = lambda: None,
) -> tuple[Phase, Published]:
    """One phase: publish at the rate, let the retries drain, and work out the figures.

    CPU is counted while publishing only: the drain is mostly idle waiting for retries.
    """
    roles = {"daemons": deployment.pids, "redis-server": [rig.redis_pid],
             "receiver": [rig.receivers.pid]}  # fmt: skip
    before = {role: cpu_s(pids) for role, pids in roles.items()}
    mine = time.process_time()
    others = OtherLoad([pid for pids in roles.values() for pid in pids])
    started = time.monotonic()
    published = publish_paced(rig.client, deployment.stream, rate_per_min / 60, seconds,
                              first_seq, opts.vendors, each_second)  # fmt: skip
    wall_s = time.monotonic() - started
    cores = {role: (cpu_s(pids) - before[role]) / wall_s for role, pids in roles.items()}
    cores["publisher"] = (time.process_time() - mine) / wall_s
    cores["everything else"] = others.cores()
    drain_s = drain(rig.client, deployment, published.ids, opts.drain_s)
    figures = delivery(
        {event_id: xadd_ms(event_id) for event_id in published.ids},
        deployment.ok.at_ms,
        (published.start_ms, published.end_ms),
        deployment.ok.duplicates,
        len(deployment.failed.at_ms) + deployment.failed.duplicates,
    )
    count = len(deployment.pids)
    return Phase(deployment.name, count, rate_per_min, figures, cores, drain_s), published


def rss_of(pids: Sequence[int]) -> list[int]:
    return [rss_bytes(pid) for pid in pids]


def sustain(stack: contextlib.ExitStack, rig: Rig, opts: Options) -> dict[str, object]:
    """The rate for the minutes asked, after a warm-up at the same rate."""
    deployment = deploy(stack, rig, "sustain", opts.daemons, opts.vendors)
    rate_per_s = opts.rate_per_min / 60
    warm = publish_paced(rig.client, deployment.stream, rate_per_s, opts.warmup_s, 0,
                         opts.vendors)  # fmt: skip
    start = rss_of(deployment.pids)
    peak = list(start)

    def sample() -> None:
        peak[:] = [max(a, b) for a, b in zip(peak, rss_of(deployment.pids), strict=True)]

    phase, _ = measure(rig, deployment, opts.rate_per_min, opts.minutes * 60, len(warm.ids),
                       opts, sample)  # fmt: skip
    found = memory(start, peak, rss_of(deployment.pids))
    print_phase(phase)
    print_memory(found)
    met = targets(phase.figures, opts.rate_per_min)
    print_targets(met)
    return {"phase": phase, "memory": found, "targets": met}


def climb(rig: Rig, count: int, opts: Options) -> Ladder:
    """One ladder of rates on ``count`` fresh daemons, up to the first miss."""
    steps: list[Phase] = []
    stopped_by, limit_found = f"no miss in {opts.max_steps} steps", False
    rates = rate_ladder(opts.rate_per_min, opts.step_factor, opts.max_steps)
    with contextlib.ExitStack() as stack:
        deployment = deploy(stack, rig, f"headroom-{count}", count, opts.vendors)
        warm = publish_paced(rig.client, deployment.stream, rates[0] / 60, opts.warmup_s, 0,
                             opts.vendors)  # fmt: skip
        seq = len(warm.ids)
        for rate in rates:
            phase, published = measure(rig, deployment, rate, opts.step_seconds, seq, opts)
            seq += len(published.ids)
            steps.append(phase)
            print(f"  {rate:,.0f}/min asked: {step_summary(phase)}")
            if not phase.figures.offered_all(rate):
                stopped_by = "the publisher fell short of the rate (the machine is the limit)"
                limit_found = True
                break
            if not phase.figures.passes:
                stopped_by, limit_found = "a miss", True
                break
    best = last_passing([(phase.asked_per_min, phase.figures) for phase in steps])
    return Ladder(count, steps, best, stopped_by, limit_found)


def headroom(rig: Rig, opts: Options) -> dict[str, object]:
    """The ladder for one daemon, then for two, each on daemons of its own."""
    ladders = []
    for count in (1, 2):
        print(f"{count} daemon{'s' if count > 1 else ''}, {opts.step_seconds:.0f} s a step:")
        ladders.append(climb(rig, count, opts))
    print_ladders(ladders)
    return {"ladders": ladders}


def print_header(opts: Options) -> None:
    print(
        f"webhookd KPI benchmark ({opts.mode}): {os.cpu_count()} CPUs, shared by the daemons, "
        "redis-server, the receivers and this publisher"
    )
    print(
        f"  {opts.vendors} vendors x 1 endpoint on loopback; {opts.fail_share:.0%} of answers 500 "
        f"at random; {opts.slow} endpoints answer after 300-800 ms; retries [1, 2, 4, 8, 16] s"
    )
    if opts.mode == "sustain":
        print(
            f"  {opts.rate_per_min:,.0f} webhooks/min ({opts.rate_per_min / 60:,.1f}/s) for "
            f"{opts.minutes * 60:,.0f} s after {opts.warmup_s:.0f} s of warm-up, "
            f"{opts.daemons} daemon(s); drain up to {opts.drain_s:.0f} s"
        )
    else:
        print(
            f"  from {opts.rate_per_min:,.0f}/min, x{opts.step_factor} a step, "
            f"{opts.step_seconds:.0f} s each, at most {opts.max_steps} steps"
        )
    print(f"  load average before the run: {load_average():.2f} (other work skews every figure)")


def benchmark(opts: Options) -> dict[str, object]:
    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="kpi-")))
        server = stack.enter_context(running_redis(workdir / "redis", persistent=False))
        client = stack.enter_context(redis.Redis.from_url(server.url, decode_responses=True))
        receivers = start_receivers(stack, workdir, opts.fail_share, opts.slow, opts.seed)
        rig = Rig(workdir, server.url, server.process.pid, client, receivers)
        load_before = load_average()
        print_header(opts)
        print()
        found = sustain(stack, rig, opts) if opts.mode == "sustain" else headroom(rig, opts)
        load_after = load_average()
        print(f"\nload average after the run: {load_after:.2f}")
        logged = daemon_logs(workdir)
        print(f"daemon log lines (warning and above): {len(logged)}")
        for line in logged[:10]:
            print(f"  {line[:300]}")
        options = {key: getattr(opts, key) for key in Options.__slots__}
        return {"options": options, "load_before": load_before, "load_after": load_after,
                **found}  # fmt: skip


def parse_args(argv: Sequence[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--mode", choices=("sustain", "headroom"), default="sustain")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run: 12,000/min for 15 s (headroom: two 6 s steps)",
    )
    parser.add_argument(
        "--rate", type=float, help="webhooks/minute (50,000; headroom: the first step's)"
    )
    parser.add_argument("--minutes", type=float, help="sustain: publishing time after warm-up (3)")
    parser.add_argument("--daemons", type=int, default=1, help="sustain: webhookd processes")
    parser.add_argument("--vendors", type=int, default=50, help="vendors, one endpoint each")
    parser.add_argument("--slow", type=int, default=3, help="endpoints answering in 300-800 ms")
    parser.add_argument("--fail", type=float, default=0.05, help="share of attempts answered 500")
    parser.add_argument("--warmup", type=float, help="seconds of load before measuring (10)")
    parser.add_argument(
        "--drain-seconds",
        type=float,
        default=35.0,
        help="after publishing, wait at most this long for the retries",
    )
    parser.add_argument("--step-seconds", type=float, help="headroom: seconds a step (30)")
    parser.add_argument("--step-factor", type=float, default=1.3, help="headroom: rate growth")
    parser.add_argument("--max-steps", type=int, help="headroom: steps at most (12)")
    parser.add_argument("--seed", type=int, default=1, help="the receivers' random failures")
    parser.add_argument("--json", type=Path, default=None, help="also write every figure here")
    args = parser.parse_args(argv)

    def pick(given: float | None, quick: float, full: float) -> float:
        return given if given is not None else quick if args.quick else full

    opts = Options(
        mode=args.mode,
        rate_per_min=pick(args.rate, 12_000, 50_000),
        minutes=pick(args.minutes, 0.25, 3),
        daemons=args.daemons,
        vendors=args.vendors,
        slow=args.slow,
        fail_share=args.fail,
        warmup_s=pick(args.warmup, 2, 10),
        drain_s=args.drain_seconds,
        step_seconds=pick(args.step_seconds, 6, 30),
        step_factor=args.step_factor,
        max_steps=int(pick(args.max_steps, 2, 12)),
        seed=args.seed,
        json_path=args.json.resolve() if args.json else None,
    )
    if opts.rate_per_min <= 0 or opts.minutes <= 0 or opts.step_seconds <= 0:
        parser.error("--rate, --minutes and --step-seconds must be positive")
    if opts.daemons < 1 or opts.vendors < 1 or opts.max_steps < 1 or opts.step_factor <= 1:
        parser.error("--daemons, --vendors and --max-steps must be at least 1, --step-factor > 1")
    if not 0 <= opts.slow <= opts.vendors or not 0 <= opts.fail_share < 1:
        parser.error("--slow must be 0..--vendors, --fail in [0, 1)")
    return opts


def main() -> None:
    options = parse_args()
    run_and_write(lambda: benchmark(options), options.json_path)


if __name__ == "__main__":
    main()
