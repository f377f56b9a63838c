"""The delivery benchmark's figures, the targets they are held to, and their output.

Targets (from the issue), each over plain HTTP and over HTTPS: one daemon process
delivers at least as fast as the bare h11 client sends; the daemons use under 80 us
of CPU per delivery, and under 80/77 of the bare h11 client's CPU per request; p99
end-to-end latency at half the sustained rate stays under 25 ms; and nothing is
lost, sent twice or left behind.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clients import ClientRun
from redis_cost import RedisCost, Traffic

TARGET_OF_H11 = 1.0
TARGET_DAEMON_CPU_US = 80.0
# The issue set 80 us where the bare h11 client used 77 us a request in the same run: as
# a ratio to that same-run baseline, the target holds on a faster or slower machine.
ISSUE_H11_CPU_US = 77.0
TARGET_DAEMON_OF_H11_CPU = TARGET_DAEMON_CPU_US / ISSUE_H11_CPU_US
TARGET_P99_MS = 25.0
TARGET_QUOTAS_OF_OFF = 0.90  # quotas on may cost at most 10 % of the deliveries/s


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


@dataclass(frozen=True, slots=True)
class DaemonRun:
    scheme: str
    processes: int
    sustained: Sustained
    latency: Latency
    publish: Traffic  # what publishing one event cost Redis
    redis_backlog: RedisCost  # per delivery while the backlog drained
    redis_half_load: RedisCost  # per delivery during the latency run
    lost: int
    duplicates: int
    left: dict[str, int]  # pending entries, scheduled retries, dead letters afterwards
    exit_statuses: list[int]

    @property
    def label(self) -> str:
        return f"webhookd {self.processes} process{'es' if self.processes > 1 else ''}"

    @property
    def clean(self) -> bool:
        return not (self.lost or self.duplicates or any(self.left.values()))


@dataclass(frozen=True, slots=True)
class SchemeResults:
    scheme: str  # "http" or "https"
    clients: dict[str, ClientRun]  # the bare clients, by name
    daemons: list[DaemonRun]  # 1 process, then 2


@dataclass(frozen=True, slots=True)
class Target:
    scheme: str
    what: str
    measured: float
    shown: str  # measured, with its unit
    goal: str
    met: bool


@dataclass(frozen=True, slots=True)
class QuotaRun:
    """One daemon over plain HTTP without quotas, then with them (never refusing), in
    alternating rounds; each side is judged by its best round, since what else runs on
    the machine only ever slows a round down."""

    off: list[Sustained]
    on: list[Sustained]
    clean: bool  # nothing lost, duplicated, left over or deferred in any round

    @property
    def off_rate(self) -> float:
        return max(run.rate for run in self.off)

    @property
    def on_rate(self) -> float:
        return max(run.rate for run in self.on)

    @property
    def of_off(self) -> float:
        return self.on_rate / self.off_rate if self.off_rate else 0.0

    def target(self) -> Target:
        return Target(
            "http",
            "1 process, quotas on / off (deliveries/s)",
            self.of_off,
            f"{self.of_off:.2f}x",
            f">= {TARGET_QUOTAS_OF_OFF:.2f}x",
            self.of_off >= TARGET_QUOTAS_OF_OFF and self.clean,
        )


def print_quota_run(run: QuotaRun) -> None:
    def rounds(runs: list[Sustained]) -> str:
        return ", ".join(f"{r.rate:,.0f}/s ({r.cpu_us['daemon']:,.0f} us CPU)" for r in runs)

    print(
        f"quota check, 1 process over plain HTTP, best of {len(run.off)} alternating rounds: "
        f"{run.off_rate:,.0f}/s without, {run.on_rate:,.0f}/s with quotas on ({run.of_off:.2f}x)"
        + ("" if run.clean else "; NOT CLEAN: something was lost, deferred or left over")
    )
    print(f"  without: {rounds(run.off)}")
    print(f"  with:    {rounds(run.on)}")


@dataclass(frozen=True, slots=True)
class Report:
    options: dict[str, Any]
    cpus: int
    load_before: float
    load_after: float
    schemes: list[SchemeResults]
    targets: list[Target]
    quotas: QuotaRun | None = None


def scheme_title(scheme: str) -> str:
    return "HTTPS (TLS 1.3)" if scheme == "https" else "plain HTTP"


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def show_cpu(cpu_us: dict[str, float]) -> str:
    return ", ".join(f"{role} {us:,.0f} us" for role, us in cpu_us.items())


def targets(results: SchemeResults) -> list[Target]:
    h11 = results.clients["h11"].rate
    one = results.daemons[0]
    of_h11 = one.sustained.rate / h11 if h11 else 0.0
    found = [
        Target(
            results.scheme,
            f"{one.label} / bare h11 client",
            of_h11,
            f"{of_h11:.2f}x",
            f">= {TARGET_OF_H11:.1f}x",
            one.sustained.rate >= TARGET_OF_H11 * h11,
        )
    ]
    h11_us = results.clients["h11"].cpu_us["client"]
    for run in results.daemons:
        daemon_us = run.sustained.cpu_us["daemon"]
        of_h11_cpu = daemon_us / h11_us if h11_us else math.inf
        found += [
            Target(
                results.scheme,
                f"{run.label}: daemon CPU per delivery",
                daemon_us,
                f"{daemon_us:,.0f} us",
                f"< {TARGET_DAEMON_CPU_US:.0f} us",
                daemon_us < TARGET_DAEMON_CPU_US,
            ),
            Target(
                results.scheme,
                f"{run.label}: that CPU / bare h11 client's",
                of_h11_cpu,
                f"{of_h11_cpu:.2f}x",
                f"< {TARGET_DAEMON_OF_H11_CPU:.2f}x",
                of_h11_cpu < TARGET_DAEMON_OF_H11_CPU,
            ),
            Target(
                results.scheme,
                f"{run.label} at {run.latency.offered_rate:,.0f}/s: p99",
                run.latency.p99_ms,
                f"{run.latency.p99_ms:.1f} ms",
                f"< {TARGET_P99_MS:.0f} ms",
                run.latency.p99_ms < TARGET_P99_MS,
            ),
            Target(
                results.scheme,
                f"{run.label}: lost + duplicated + left over",
                run.lost + run.duplicates + sum(run.left.values()),
                f"{run.lost + run.duplicates + sum(run.left.values())}",
                "0",
                run.clean,
            ),
        ]
    return found


def print_client(run: ClientRun, h11: ClientRun | None) -> None:
    versus = f" ({run.rate / h11.rate:.2f}x h11)" if h11 and h11.rate else ""
    print(
        f"bare {run.client} client: {run.rate:,.0f} req/s{versus}; "
        f"CPU per request: {show_cpu(run.cpu_us)}"
    )


def show_redis(cost: RedisCost) -> str:
    commands = ", ".join(
        f"{name}{'*' if name in cost.scripted else ''} {calls:.3g}"
        for name, calls in cost.commands.items()
    )
    return (
        f"{cost.commands_total:.2f} commands, ~{cost.calls:.2f} round trips, "
        f"{cost.bytes_in:,.0f} B in, {cost.bytes_out:,.0f} B out ({commands})"
    )


def print_daemon_run(run: DaemonRun) -> None:
    s, lat = run.sustained, run.latency
    print(
        f"{run.label}: {s.delivered:,} delivered, {s.rate:,.0f}/s over {s.span_s:.2f} s "
        f"(first receipt to last); then {lat.offered_rate:,.0f} events/s offered: "
        f"{lat.delivered:,}/{lat.published:,} delivered, latency p50 {lat.p50_ms:.1f} ms, "
        f"p99 {lat.p99_ms:.1f} ms, max {lat.max_ms:.0f} ms "
        f"(everything else meanwhile: {lat.others:.0%})"
    )
    print(f"  CPU per delivery in the sustained run: {show_cpu(s.cpu_us)}")
    busy = ", ".join(f"{role} {share:.0%}" for role, share in s.cpu_share.items())
    print(f"  CPU busy meanwhile (100% = one core): {busy}")
    print(f"  Redis per delivery, backlog: {show_redis(run.redis_backlog)}")
    print(f"  Redis per delivery, half load: {show_redis(run.redis_half_load)}")
    problems = {"lost": run.lost, "duplicates": run.duplicates} | run.left
    if not run.clean:
        print("  after the run: " + ", ".join(f"{k} {v}" for k, v in problems.items() if v))
    if any(run.exit_statuses):
        print(f"  daemon exit statuses after SIGTERM: {run.exit_statuses}")


def print_table(report: Report) -> None:
    table: list[tuple[str, ...]] = [("", "measured", "target", "result")]
    for results in report.schemes:
        table.append((scheme_title(results.scheme), "", "", ""))
        h11 = results.clients["h11"].rate
        for bare in results.clients.values():
            versus = f"{bare.rate / h11:.2f}x h11" if bare.client != "h11" and h11 else ""
            table.append((f"  bare {bare.client} client", f"{bare.rate:,.0f} req/s", "", versus))
        one = results.daemons[0].sustained.rate
        best = results.clients["httptools"].rate
        for run in results.daemons:
            rate = run.sustained.rate
            if run.processes > 1:
                versus = f"{rate / one:.2f}x 1 process"
            else:
                versus = f"{rate / best:.2f}x httptools"
            table.append((f"  {run.label}", f"{rate:,.0f} /s", "", versus))
        for target in (t for t in report.targets if t.scheme == results.scheme):
            table.append((f"  {target.what}", target.shown, target.goal, verdict(target.met)))
    print()
    print_rows(table)


def print_redis_table(report: Report) -> None:
    """Redis's cost per delivery, the figures a capacity plan scales by the rate."""
    table: list[tuple[str, ...]] = [
        ("Redis per delivery", "commands", "~round trips", "bytes in", "bytes out")
    ]
    for results in report.schemes:
        for run in results.daemons:
            for phase, cost in (("backlog", run.redis_backlog), ("half load", run.redis_half_load)):
                table.append(
                    (
                        f"  {scheme_title(results.scheme)}, {run.label}, {phase}",
                        f"{cost.commands_total:.2f}",
                        f"{cost.calls:.2f}",
                        f"{cost.bytes_in:,.0f}",
                        f"{cost.bytes_out:,.0f}",
                    )
                )
    publish = report.schemes[0].daemons[0].publish
    bytes_in, bytes_out = f"{publish.bytes_in:,.0f}", f"{publish.bytes_out:,.0f}"
    table.append(("  publishing one event (XADD)", "1", "1", bytes_in, bytes_out))
    print()
    print_rows(table, numbers_from=1)


