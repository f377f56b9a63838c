"""The epoch clock: wall-clock seconds derived from trio's clock.

Anything stored in or shared through Redis (retry due times, signing timestamps)
needs epoch time; sleeps and timeouts need trio's clock. Deriving one from the other
lets a test's ``MockClock`` drive both.
"""

from __future__ import annotations

import time

import trio


class EpochClock:
    """Must be created inside ``trio.run``: it pins the offset between the two clocks."""

    __slots__ = ("_offset_s",)

    def __init__(self) -> None:
        self._offset_s = time.time() - trio.current_time()

    def now_s(self) -> float:
        return self._offset_s + trio.current_time()

    def at(self, trio_s: float) -> float:
        """The epoch time of a reading of trio's clock, for a caller that needs both."""
        return self._offset_s + trio_s
