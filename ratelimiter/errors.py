"""The exception tree of ratelimiter.

RateLimiterError
├── InvalidRequest       a hit that cannot be evaluated (also a ValueError)
│   ├── InvalidLimit     a limit expression that does not parse, e.g. "50/week"
│   └── UnknownPlan      a plan name the plans file does not define
├── ConfigError          a plans file, routes table or backend URL that cannot be used
├── UnknownApiKey        no API key has that id (also a LookupError)
└── BackendError         the store failed; every redis-py and coredis exception is
                         translated into this one, with the original as ``__cause__``

A refused hit is not an error: it is a ``Decision`` with ``allowed`` false.
"""

from __future__ import annotations


class RateLimiterError(Exception):
    """Root of every error ratelimiter raises on purpose."""


class InvalidRequest(RateLimiterError, ValueError):
    """A hit whose arguments cannot be evaluated (empty key, cost below 1, ...)."""


class InvalidLimit(InvalidRequest):
    """A limit expression that is not ``<N>/<unit>``; the message shows the expression."""


class UnknownPlan(InvalidRequest):
    """A plan name that is not in the plans file; the message lists the known plans."""


class ConfigError(RateLimiterError):
    """Configuration that cannot be used; the message names the file and key."""


class BackendError(RateLimiterError):
    """The store (Redis) failed or timed out; the decision could not be taken."""


class UnknownApiKey(RateLimiterError, LookupError):
    """No API key has that id (or that key was never made)."""