def print_rows(table: list[tuple[str, ...]], numbers_from: int | None = None) -> None:
    """Columns padded to their widest cell; from ``numbers_from`` on, aligned right."""
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    for row in table:
        cells = [
            cell.rjust(width)
            if numbers_from is not None and i >= numbers_from
            else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        print("  ".join(cells).rstrip())


def _plain(value: Any) -> Any:
    """JSON-ready: dataclasses become objects, NaN (a percentile of nothing) null."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _plain(dataclasses.asdict(value))
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value


def write_json(figures: Any, path: Path) -> None:
    """A report, or any mapping of dataclasses and plain values, as JSON."""
    path.write_text(json.dumps(_plain(figures), indent=2, default=str) + "\n")


def run_and_write(benchmark: Callable[[], Any], json_path: Path | None) -> None:
    """A benchmark's entry point: run it, exit 130 on Ctrl-C (everything it started is
    stopped by then), and write its figures to ``json_path`` if given."""
    try:
        figures = benchmark()
    except* KeyboardInterrupt:  # trio wraps it in a group when it lands in a nursery
        print("interrupted; everything the benchmark started is stopped", file=sys.stderr)
        raise SystemExit(130) from None
    if json_path is not None:
        write_json(figures, json_path)
        print(f"\nevery figure written to {json_path}")
