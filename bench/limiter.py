"""Benchmark of the rate limiter: decisions/s and latency, against the `limits` library.

Run as ``.venv/bin/python bench/limiter.py``. It starts its own redis-server on a free
port and measures, on that one server and in one run:

- memory store, one thread: a single limit, and a Basic-plan check (day + minute);
- redis-py, one thread: a single limit against `limits`' sliding-window counter and
  moving window (a bare admit/refuse; and the counter with the window stats a decision
  carries, a second round trip), and a Basic-plan check (one round trip) against
  `limits` making the same two checks (two round trips);
- ``AsyncLimiter`` on coredis with 64 concurrent tasks, under trio and asyncio.

Synchronous contenders run in interleaved rounds, each round starting with another
contender, so load from elsewhere on the machine falls on all of them alike; each
figure is the median round. Keys rotate over 64 names
and limits are high enough that every hit is admitted (and counted).
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import anyio
from limits import parse, storage, strategies

from ratelimiter import AsyncLimiter, Limiter
from webhookd.embedded import running_redis

KEYS = [f"bench:{index}" for index in range(64)]
ROUNDS = 5
SYNC_OPS = 600  # per contender and round, on Redis
MEMORY_OPS = 60_000  # per round
TASKS = 64
ASYNC_OPS = 150  # per task and round

Hit = Callable[[str], object]


class Figures:
    """Rates of the rounds, and every call's latency."""

    def __init__(self) -> None:
        self.rates: list[float] = []
        self.latencies_ns: list[int] = []

    def rate(self) -> float:
        return statistics.median(self.rates)

    def percentile(self, fraction: float) -> float:
        ordered = sorted(self.latencies_ns)
        return ordered[min(int(fraction * len(ordered)), len(ordered) - 1)] / 1000

    def line(self, name: str) -> str:
        return (
            f"  {name:<44} {self.rate():>9,.0f}/s   p50 {self.percentile(0.5):>7.1f} us"
            f"   p99 {self.percentile(0.99):>7.1f} us"
        )


def measure_sync(contenders: dict[str, Hit], ops: int) -> dict[str, Figures]:
    figures = {name: Figures() for name in contenders}
    for hit in contenders.values():  # warm up: scripts loaded, connections open
        for key in KEYS:
            hit(key)
    names = list(contenders)
    for round_ in range(ROUNDS):
        # Each round starts with another contender, so no one always follows the same one.
        for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
            hit = contenders[name]
            latencies = figures[name].latencies_ns
            clock = time.perf_counter_ns
            started = clock()
            for index in range(ops):
                before = clock()
                hit(KEYS[index & 63])
                latencies.append(clock() - before)
            figures[name].rates.append(ops / ((clock() - started) / 1e9))
    return figures


def measure_async(backend: str, url: str) -> Figures:
    figures = Figures()

    async def main() -> None:
        async with AsyncLimiter.from_url(url, prefix="bench-async") as limiter:
            await limiter.hit("warm-up", "1000000/m")
            for _ in range(ROUNDS):
                started = time.perf_counter_ns()
                async with anyio.create_task_group() as group:
                    for task in range(TASKS):
                        group.start_soon(hammer, limiter, task)
                elapsed_s = (time.perf_counter_ns() - started) / 1e9
                figures.rates.append(TASKS * ASYNC_OPS / elapsed_s)

    async def hammer(limiter: AsyncLimiter, task: int) -> None:
        clock, latencies = time.perf_counter_ns, figures.latencies_ns
        for index in range(ASYNC_OPS):
            before = clock()
            await limiter.hit(KEYS[(task + index) & 63], "1000000/m")
            latencies.append(clock() - before)

    anyio.run(main, backend=backend)
    return figures


def both(*hits: Callable[[], object]) -> object:
    return [hit() for hit in hits]


def report(title: str, figures: dict[str, Figures]) -> None:
    print(title)
    for name, figure in figures.items():
        print(figure.line(name))


