"""The coalescer: concurrent checks share round trips, and no waiter is ever stranded."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import anyio
import pytest
import trio
import trio.testing

from ratelimiter import BackendError
from ratelimiter.backend import Check, Outcome
from ratelimiter.batcher import Coalescer


def check(key: str) -> Check:
    return Check(key, (), 1, True, None)


class Store:
    """A fake round trip: it takes ``delay_s`` and echoes each check's key length."""

    def __init__(self, delay_s: float = 0.01, fail: Exception | None = None) -> None:
        self.delay_s = delay_s
        self.fail = fail
        self.batches: list[list[str]] = []

    async def send(self, checks: Sequence[Check]) -> list[Outcome]:
        self.batches.append([c.key for c in checks])
        await anyio.sleep(self.delay_s)
        if self.fail is not None:
            raise self.fail
        return [Outcome(len(c.key), True, ()) for c in checks]


async def test_concurrent_checks_share_round_trips(autojump_clock: trio.testing.MockClock) -> None:
    store = Store()
    coalescer = Coalescer(store.send, timeout_s=5)
    results: dict[str, int] = {}

    async def submit(key: str) -> None:
        results[key] = (await coalescer.submit(check(key))).now_ms

    async with trio.open_nursery() as nursery:
        for index in range(64):
            nursery.start_soon(submit, "k" * (index + 1))
    assert results == {"k" * (index + 1): index + 1 for index in range(64)}
    assert [len(batch) for batch in store.batches] == [64]  # all were ready to run at once


async def test_a_round_trip_carries_what_arrived_during_the_previous_one(
    autojump_clock: trio.testing.MockClock,
) -> None:
    store = Store(delay_s=1)
    coalescer = Coalescer(store.send, timeout_s=5)

    async def submit_at(at_s: float, key: str) -> None:
        await trio.sleep(at_s)
        await coalescer.submit(check(key))

    async with trio.open_nursery() as nursery:
        for at_s, key in ((0, "a"), (0.2, "b"), (0.5, "c"), (1.5, "d"), (5, "e")):
            nursery.start_soon(submit_at, at_s, key)
    assert store.batches == [["a"], ["b", "c"], ["d"], ["e"]]


async def test_a_cancelled_flusher_finishes_its_round_trip_for_everyone(
    autojump_clock: trio.testing.MockClock,
) -> None:
    store = Store(delay_s=1)
    coalescer = Coalescer(store.send, timeout_s=5)
    outcomes: list[Outcome] = []

    async def waiter() -> None:
        await trio.sleep(0.1)  # once the flusher's round trip is in flight
        outcomes.append(await coalescer.submit(check("other")))

    async with trio.open_nursery() as nursery:
        with trio.move_on_after(0.5):  # cancels the flusher mid-flight
            nursery.start_soon(waiter)
            mine = await coalescer.submit(check("first"))
        # The round trip was shielded: the hit was counted, so its outcome is returned.
        assert mine.now_ms == 5
        assert trio.current_time() == pytest.approx(1)
    assert [o.now_ms for o in outcomes] == [5]
    assert store.batches == [["first"], ["other"]]


async def test_a_waiter_cancelled_before_sending_takes_its_check_back(
    autojump_clock: trio.testing.MockClock,
) -> None:
    store = Store(delay_s=1)
    coalescer = Coalescer(store.send, timeout_s=5)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(coalescer.submit, check("first"))
        await trio.sleep(0.1)
        with trio.move_on_after(0.1):
            await coalescer.submit(check("gone"))
        nursery.start_soon(coalescer.submit, check("later"))
    assert store.batches == [["first"], ["later"]]


async def test_a_failed_round_trip_fails_every_waiter(
    autojump_clock: trio.testing.MockClock,
) -> None:
    store = Store(fail=BackendError("Redis failed: boom"))
    coalescer = Coalescer(store.send, timeout_s=5)
    errors: list[str] = []

    async def submit(key: str) -> None:
        with pytest.raises(BackendError) as caught:
            await coalescer.submit(check(key))
        errors.append(str(caught.value))

    async with trio.open_nursery() as nursery:
        for key in "abc":
            nursery.start_soon(submit, key)
    assert errors == ["Redis failed: boom"] * 3


async def test_a_round_trip_that_never_answers_times_out(
    autojump_clock: trio.testing.MockClock,
) -> None:
    coalescer = Coalescer(Store(delay_s=3600).send, timeout_s=2)
    with pytest.raises(BackendError, match="within 2 s"):
        await coalescer.submit(check("k"))
    assert trio.current_time() == pytest.approx(2)


def test_it_coalesces_under_asyncio_too() -> None:
    store = Store()

    async def main() -> None:
        coalescer = Coalescer(store.send, timeout_s=5)
        await asyncio.gather(*(coalescer.submit(check(f"k{i}")) for i in range(10)))

    asyncio.run(main())
    assert [len(batch) for batch in store.batches] == [10]


async def test_checks_submitted_together_go_out_in_one_round_trip(
    autojump_clock: trio.testing.MockClock,
) -> None:
    store = Store()
    coalescer = Coalescer(store.send, timeout_s=5)
    outcomes = await coalescer.submit_many([check("a"), check("bb"), check("ccc")])
    assert [o.now_ms for o in outcomes if isinstance(o, Outcome)] == [1, 2, 3]
    assert store.batches == [["a", "bb", "ccc"]]


async def test_checks_submitted_together_wait_for_a_flush_in_flight(
    autojump_clock: trio.testing.MockClock,
) -> None:
    store = Store(delay_s=1)
    coalescer = Coalescer(store.send, timeout_s=5)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(coalescer.submit, check("first"))
        await trio.sleep(0.1)
        outcomes = await coalescer.submit_many([check("x"), check("yy")])
    assert store.batches == [["first"], ["x", "yy"]]
    assert [o.now_ms for o in outcomes if isinstance(o, Outcome)] == [1, 2]


async def test_a_failed_round_trip_answers_each_check_with_its_error(
    autojump_clock: trio.testing.MockClock,
) -> None:
    coalescer = Coalescer(Store(fail=BackendError("boom")).send, timeout_s=5)
    outcomes = await coalescer.submit_many([check("a"), check("b")])
    assert [str(o) for o in outcomes] == ["boom", "boom"]
    assert all(isinstance(o, BackendError) for o in outcomes)
