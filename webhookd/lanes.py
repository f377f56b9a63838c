"""Per-endpoint lanes: deliveries wait in their endpoint's queue and a few workers per
endpoint drain it, instead of one task per delivery.

Two bounds: ``delivery.max_in_flight`` deliveries in the whole process (``admit`` waits
for room, which is how intake and the scheduler feel back-pressure), and a queue per
endpoint of ``factor`` times its concurrency, beyond which ``offer`` refuses so that one
slow endpoint cannot take every slot (the caller defers the delivery to the retry set).
Workers are started when a lane has work and fewer workers than its concurrency. One
that finds its lane empty parks until more work comes, rather than ending: a read batch
refills the lanes every few milliseconds, and starting a task costs more than waking
one. Lanes idle for ``LINGER_S`` are swept, their parked workers ended.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Awaitable, Callable

import trio

from webhookd.model import Delivery

Work = Callable[[Delivery], Awaitable[None]]

APPETITE_WAIT_S = 0.1  # the longest a read loop waits for the lanes to take more
MOVING_S = 1.0  # a full lane whose workers took work this recently is busy, not stuck
LINGER_S = 5.0  # how long a lane's parked workers outlive its last offer (at most twice)


class _Lane:
    __slots__ = ("bound", "offered", "parked", "pending", "queue", "retiring", "taken_at",
                 "workers")  # fmt: skip

    def __init__(self, bound: int) -> None:
        self.bound = bound  # deliveries it takes before offers are refused
        self.queue: deque[Delivery] = deque()
        self.workers = 0
        self.pending = 0  # deliveries offered and not yet done: queued or being sent
        self.parked = trio.lowlevel.ParkingLot()  # workers waiting for the queue to fill
        self.offered = False  # since the last sweep
        self.retiring = False  # the sweep woke the parked workers to end them
        self.taken_at = -math.inf  # when a worker last took a delivery from the queue


class Lanes:
    def __init__(self, work: Work, *, max_in_flight: int, queue_factor: int) -> None:
        self._work = work
        self._slots = trio.Semaphore(max_in_flight)
        self._queue_factor = queue_factor
        self._lanes: dict[str, _Lane] = {}
        self._nursery: trio.Nursery | None = None
        self._active = 0  # deliveries queued or being worked on
        self._all_done = trio.Event()
        self._fed: trio.Event | None = None  # set when a worker takes from its queue

    @property
    def active(self) -> int:
        """Deliveries queued in a lane or being sent."""
        return self._active

    @property
    def room(self) -> int:
        """How many more deliveries the process takes before ``admit`` waits."""
        return self._slots.value

    @property
    def workers(self) -> int:
        """Worker tasks alive, parked ones included."""
        return sum(lane.workers for lane in self._lanes.values())

    def waiting(self) -> int:
        """Deliveries queued in lanes that take more, or whose workers took work within
        ``MOVING_S``: such a lane is only busy (its first TLS handshakes, say), and what
        is read for it meanwhile would overflow. A lane full and still is one whose
        endpoint hangs; what comes for it is deferred anyway, and its queue does not
        count."""
        now = trio.current_time()
        return sum(
            len(lane.queue)
            for lane in self._lanes.values()
            if lane.pending < lane.bound or now - lane.taken_at < MOVING_S
        )

    async def appetite(self, limit: int) -> None:
        """Wait until fewer than ``limit`` deliveries wait, or ``APPETITE_WAIT_S``. Reading
        further ahead only fills lanes to their bound, and what overflows goes to the
        retry set and back: twice the work for every delivery of a backlog. The bound on
        the wait is for lanes whose endpoints hang before their lanes are full: they
        fill up batch by batch, and once full stop counting."""
        with trio.move_on_after(APPETITE_WAIT_S):
            while self.waiting() >= limit:
                if self._fed is None or self._fed.is_set():
                    self._fed = trio.Event()  # shared: intake and the scheduler may wait
                await self._fed.wait()

    def queued(self, endpoint_id: str) -> int:
        lane = self._lanes.get(endpoint_id)
        return 0 if lane is None else lane.pending

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Own the workers; cancelling this cancels every delivery in flight."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            while True:
                await trio.sleep(LINGER_S)
                self._sweep()

    def _sweep(self) -> None:
        """End the parked workers of lanes offered nothing since the last sweep."""
        for lane in self._lanes.values():
            if not lane.offered and lane.parked:
                lane.retiring = True
                lane.parked.unpark_all()
            lane.offered = False

    async def admit(self) -> None:
        """Wait for room for one more delivery in this process."""
        try:
            self._slots.acquire_nowait()
        except trio.WouldBlock:
            await self._slots.acquire()

    def offer(self, delivery: Delivery, concurrency: int, *, force: bool = False) -> bool:
        """Queue an admitted delivery on its endpoint's lane; False (and the slot given
        back) when the lane is full, unless ``force`` (it was already counted against a
        quota, and must be attempted now)."""
        lane = self._lanes.get(delivery.endpoint_id)
        bound = concurrency * self._queue_factor
        if lane is None:
            lane = self._lanes[delivery.endpoint_id] = _Lane(bound)
        lane.bound = bound
        if not force and lane.pending >= bound:
            self._slots.release()
            return False
        lane.queue.append(delivery)
        lane.pending += 1
        lane.offered = True
        lane.retiring = False
        self._active += 1
        if lane.parked:
            lane.parked.unpark()
        elif lane.workers < concurrency:
            assert self._nursery is not None, "Lanes.run must be started first"
            lane.workers += 1
            self._nursery.start_soon(self._drain, delivery.endpoint_id, lane)
        return True

    async def drained(self, grace_s: float) -> None:
        """Wait, at most ``grace_s``, until nothing is queued or in flight."""
        with trio.move_on_after(grace_s):
            while self._active:
                self._all_done = trio.Event()
                await self._all_done.wait()

    async def _drain(self, endpoint_id: str, lane: _Lane) -> None:
        try:
            while True:
                while lane.queue:
                    delivery = lane.queue.popleft()
                    lane.taken_at = trio.current_time()
                    if self._fed is not None:
                        self._fed.set()
                    try:
                        await self._work(delivery)
                    finally:
                        self._slots.release()
                        lane.pending -= 1
                        self._active -= 1
                        if not self._active:
                            self._all_done.set()
                if lane.retiring:
                    return
                await lane.parked.park()
        finally:
            lane.workers -= 1
            if not lane.workers and not lane.queue:
                del self._lanes[endpoint_id]
