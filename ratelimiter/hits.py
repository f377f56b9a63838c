"""What ``Limiter`` and ``AsyncLimiter`` share: hit arguments in, a store check out, and
a store's outcome in, a decision out.

Pure: no clock is read here. A check carries the injected clock's reading, or None for
the store's own clock; a hit with no limit at all never reaches a store, so its
decision is timed by the clock the front passes in.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from pathlib import Path

from ratelimiter.backend import Check, Outcome
from ratelimiter.decision import Decision, decide
from ratelimiter.errors import InvalidRequest
from ratelimiter.limit import Limit
from ratelimiter.policy import Policy, load_policy

Clock = Callable[[], float]
"""Unix time in seconds; injected for tests, else the store's own clock is used."""

PlansSource = str | Path | Policy | None


class Rules:
    """The plans, routes and injected clock of a limiter, shared by the sync and async fronts."""

    def __init__(
        self,
        plans: PlansSource,
        routes: Mapping[str, str | Limit] | None,
        clock: Clock | None,
    ) -> None:
        policy = plans if isinstance(plans, Policy) else load_policy(plans)
        self.policy = policy.with_routes(routes) if routes else policy
        self.clock = clock
        self._limits_for = functools.lru_cache(maxsize=1024)(self.policy.limits_for)

    def check(
        self,
        key: str,
        limits: tuple[str | Limit, ...],
        plan: str | None,
        route: str | None,
        cost: int,
        consume: bool,
    ) -> Check:
        """The check a hit (or a peek) asks of the store; ``InvalidRequest`` if it is bad."""
        if not isinstance(key, str) or not key:
            raise InvalidRequest(f"a key must be a non-empty string, got {key!r}")
        if type(cost) is not int or cost < 1:
            raise InvalidRequest(f"cost must be a positive integer, got {cost!r}")
        now_ms = None if self.clock is None else round(self.clock() * 1000)
        return Check(key, self._limits_for(limits, plan, route), cost, consume, now_ms)


def unlimited(check: Check, clock: Clock) -> Decision:
    """The decision of a hit with no limit at all, taken without the store: allowed, at
    the check's time or else ``clock``'s."""
    now_ms = round(clock() * 1000) if check.now_ms is None else check.now_ms
    return decide((), (), True, now_ms)


def decision_of(check: Check, outcome: Outcome) -> Decision:
    """The decision a store's outcome makes of a check."""
    return decide(check.limits, outcome.states, outcome.allowed, outcome.now_ms)
