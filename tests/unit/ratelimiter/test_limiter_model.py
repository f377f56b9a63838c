"""Both algorithms against the naive reference model, over random hits and clock moves."""

from __future__ import annotations

import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st
from limiter_reference import Reference

from ratelimiter import AsyncLimiter, Limit, Limiter, MemoryBackend
from ratelimiter.backend import Check

START_MS = 1_700_000_000_000

limits_strategy = st.lists(
    st.builds(
        Limit,
        amount=st.integers(1, 12),
        window_s=st.integers(1, 3),
        exact=st.booleans(),
    ),
    min_size=1,
    max_size=3,
)
steps_strategy = st.lists(
    st.tuples(
        st.integers(0, 2500),  # ms the clock moves before the hit
        st.integers(1, 4) | st.just(1),  # cost
        st.booleans() | st.just(True),  # consume (a hit) or not (a peek)
    ),
    max_size=60,
)


def scoped(limits: list[Limit]) -> tuple[Limit, ...]:
    """The same limits, each with a counter of its own."""
    return tuple(
        Limit(limit.amount, limit.window_s, limit.exact, scope=f"s{index}")
        for index, limit in enumerate(limits)
    )


@settings(max_examples=150, deadline=None)
@given(limits=limits_strategy, steps=steps_strategy)
def test_memory_store_matches_the_reference(
    limits: list[Limit], steps: list[tuple[int, int, bool]]
) -> None:
    store = MemoryBackend()
    check_limits = scoped(limits)
    references = [Reference(lim.amount, lim.window_ms, lim.exact) for lim in check_limits]
    now_ms = START_MS
    for advance_ms, cost, consume in steps:
        now_ms += advance_ms
        outcome = store.decide(Check("k", check_limits, cost, consume, now_ms))
        fits = all(ref.fits(now_ms, cost) for ref in references)
        assert outcome.allowed == fits
        retries = [0 if fits else ref.retry_ms(now_ms, cost) for ref in references]
        if fits and consume:
            for ref in references:
                ref.add(now_ms, cost)
        expected = tuple(
            (ref.remaining(now_ms), ref.reset_ms(now_ms), retry)
            for ref, retry in zip(references, retries, strict=True)
        )
        assert outcome.now_ms == now_ms
        assert outcome.states == expected


@settings(max_examples=40, deadline=None)
@given(
    limit=st.builds(
        Limit, amount=st.integers(1, 8), window_s=st.integers(1, 2), exact=st.booleans()
    ),
    steps=st.lists(st.tuples(st.integers(0, 1500), st.integers(1, 3)), max_size=30),
)
def test_async_limiter_on_trio_mock_clock_matches_the_reference(
    limit: Limit, steps: list[tuple[int, int]]
) -> None:
    """The clock is trio's MockClock: sleeping moves time, and nothing really waits."""
    reference = Reference(limit.amount, limit.window_ms, limit.exact)

    async def scenario() -> None:
        limiter = AsyncLimiter(clock=lambda: START_MS / 1000 + trio.current_time())
        for advance_ms, cost in steps:
            await trio.sleep(advance_ms / 1000)
            now_ms = round((START_MS / 1000 + trio.current_time()) * 1000)
            decision = await limiter.hit("k", limit, cost=cost)
            fits = reference.fits(now_ms, cost)
            assert decision.allowed == fits
            if fits:
                reference.add(now_ms, cost)
                assert decision.retry_after == 0
            else:
                assert decision.retry_after == reference.retry_ms(now_ms, cost) / 1000
            assert decision.remaining == reference.remaining(now_ms)

    trio.run(scenario, clock=trio.testing.MockClock(autojump_threshold=0))


def test_sync_limiter_uses_the_injected_clock() -> None:
    now = [START_MS / 1000]
    limiter = Limiter(clock=lambda: now[0])
    assert limiter.hit("k", "2/s").allowed
    assert limiter.hit("k", "2/s").allowed
    refused = limiter.hit("k", "2/s")
    assert not refused.allowed
    assert refused.at == now[0]
    now[0] += refused.retry_after
    assert limiter.hit("k", "2/s").allowed
