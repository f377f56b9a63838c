"""What bench/kpi.py found, and how it prints it: phases, memory, targets, ladders."""

from __future__ import annotations

from dataclasses import dataclass

from kpi_figures import TARGET_PER_MIN, Delivery, Promise
from report import print_rows, verdict

MIB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Phase:
    name: str
    daemons: int
    asked_per_min: float
    figures: Delivery
    cpu_cores: dict[str, float]  # cores busy while publishing, by process and others
    drain_s: float


@dataclass(frozen=True, slots=True)
class Memory:
    """Each daemon's resident memory (bytes), in the order the daemons started."""

    start: list[int]  # after the warm-up
    peak: list[int]  # sampled once a second while publishing
    end: list[int]  # after the drain
    growth: list[int]  # end - start


def memory(start: list[int], peak: list[int], end: list[int]) -> Memory:
    return Memory(start, peak, end, [b - a for a, b in zip(start, end, strict=True)])


@dataclass(frozen=True, slots=True)
class Ladder:
    daemons: int
    steps: list[Phase]  # one per rate, up to the first miss
    best_per_min: float | None  # the last rate asked that passed
    stopped_by: str
    limit_found: bool  # False: no step missed, so the best is a lower bound


def step_summary(phase: Phase) -> str:
    f = phase.figures
    return (
        f"offered {f.offered_per_min:,.0f}/min, delivered {f.delivered_per_min:,.0f}/min, "
        f"{f.share:.3%} delivered, p95 {f.p95_ms:,.0f} ms, p99 {f.p99_ms:,.0f} ms, "
        f"daemons' CPU {phase.cpu_cores['daemons']:.0%} -> {verdict(f.passes)}"
    )


def print_phase(phase: Phase) -> None:
    f = phase.figures
    print(
        f"{f.published:,} events published at {f.offered_per_min:,.0f}/min; "
        f"{f.delivered:,} delivered ({f.share:.3%}) after {phase.drain_s:.1f} s of drain"
    )
    print(
        f"  event-to-vendor latency: p50 {f.p50_ms:,.0f} ms, p95 {f.p95_ms:,.0f} ms, "
        f"p99 {f.p99_ms:,.0f} ms, max {f.max_ms:,.0f} ms"
    )
    print(
        f"  deliveries: {f.delivered_per_min:,.0f}/min in the publishing window; since the "
        f"warm-up began the receivers answered {f.answers:,} requests, {f.failed_share:.2%} "
        f"of them 500, and {f.duplicates} duplicate 200s"
    )
    busy = ", ".join(f"{role} {cores:.0%}" for role, cores in phase.cpu_cores.items())
    print(f"  CPU busy while publishing (100% = one core): {busy}")


def print_memory(found: Memory) -> None:
    for index, (start, peak, end, growth) in enumerate(
        zip(found.start, found.peak, found.end, found.growth, strict=True)
    ):
        print(
            f"  daemon {index} RSS: {start / MIB:,.1f} MiB after warm-up, peak "
            f"{peak / MIB:,.1f} MiB, {end / MIB:,.1f} MiB at the end ({growth / MIB:+,.1f} MiB)"
        )


def print_targets(found: list[Promise]) -> None:
    print()
    print_rows(
        [
            ("", "measured", "target", "result"),
            *((f"  {t.what}", t.shown, t.goal, verdict(t.met)) for t in found),
        ]
    )


def print_ladders(ladders: list[Ladder]) -> None:
    print()
    table: list[tuple[str, ...]] = [("", "highest passing rate", "over 50k/min", "stopped by")]
    for ladder in ladders:
        best = ladder.best_per_min
        shown = "none" if best is None else f"{'' if ladder.limit_found else '>= '}{best:,.0f}/min"
        ratio = "-" if best is None else f"{best / TARGET_PER_MIN:.2f}x"
        table.append((f"  {ladder.daemons} daemon(s)", shown, ratio, ladder.stopped_by))
    print_rows(table)
    if len(ladders) == 2 and all(ladder.limit_found for ladder in ladders):
        one, two = (ladder.best_per_min for ladder in ladders)
        if one and two:
            print(f"  2 daemons / 1: {two / one:.2f}x")
