"""The limiter on the memory store: windows, cost, peek, reset, atomicity, eviction."""

from __future__ import annotations

import asyncio
import threading

import pytest

from ratelimiter import (
    AsyncLimiter,
    ConfigError,
    InvalidRequest,
    Limiter,
    MemoryBackend,
    parse_limit,
)

SECOND = 1_700_000_000  # a whole second, so fractions below are offsets into windows


class Clock:
    def __init__(self, now: float = SECOND) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_the_counter_across_a_window_boundary() -> None:
    clock = Clock(SECOND - 0.001)
    limiter = Limiter(clock=clock)
    for _ in range(3):
        assert limiter.hit("k", "3/s").allowed
    clock.now = SECOND  # the previous window's 3 hits weigh fully: nothing fits
    refused = limiter.hit("k", "3/s")
    assert not refused.allowed
    assert refused.retry_after == pytest.approx(0.334)
    clock.now = SECOND + 0.333  # 3 * 0.667 = 2.001 still counted
    assert not limiter.hit("k", "3/s").allowed
    clock.now = SECOND + 0.334  # 3 * 0.666 = 1.998: one more fits
    assert limiter.hit("k", "3/s").allowed


def test_the_sliding_log_across_its_window() -> None:
    clock = Clock(SECOND + 0.250)
    limiter = Limiter(clock=clock)
    exact = parse_limit("2/s", exact=True)
    assert limiter.hit("k", exact).allowed
    clock.now = SECOND + 0.750
    assert limiter.hit("k", exact).allowed
    clock.now = SECOND + 1.249
    refused = limiter.hit("k", exact)
    assert not refused.allowed
    assert refused.retry_after == pytest.approx(0.001)
    clock.now = SECOND + 1.250  # the first unit has left the window
    decision = limiter.hit("k", exact)
    assert decision.allowed
    assert decision.remaining == 0
    assert decision.reset == SECOND + 3  # 1.250 + 1 s, rounded up


def test_cost_counts_several_units() -> None:
    limiter = Limiter(clock=Clock())
    assert limiter.hit("k", "10/m", cost=4).remaining == 6
    refused = limiter.hit("k", "10/m", cost=7)
    assert not refused.allowed
    assert refused.remaining == 6  # a refusal consumes nothing
    assert limiter.hit("k", "10/m", cost=6).remaining == 0
    too_big = limiter.hit("other", "10/m", cost=11)
    assert not too_big.allowed
    assert too_big.retry_after == 60  # never fits: one window, as a hint


def test_peek_counts_nothing() -> None:
    limiter = Limiter(clock=Clock())
    assert limiter.peek("k", "2/m").remaining == 2
    limiter.hit("k", "2/m")
    peeked = limiter.peek("k", "2/m")
    assert (peeked.allowed, peeked.remaining) == (True, 1)
    assert limiter.peek("k", "2/m", cost=2).allowed is False
    assert limiter.hit("k", "2/m").remaining == 0
    assert limiter.peek("k", "2/m").allowed is False


def test_reset_forgets_a_key() -> None:
    limiter = Limiter(clock=Clock())
    limiter.hit("k", "1/d")
    limiter.hit("other", "1/d")
    assert not limiter.hit("k", "1/d").allowed
    limiter.reset("k")
    assert limiter.hit("k", "1/d").allowed
    assert not limiter.hit("other", "1/d").allowed


def test_a_refused_multi_limit_hit_consumes_none_of_its_limits() -> None:
    limiter = Limiter(clock=Clock())
    exact_minute = parse_limit("5/m", exact=True)
    for _ in range(2):
        assert limiter.hit("k", exact_minute, "2/s").allowed
    refused = limiter.hit("k", exact_minute, "2/s")
    assert not refused.allowed
    assert str(refused.binding) == "2/second"
    assert limiter.peek("k", exact_minute).remaining == 3
    assert limiter.peek("k", "2/s").remaining == 0


def test_a_plan_hit_is_bound_by_the_burst_then_the_day() -> None:
    limiter = Limiter(clock=Clock())
    first = limiter.hit("vendor:v_1", plan="basic")
    assert (first.limit, first.remaining, first.binding and first.binding.policy) == (
        50,
        49,
        "basic-minute",
    )
    for _ in range(49):
        limiter.hit("vendor:v_1", plan="basic")
    refused = limiter.hit("vendor:v_1", plan="basic")
    assert not refused.allowed
    assert refused.headers()["RateLimit"].startswith('"basic-minute";r=0')


def test_bad_arguments_are_clear_errors() -> None:
    limiter = Limiter()
    with pytest.raises(InvalidRequest, match="key"):
        limiter.hit("", "5/s")
    with pytest.raises(InvalidRequest, match="cost"):
        limiter.hit("k", "5/s", cost=0)
    with pytest.raises(InvalidRequest, match="cost"):
        limiter.hit("k", "5/s", cost=1.5)  # type: ignore[arg-type]


def test_expired_windows_are_evicted() -> None:
    clock = Clock()
    store = MemoryBackend(clock=clock)
    limiter = Limiter(store, clock=clock)
    for round_ in range(10):
        for index in range(2000):
            limiter.hit(f"k{round_}:{index}", "5/s")
        clock.now += 3  # every window of the round has expired
    assert len(store) <= 4096
    assert limiter.hit("k9:0", "5/s").remaining == 4


def test_threads_never_admit_more_than_the_amount() -> None:
    limiter = Limiter(clock=Clock())
    exact = parse_limit("1000/m", exact=True)
    admitted: list[int] = []

    def hammer() -> None:
        mine = sum(limiter.hit("k", exact, "1000/m").allowed for _ in range(400))
        admitted.append(mine)

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(admitted) == 1000


def test_the_async_limiter_runs_under_asyncio() -> None:
    async def main() -> list[bool]:
        async with AsyncLimiter(clock=Clock()) as limiter:
            decisions = await asyncio.gather(*(limiter.hit("k", "3/m") for _ in range(5)))
            await limiter.reset("k")
            assert (await limiter.peek("k", "3/m")).remaining == 3
            return [decision.allowed for decision in decisions]

    assert asyncio.run(main()) == [True, True, True, False, False]


async def test_the_async_limiter_runs_under_trio() -> None:
    limiter = AsyncLimiter(clock=Clock())
    assert (await limiter.hit("k", plan="growth")).remaining == 199
    assert limiter.plan("growth").webhooks_per_day == 1000


def test_urls_pick_the_store() -> None:
    with Limiter.from_url("memory://") as limiter:
        assert isinstance(limiter.backend, MemoryBackend)
        assert limiter.hit("k", "1/m").allowed
    for url in ("mysql://x", "localhost:6379", "redis:/x"):
        with pytest.raises(ConfigError, match="limiter URL"):
            Limiter.from_url(url)
    with pytest.raises(ConfigError):
        AsyncLimiter.from_url("memcached://x")


async def test_the_async_limiter_from_a_memory_url() -> None:
    async with AsyncLimiter.from_url("memory://", plans=None) as limiter:
        assert (await limiter.hit("k", "2/m", cost=2)).remaining == 0
        assert not (await limiter.peek("k", "2/m")).allowed
