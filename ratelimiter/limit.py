"""Limit expressions (``"50/m"``, ``"10000/day"``) and the ``Limit`` value they parse into."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field

from ratelimiter.errors import InvalidLimit

UNIT_SECONDS = {
    "s": 1,
    "second": 1,
    "m": 60,
    "minute": 60,
    "h": 3600,
    "hour": 3600,
    "d": 86400,
    "day": 86400,
}
UNIT_NAMES = {1: "second", 60: "minute", 3600: "hour", 86400: "day"}

# The Lua scripts count in doubles: amount x window in milliseconds must stay below 2**53
# for their arithmetic to be exact (100,000,000 per day fits).
EXACT_PRODUCT_MAX = 2**53

_EXPRESSION = re.compile(r"\s*([0-9]+)\s*/\s*([a-z]+)\s*")


@dataclass(frozen=True, slots=True)
class Limit:
    """At most ``amount`` units per sliding window of ``window_s`` seconds.

    ``exact`` picks the sliding log over the (default) sliding-window counter. ``scope``
    separates counters: limits with the same scope, amount, window and algorithm share
    one counter per key, so a plan's "50/minute" and an ad-hoc "50/m" count once.
    ``name`` is the policy name shown in the ``RateLimit`` header fields.
    """

    amount: int
    window_s: int
    exact: bool = False
    scope: str = ""
    name: str = ""
    # Derived once, since every decision reads them.
    window_ms: int = field(init=False, repr=False, compare=False)
    storage_id: str = field(init=False, repr=False, compare=False)
    """What identifies this limit's counter under a key (the algorithm aside)."""

    def __post_init__(self) -> None:
        if self.amount < 1 or self.window_s < 1:
            raise InvalidLimit(
                f"a limit needs a positive amount and window, got {self.amount}/{self.window_s}s"
            )
        if self.amount * self.window_s * 1000 >= EXACT_PRODUCT_MAX:
            raise InvalidLimit(
                f"limit {self.amount}/{self.window_s}s is too large: amount x window must "
                "stay below 100,000,000 per day"
            )
        storage_id = f"{self.amount}/{self.window_s}"
        object.__setattr__(self, "window_ms", self.window_s * 1000)
        object.__setattr__(
            self, "storage_id", f"{storage_id}@{self.scope}" if self.scope else storage_id
        )

    @property
    def unit(self) -> str:
        """``minute`` for a 60 s window; ``90 seconds`` for windows with no unit name."""
        return UNIT_NAMES.get(self.window_s, f"{self.window_s} seconds")

    @property
    def policy(self) -> str:
        """The name used in headers: the given name, else the expression."""
        return self.name or str(self)

    def __str__(self) -> str:
        return f"{self.amount}/{self.unit}"


@functools.lru_cache(maxsize=1024)
def parse_limit(text: str, *, exact: bool = False, scope: str = "", name: str = "") -> Limit:
    """Parse ``"<N>/<unit>"``; unit is one of ``s m h d`` or ``second minute hour day``."""
    match = _EXPRESSION.fullmatch(text) if isinstance(text, str) else None
    if match is None or match.group(2) not in UNIT_SECONDS:
        raise InvalidLimit(
            f"bad limit expression {text!r}: expected '<N>/<unit>' with unit one of "
            "s, m, h, d, second, minute, hour, day (e.g. '50/m', '10000/day')"
        )
    amount = int(match.group(1))
    if amount < 1:
        raise InvalidLimit(f"bad limit expression {text!r}: the amount must be at least 1")
    return Limit(amount, UNIT_SECONDS[match.group(2)], exact=exact, scope=scope, name=name)


def as_limit(limit: str | Limit) -> Limit:
    """A ``Limit`` as given, or parsed from its expression."""
    return limit if isinstance(limit, Limit) else parse_limit(limit)
