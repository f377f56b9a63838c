"""Readiness: whether this process can read and record right now (``/readyz``).

The loops that talk to Redis report here; a part stays failing from its first failed
call until its next success, so a load balancer or an operator sees a daemon that is
up but stuck (Redis gone, the consumer group lost) as not ready.
"""

from __future__ import annotations


class Readiness:
    __slots__ = ("_failing",)

    def __init__(self) -> None:
        self._failing: dict[str, str] = {}

    def failing(self, part: str, error: str) -> None:
        self._failing[part] = error

    def recovered(self, part: str) -> None:
        self._failing.pop(part, None)

    @property
    def problems(self) -> dict[str, str]:
        """What is failing, by part (``read:<stream>``, ``record``, …); empty when ready."""
        return dict(self._failing)
