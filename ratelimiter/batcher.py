"""Coalescing concurrent checks into one round trip, with no task of its own.

Whoever submits a check while no flush is in flight becomes the flusher: it lets the
tasks that are ready to run go first (one pass of the scheduler), takes everything
queued by then (its own check included), sends it in one call, hands each waiter its
outcome, and, if more checks queued up meanwhile, wakes the first of their owners to
flush next. Everyone else just waits. Under load each round trip carries everything
that arrived during the previous one; the pass matters when requests arrive together
(read from their sockets in one wake-up), which would otherwise send the first alone
and the rest a round trip later: a batch of one costs a round trip's whole CPU.
Nothing runs outside the callers' own tasks, so it fits trio's and asyncio's structured
concurrency alike (through anyio).

The send is shielded and bounded by ``timeout_s``: a flusher cancelled mid-flight
still delivers the other waiters' outcomes (and cancellation reaches it right after).
A waiter cancelled before its check went out takes the check back; one cancelled
after may have been counted. ``send`` answers each check with its outcome or its own
error: one check that fails fails only its own caller.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any

import anyio

from ratelimiter.backend import Check, Outcome
from ratelimiter.errors import BackendError

Send = Callable[[Sequence[Check]], Awaitable[list[Outcome | BackendError]]]


class _Pending:
    __slots__ = ("check", "error", "outcome", "wakeup")

    def __init__(self, check: Check) -> None:
        self.check = check
        self.outcome: Outcome | None = None
        self.error: Exception | None = None
        self.wakeup: anyio.Event | None = None

    def wake(self) -> None:
        if self.wakeup is not None:
            self.wakeup.set()


class Coalescer:
    """Sends the checks of concurrent ``submit`` calls together through ``send``."""

    def __init__(self, send: Send, *, timeout_s: float) -> None:
        self._send = send
        self._timeout_s = timeout_s
        self._queue: list[_Pending] = []
        self._flushing = False
        self._event: type[anyio.Event] | None = None

    async def submit(self, check: Check) -> Outcome:
        pending = _Pending(check)
        self._queue.append(pending)
        try:
            while pending.outcome is None and pending.error is None:
                if self._flushing:
                    pending.wakeup = self._new_event()
                    await pending.wakeup.wait()
                else:
                    await self._flush()
        except BaseException:
            if pending in self._queue:
                self._queue.remove(pending)
            self._hand_over()
            raise
        if pending.error is not None:
            raise BackendError(str(pending.error)) from pending.error
        assert pending.outcome is not None
        return pending.outcome

    async def submit_many(self, checks: Sequence[Check]) -> list[Outcome | BackendError]:
        """Several checks queued at once, so they go out in one round trip (unless a flush
        is in flight, then in the next); each answered with its outcome or its error."""
        pendings = [_Pending(check) for check in checks]
        self._queue.extend(pendings)
        try:
            while True:
                waiting = next((p for p in pendings if p.outcome is None and p.error is None),
                               None)  # fmt: skip
                if waiting is None:
                    break
                if self._flushing:
                    waiting.wakeup = self._new_event()
                    await waiting.wakeup.wait()
                else:
                    await self._flush()
        except BaseException:
            self._queue = [p for p in self._queue if p not in pendings]
            self._hand_over()
            raise
        return [
            p.outcome if p.error is None else BackendError(str(p.error))  # type: ignore[misc]
            for p in pendings
        ]

    async def _flush(self) -> None:
        self._flushing = True
        await anyio.lowlevel.cancel_shielded_checkpoint()  # cancellation: after the send
        batch, self._queue = self._queue, []
        try:
            with anyio.move_on_after(self._timeout_s, shield=True):
                try:
                    outcomes = await self._send([pending.check for pending in batch])
                except Exception as error:
                    for pending in batch:
                        pending.error = error
                else:
                    for pending, outcome in zip(batch, outcomes, strict=True):
                        if isinstance(outcome, BackendError):
                            pending.error = outcome
                        else:
                            pending.outcome = outcome
        finally:
            self._flushing = False
            timed_out = BackendError(f"no answer from Redis within {self._timeout_s} s")
            for pending in batch:
                if pending.outcome is None and pending.error is None:
                    pending.error = timed_out
                pending.wake()
            self._hand_over()

    def _new_event(self) -> anyio.Event:
        """An event of the running event loop's kind.

        ``anyio.Event()`` looks the event loop up every time; the class it returns is
        kept and called directly, which is a third of the cost (one event per check).
        """
        if self._event is None:
            event = anyio.Event()
            self._event = type(event)
            return event
        return self._event()

    def _hand_over(self) -> None:
        """Wake the owner of the oldest queued check to flush, unless a flush is in flight."""
        if not self._flushing and self._queue:
            self._queue[0].wake()


class CoalescedStore:
    """The base of a store whose ``decide`` and ``decide_many`` share round trips: both
    are the coalescer's own entry points, one coroutine less on the hottest path."""

    def __init__(self, send: Send, *, timeout_s: float) -> None:
        coalescer = Coalescer(send, timeout_s=timeout_s)
        self.decide: Callable[[Check], Coroutine[Any, Any, Outcome]] = coalescer.submit
        self.decide_many: Callable[
            [Sequence[Check]], Coroutine[Any, Any, list[Outcome | BackendError]]
        ] = coalescer.submit_many
