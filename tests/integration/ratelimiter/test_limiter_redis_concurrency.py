"""Threads and trio tasks hammering one key on Redis at once, on the server's clock.

The exact limit "100/s" must never admit more than 100 hits in any one-second span
(checked on the instants Redis decided them), and refused hits must consume nothing:
a second, roomy limit counts exactly the admitted hits.
"""

from __future__ import annotations

import threading
import time
from collections import deque

import redis
import trio

from ratelimiter import AsyncLimiter, Limiter, parse_limit

HAMMER_S = 1.2
PER_SECOND = parse_limit("100/s", exact=True)
ROOMY = parse_limit("1000000/m", exact=True)


def busiest_second(instants_ms: list[int]) -> int:
    span: deque[int] = deque()
    most = 0
    for at in sorted(instants_ms):
        span.append(at)
        while span[0] <= at - 1000:
            span.popleft()
        most = max(most, len(span))
    return most


def test_threads_and_trio_tasks_never_admit_more_than_the_limit(
    redis_url: str, redis_client: redis.Redis, key_prefix: str
) -> None:
    admitted_ms: list[int] = []
    refused = 0
    lock = threading.Lock()
    deadline = time.monotonic() + HAMMER_S

    def record(allowed: bool, at: float) -> None:
        nonlocal refused
        with lock:
            if allowed:
                admitted_ms.append(round(at * 1000))
            else:
                refused += 1

    sync_limiter = Limiter.from_url(redis_url, prefix=key_prefix)

    thread_errors: list[BaseException] = []

    def thread_hammer() -> None:
        try:
            while time.monotonic() < deadline:
                decision = sync_limiter.hit("k", PER_SECOND, ROOMY)
                record(decision.allowed, decision.at)
        except BaseException as error:  # reported by the assertion below
            thread_errors.append(error)

    async def trio_hammer() -> None:
        with trio.fail_after(HAMMER_S + 10):
            await hammer_with_tasks()

    async def hammer_with_tasks() -> None:
        async with AsyncLimiter.from_url(redis_url, prefix=key_prefix) as limiter:

            async def task() -> None:
                while time.monotonic() < deadline:
                    decision = await limiter.hit("k", PER_SECOND, ROOMY)
                    record(decision.allowed, decision.at)

            async with trio.open_nursery() as nursery:
                for _ in range(16):
                    nursery.start_soon(task)

    threads = [threading.Thread(target=thread_hammer) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        trio.run(trio_hammer)
    finally:
        for thread in threads:
            thread.join()
        sync_limiter.close()

    assert thread_errors == []
    assert refused > 0
    assert len(admitted_ms) >= 100
    assert busiest_second(admitted_ms) <= 100
    roomy_log = f"{key_prefix}:{{k}}:log:{ROOMY.storage_id}"
    assert redis_client.zcard(roomy_log) == len(admitted_ms)