def ratio(label: str, ours: Figures, theirs: Figures, target: float) -> str:
    value = ours.rate() / theirs.rate()
    verdict = "meets" if value >= target else "MISSES"
    return f"  {label:<58} {value:5.2f}x  ({verdict} the {target:.1f}x target)"


def run(url: str) -> list[str]:
    memory = Limiter()
    memory_figures = measure_sync(
        {
            "memory, single limit": lambda key: memory.hit(key, "1000000/m"),
            "memory, Basic-plan check (day + minute)": lambda key: memory.hit(key, plan="basic"),
        },
        MEMORY_OPS,
    )
    report("Memory store, one thread", memory_figures)

    ours = Limiter.from_url(url, prefix="bench")
    store = storage.RedisStorage(url)
    counter = strategies.SlidingWindowCounterRateLimiter(store)
    moving = strategies.MovingWindowRateLimiter(store)
    minute, day = parse("1000000/minute"), parse("1000000/day")
    # Basic's shape (a day quota and a minute burst), with room for every hit.
    basic = ("1000000/day", "1000000/minute")
    redis_figures = measure_sync(
        {
            "ratelimiter, single limit": lambda key: ours.hit(key, "1000000/m"),
            "limits sliding-window counter, single": lambda key: counter.hit(minute, key),
            "limits moving window, single": lambda key: moving.hit(minute, key),
            "limits counter, hit + window stats": lambda key: both(
                lambda: counter.hit(minute, key),
                lambda: counter.get_window_stats(minute, key),
            ),
            "ratelimiter, Basic-plan check (1 round trip)": lambda key: ours.hit(key, *basic),
            "limits counter, day + minute (2 round trips)": lambda key: both(
                lambda: counter.hit(day, key), lambda: counter.hit(minute, key)
            ),
            "limits moving window, day + minute": lambda key: both(
                lambda: moving.hit(day, key), lambda: moving.hit(minute, key)
            ),
        },
        SYNC_OPS,
    )
    report("Redis, redis-py, one thread (rounds interleaved)", redis_figures)
    ours.close()

    async_figures = {
        "AsyncLimiter on trio, 64 tasks": measure_async("trio", url),
        "AsyncLimiter on asyncio, 64 tasks": measure_async("asyncio", url),
    }
    report("Redis, coredis, coalesced", async_figures)

    f = redis_figures
    return [
        ratio(
            "single limit vs limits' sliding-window counter",
            f["ratelimiter, single limit"],
            f["limits sliding-window counter, single"],
            1.0,
        ),
        ratio(
            "single limit vs limits' moving window",
            f["ratelimiter, single limit"],
            f["limits moving window, single"],
            1.0,
        ),
        ratio(
            "single limit vs limits' counter with the same figures",
            f["ratelimiter, single limit"],
            f["limits counter, hit + window stats"],
            1.0,
        ),
        ratio(
            "Basic-plan check vs limits' counter doing both checks",
            f["ratelimiter, Basic-plan check (1 round trip)"],
            f["limits counter, day + minute (2 round trips)"],
            1.8,
        ),
        ratio(
            "Basic-plan check vs limits' moving window doing both",
            f["ratelimiter, Basic-plan check (1 round trip)"],
            f["limits moving window, day + minute"],
            1.8,
        ),
        f"  {'AsyncLimiter, 64 tasks on trio (target 20,000/s)':<58} "
        f"{async_figures['AsyncLimiter on trio, 64 tasks'].rate():>8,.0f}/s",
        f"  {'memory store, one thread (target 100,000/s)':<58} "
        f"{memory_figures['memory, single limit'].rate():>8,.0f}/s",
    ]


def main() -> int:
    started = time.monotonic()
    with (
        tempfile.TemporaryDirectory() as data_dir,
        running_redis(Path(data_dir), persistent=False) as server,
    ):
        print(f"redis-server at {server.url}; {ROUNDS} rounds per contender\n")
        lines = run(server.url)
    print("\nRatios (median rounds)")
    print("\n".join(lines))
    print(f"\nfinished in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
