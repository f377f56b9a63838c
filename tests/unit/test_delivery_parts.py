"""The delivery core's moving parts without sockets: lanes, the scheduler's wake-up,
the recorder's batching and its handling of Redis failures (a fake store)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
import trio
import trio.testing

from webhookd.errors import StoreRefused, StoreUnavailable
from webhookd.events import Event
from webhookd.health import Readiness
from webhookd.lanes import APPETITE_WAIT_S, LINGER_S, MOVING_S, Lanes
from webhookd.model import AckEntry, AddDeadLetter, Delivery, EntryRef, RecordAttempt, Write
from webhookd.recorder import Recorder
from webhookd.scheduler import Wakeup

ORIGIN = EntryRef("s", "1-0")


def delivery(endpoint_id: str, n: int = 0) -> Delivery:
    event = Event(f"evt_{n}", "order.created", "v_1", "2024-01-01T00:00:00.000Z", b"{}")
    return Delivery(event, endpoint_id, ORIGIN)


class EpochFromTrio:
    def now_s(self) -> float:
        return trio.current_time()


async def test_a_lane_runs_at_most_its_concurrency_and_refuses_past_its_queue() -> None:
    running: list[str] = []
    most = 0
    release = trio.Event()

    async def work(d: Delivery) -> None:
        nonlocal most
        running.append(d.event.id)
        most = max(most, len(running))
        await release.wait()
        running.remove(d.event.id)

    lanes = Lanes(work, max_in_flight=100, queue_factor=2)
    async with trio.open_nursery() as nursery:
        await nursery.start(lanes.run)
        offered = []
        for n in range(5):
            await lanes.admit()
            offered.append(lanes.offer(delivery("ep_1", n), concurrency=2))
        await trio.testing.wait_all_tasks_blocked()
        assert offered == [True, True, True, True, False]  # 2 x 2 queued, the 5th refused
        assert most == 2 and lanes.queued("ep_1") == 4
        assert lanes.room == 100 - 4  # the refused one gave its slot back
        release.set()
        await lanes.drained(1.0)
        assert lanes.queued("ep_1") == 0 and lanes.room == 100
        nursery.cancel_scope.cancel()


async def test_workers_park_between_batches_and_end_once_their_lane_idles(
    autojump_clock: trio.testing.MockClock,
) -> None:
    tasks: set[trio.lowlevel.Task] = set()

    async def work(d: Delivery) -> None:
        tasks.add(trio.lowlevel.current_task())
        await trio.sleep(0.01)

    lanes = Lanes(work, max_in_flight=100, queue_factor=4)
    async with trio.open_nursery() as nursery:
        await nursery.start(lanes.run)
        for batch in range(3):
            for n in range(6):
                await lanes.admit()
                assert lanes.offer(delivery("ep_1", batch * 10 + n), concurrency=3)
            await lanes.drained(1.0)
            assert lanes.queued("ep_1") == 0 and lanes.workers == 3
        assert len(tasks) == 3  # the same three workers took every batch
        await trio.sleep(LINGER_S * 2 + 1)
        assert lanes.workers == 0
        await lanes.admit()
        assert lanes.offer(delivery("ep_1", 99), concurrency=3)  # a swept lane starts anew
        await lanes.drained(1.0)
        assert len(tasks) == 4 and lanes.workers == 1
        nursery.cancel_scope.cancel()


async def test_appetite_waits_for_queues_to_drain_but_not_for_a_full_lane_that_stopped(
    mock_clock: trio.testing.MockClock,
) -> None:
    gates = {"ep_fast": trio.Semaphore(0), "ep_slow": trio.Semaphore(0)}

    async def work(d: Delivery) -> None:
        await gates[d.endpoint_id].acquire()

    lanes = Lanes(work, max_in_flight=100, queue_factor=4)
    async with trio.open_nursery() as nursery:
        await nursery.start(lanes.run)
        for n in range(8):  # the slow lane is full: 2 sending, 6 queued
            assert lanes.offer(delivery("ep_slow", n), concurrency=2)
        for n in range(10):  # 4 sending, 6 queued
            assert lanes.offer(delivery("ep_fast", n), concurrency=4)
        await trio.testing.wait_all_tasks_blocked()
        assert lanes.waiting() == 12  # the full lane's workers just took work: it is busy
        mock_clock.jump(MOVING_S)
        assert lanes.waiting() == 6  # full, and nothing taken since: its 6 do not count
        fed: list[str] = []

        async def hungry(name: str) -> None:
            await lanes.appetite(5)
            fed.append(name)

        nursery.start_soon(hungry, "intake")
        nursery.start_soon(hungry, "scheduler")  # two may wait at once
        await trio.testing.wait_all_tasks_blocked()
        assert fed == []
        gates["ep_fast"].release()
        await trio.testing.wait_all_tasks_blocked()
        assert fed == [] and lanes.waiting() == 5
        gates["ep_fast"].release()
        await trio.testing.wait_all_tasks_blocked()
        assert sorted(fed) == ["intake", "scheduler"] and lanes.waiting() == 4
        nursery.cancel_scope.cancel()


async def test_appetite_gives_up_waiting_on_lanes_that_do_not_move(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def hang(d: Delivery) -> None:
        await trio.sleep_forever()

    lanes = Lanes(hang, max_in_flight=100, queue_factor=4)
    async with trio.open_nursery() as nursery:
        await nursery.start(lanes.run)
        for n in range(12):  # 4 hanging, 8 queued: not full, so they count
            assert lanes.offer(delivery("ep_hung", n), concurrency=4)
        await trio.testing.wait_all_tasks_blocked()
        started = trio.current_time()
        await lanes.appetite(5)
        assert trio.current_time() - started == pytest.approx(APPETITE_WAIT_S)
        nursery.cancel_scope.cancel()


async def test_admit_waits_for_room_in_the_process() -> None:
    release = trio.Event()

    async def work(d: Delivery) -> None:
        await release.wait()

    lanes = Lanes(work, max_in_flight=1, queue_factor=4)
    async with trio.open_nursery() as nursery:
        await nursery.start(lanes.run)
        await lanes.admit()
        assert lanes.offer(delivery("ep_1"), concurrency=1)
        with trio.move_on_after(0.1) as waited:
            await lanes.admit()
        assert waited.cancelled_caught
        release.set()
        with trio.fail_after(1):
            await lanes.admit()
        nursery.cancel_scope.cancel()


async def test_wakeup_cuts_a_sleep_short_only_for_an_earlier_due_time(
    autojump_clock: trio.testing.MockClock,
) -> None:
    clock = EpochFromTrio()
    wakeup = Wakeup()
    woke: list[float] = []

    async def sleeper() -> None:
        await wakeup.sleep_until(10.0, clock)  # type: ignore[arg-type]
        woke.append(trio.current_time())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(sleeper)
        await trio.sleep(1)
        wakeup.at(20.0)  # later than the planned wake-up: no change
        wakeup.at(4.0)
        await trio.sleep(1)
        wakeup.at(6.0)  # later than the earliest known: no change
    assert woke == [4.0]


async def test_wakeup_forgets_after_waking(autojump_clock: trio.testing.MockClock) -> None:
    clock = EpochFromTrio()
    wakeup = Wakeup()
    wakeup.at(1.0)
    await wakeup.sleep_until(5.0, clock)  # type: ignore[arg-type]
    assert trio.current_time() == 1.0
    await wakeup.sleep_until(5.0, clock)  # type: ignore[arg-type]
    assert trio.current_time() == 5.0


class FakeStore:
    """Records what lands; fails as told, per call."""

    def __init__(self, failures: Sequence[Exception | None] = ()) -> None:
        self.failures = list(failures)
        self.landed: list[list[Write]] = []

    async def apply(self, writes: Sequence[Write]) -> None:
        await trio.lowlevel.checkpoint()
        failure = self.failures.pop(0) if self.failures else None
        if failure is not None:
            raise failure
        self.landed.append(list(writes))


def record(d: Delivery) -> RecordAttempt:
    return RecordAttempt(d, "delivered", None)


async def run_recorder(store: FakeStore, readiness: Readiness, feed: object) -> None:
    recorder = Recorder(store, readiness)  # type: ignore[arg-type]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(recorder.run)
        feed(recorder)  # type: ignore[operator]
        recorder.close()


async def test_an_entry_is_acked_after_its_last_delivery_in_one_batch() -> None:
    store = FakeStore()
    first, second = delivery("ep_1"), delivery("ep_2")
    entry = EntryRef("s", "1-0")
    first, second = (Delivery(d.event, d.endpoint_id, entry, acks=entry) for d in (first, second))

    def feed(recorder: Recorder) -> None:
        recorder.expect(entry, 2)
        recorder.settled(first, [record(first)])
        assert not any(isinstance(w, AckEntry) for batch in store.landed for w in batch)
        recorder.settled(second, [record(second)])

    await run_recorder(store, Readiness(), feed)
    [batch] = store.landed
    assert batch == [record(first), record(second), AckEntry(entry)]


async def test_unavailable_redis_is_retried_until_the_batch_lands(
    autojump_clock: trio.testing.MockClock,
) -> None:
    readiness = Readiness()
    store = FakeStore([StoreUnavailable("down"), StoreUnavailable("down"), None])
    d = delivery("ep_1")
    await run_recorder(store, readiness, lambda r: r.write([record(d)]))
    assert store.landed == [[record(d)]]
    assert readiness.problems == {}
    assert trio.current_time() > 0  # it backed off between tries


async def test_a_refused_unit_is_replaced_by_a_dead_letter_the_rest_lands(
    autojump_clock: trio.testing.MockClock,
) -> None:
    refused = StoreRefused("record.lua: WRONGTYPE")
    # the batch, then unit 1 alone (fine), then unit 2 alone three times, then its letter
    store = FakeStore([refused, None, refused, refused, refused, None])
    good, bad = delivery("ep_1", 1), delivery("ep_2", 2)
    entry = EntryRef("s", "9-0")
    bad = Delivery(bad.event, bad.endpoint_id, entry, acks=entry)

    def feed(recorder: Recorder) -> None:
        recorder.expect(entry, 1)
        recorder.write([record(good)])
        recorder.settled(bad, [record(bad)])

    await run_recorder(store, Readiness(), feed)
    assert store.landed[0] == [record(good)]
    letter, ack = store.landed[1]  # the entry's ack travels in its last delivery's unit
    assert isinstance(letter, AddDeadLetter) and ack == AckEntry(entry)
    assert len(store.landed) == 2
    fields = dict(letter.fields)
    assert fields["event_id"] == "evt_2" and fields["endpoint_id"] == "ep_2"
    assert fields["reason"] == "its outcome could not be recorded: record.lua: WRONGTYPE"
