"""The decision of one hit, and how it is rendered: header fields and the 429 body.

Header fields follow draft-ietf-httpapi-ratelimit-headers-11: ``RateLimit-Policy`` lists
every limit of the hit as a structured-field list (``"basic-minute";q=50;w=60``), the
binding one first; ``RateLimit`` gives the binding limit's available quota and
effective window (``"basic-minute";r=12;t=30``). The older ``X-RateLimit-*`` trio and
``Retry-After`` (on refusals) are rendered too, from the same figures.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import NamedTuple

from ratelimiter.limit import Limit

LimitState = tuple[int, int, int]
"""``(remaining, reset_ms, retry_ms)`` of one limit; ``retry_ms`` is 0 when it fits."""


class Decision(NamedTuple):
    """The answer to one hit; every figure is that of the binding limit.

    The binding limit is the one that refused the hit (the one to wait longest for when
    several did), else the one with the fewest units left. ``reset`` is when it is back
    to its full amount (unix seconds, rounded up); ``retry_after`` the seconds until the
    same hit would be admitted, 0 when allowed. ``at`` is when the decision was taken
    (unix seconds, on the store's clock: Redis ``TIME`` unless a clock was injected).
    A hit with no limit at all is allowed, with ``binding`` None and zero figures.

    Immutable like the other values here, but a named tuple rather than a frozen
    dataclass: one is built on every hit, and it costs a quarter as much to build.
    """

    allowed: bool
    limit: int
    remaining: int
    reset: int
    retry_after: float
    binding: Limit | None
    limits: tuple[Limit, ...]
    at: float

    def headers(self) -> dict[str, str]:
        """Response header fields for this decision; none when no limit applied."""
        return dict(self.header_fields())

    def header_fields(self) -> tuple[tuple[str, str], ...]:
        """``headers()`` as (name, value) pairs, as an HTTP answer carries them."""
        binding = self.binding
        if binding is None:
            return ()
        remaining = str(self.remaining)
        policy, name = _policy_fields(binding, self.limits)
        if self.allowed:
            window_left = max(self.reset - math.ceil(self.at), 0)
            return (
                ("X-RateLimit-Limit", str(self.limit)),
                ("X-RateLimit-Remaining", remaining),
                ("X-RateLimit-Reset", str(self.reset)),
                ("RateLimit-Policy", policy),
                ("RateLimit", f"{name};r={remaining};t={window_left}"),
            )
        retry_after = str(_whole_seconds(self.retry_after))
        return (
            ("X-RateLimit-Limit", str(self.limit)),
            ("X-RateLimit-Remaining", remaining),
            ("X-RateLimit-Reset", str(self.reset)),
            ("RateLimit-Policy", policy),
            ("RateLimit", f"{name};r={remaining};t={retry_after}"),
            ("Retry-After", retry_after),
        )

    def error_body(self) -> dict[str, object]:
        """The JSON body of a refusal (429): what was exceeded and when to come back."""
        retry_after = _whole_seconds(self.retry_after)
        if self.binding is None:
            message = "Rate limit exceeded."
        else:
            seconds = "second" if retry_after == 1 else "seconds"
            message = (
                f"Rate limit exceeded: {self.limit} requests per {self.binding.unit} "
                f"({self.binding.policy}). Retry in {retry_after} {seconds}."
            )
        return {"error": "rate_limit_exceeded", "message": message, "retry_after": retry_after}

    def as_dict(self) -> dict[str, object]:
        """The decision as plain JSON-ready values."""
        return {
            "allowed": self.allowed,
            "limit": self.limit,
            "remaining": self.remaining,
            "reset": self.reset,
            "retry_after": self.retry_after,
            "policy": None if self.binding is None else self.binding.policy,
        }


def decide(
    limits: tuple[Limit, ...], states: Sequence[LimitState], allowed: bool, now_ms: int
) -> Decision:
    """Fold the per-limit states of one hit into its decision."""
    at = now_ms / 1000
    if not limits:
        return Decision(True, 0, 0, math.ceil(at), 0.0, None, limits, at)
    best = 0
    if allowed:
        # Fewest units left binds; on a tie, the limit that takes longest to refill.
        for index in range(1, len(states)):
            remaining, reset_ms, _ = states[index]
            if remaining < states[best][0] or (
                remaining == states[best][0] and reset_ms > states[best][1]
            ):
                best = index
    else:
        for index in range(1, len(states)):
            if states[index][2] > states[best][2]:
                best = index
    remaining, reset_ms, retry_ms = states[best]
    binding = limits[best]
    return Decision(
        allowed,
        binding.amount,
        remaining,
        -(-reset_ms // 1000),
        retry_ms / 1000,
        binding,
        limits,
        at,
    )


def _whole_seconds(seconds: float) -> int:
    """Delay-seconds for HTTP: rounded up, at least 1 when there is anything to wait."""
    return math.ceil(seconds) if seconds > 0 else 0


_POLICY_FIELDS: dict[tuple[int, int], tuple[Limit, tuple[Limit, ...], tuple[str, str]]] = {}
_KEPT_POLICIES = 4096


def _policy_fields(binding: Limit, limits: tuple[Limit, ...]) -> tuple[str, str]:
    """``RateLimit-Policy`` (the binding limit first) and the binding limit's name as a
    structured-field string, kept by identity: the limiter hands out the same tuple of
    limits for the same plan and route, and hashing limits costs more than rendering."""
    entry = _POLICY_FIELDS.get((id(binding), id(limits)))
    if entry is not None and entry[0] is binding and entry[1] is limits:
        return entry[2]
    others = [limit for limit in limits if limit is not binding]
    policy = ", ".join(_policy_item(limit) for limit in (binding, *others))
    fields = (policy, _sf_string(binding.policy))
    if len(_POLICY_FIELDS) >= _KEPT_POLICIES:
        _POLICY_FIELDS.clear()
    _POLICY_FIELDS[(id(binding), id(limits))] = (binding, limits, fields)
    return fields


def _policy_item(limit: Limit) -> str:
    return f"{_sf_string(limit.policy)};q={limit.amount};w={limit.window_s}"


@functools.lru_cache(maxsize=4096)  # a few names (plans, routes) recur on every answer
def _sf_string(text: str) -> str:
    """A structured-field String (RFC 9651): printable ASCII, quotes and backslashes escaped."""
    printable = "".join(ch if " " <= ch <= "~" else "?" for ch in text)
    return '"' + printable.replace("\\", "\\\\").replace('"', '\\"') + '"'
