"""The Lua scripts' sources, the Redis key layout, and the scripts' arguments and replies.

Shared by the redis-py and coredis edges so both speak to Redis the same way.

Key layout, for a key ``K`` under the prefix ``rl``::

    rl:{K}                   hash: per counter limit "<id>" (the count of window number
                             "<id>:i") and "<id>:p" (the previous window's count); per
                             sliding log "log:<id>", naming its key; and "x", the
                             expiry (ms) last given to the hash
    rl:{K}:log:<id>          sorted set: one member per admitted unit, scored by its ms

``<id>`` is ``amount/window_s``, with ``@scope`` for route limits. Every key of one key
carries the same hash tag ``{K}``, so one check touches a single Redis Cluster slot.
Inside the tag, ``%``, ``{`` and ``}`` of ``K`` are written ``%25``, ``%7B`` and ``%7D``:
a key that starts with ``}`` would otherwise make an empty tag, and Redis Cluster would
hash each key of the check whole, into different slots.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Sequence
from importlib import resources

from ratelimiter.backend import Check, Outcome
from ratelimiter.errors import BackendError
from ratelimiter.limit import Limit
from rediswire import key_slot

DECIDE = resources.files("ratelimiter").joinpath("lua/decide.lua").read_text()
RESET = resources.files("ratelimiter").joinpath("lua/reset.lua").read_text()
SHA1 = {source: hashlib.sha1(source.encode()).hexdigest() for source in (DECIDE, RESET)}
"""Each script's digest, for ``EVALSHA``."""

Arguments = tuple[list[str], list[str]]


_TAG_ESCAPES = str.maketrans({"%": "%25", "{": "%7B", "}": "%7D"})


def hash_key(prefix: str, key: str) -> str:
    """The counter hash of ``key``: its braces make ``key`` (escaped) the cluster hash tag."""
    return f"{prefix}:{{{key.translate(_TAG_ESCAPES)}}}"


def slot_groups(prefix: str, checks: Sequence[Check]) -> list[list[int]]:
    """The checks' positions by Redis Cluster slot (every key of a check shares its hash
    tag): one script call each, since a script may touch one slot only."""
    slots: dict[int, list[int]] = {}
    for position, check in enumerate(checks):
        slots.setdefault(key_slot(hash_key(prefix, check.key).encode()), []).append(position)
    return list(slots.values())


def encode(prefix: str, checks: Sequence[Check]) -> Arguments:
    """KEYS and ARGV of ``decide.lua`` for a batch of checks.

    Each distinct tuple of limits is sent once, as a limit set the checks point at.
    """
    keys: list[str] = []
    args = [str(len(checks))]
    set_args: list[str] = []
    sets: dict[int, tuple[int, tuple[str, ...]]] = {}  # by id: where each set is, its logs
    sets_at = len(checks) + 2  # ARGV is 1-based; the sets follow the checks
    for check in checks:
        limits = check.limits
        found = sets.get(id(limits))
        if found is None:
            found = sets[id(limits)] = (sets_at + len(set_args), _log_ids(limits))
            set_args += _set_args(limits)
        position, log_ids = found
        hashed = hash_key(prefix, check.key)
        keys.append(hashed)
        for storage_id in log_ids:
            keys.append(f"{hashed}:log:{storage_id}")
        now = "" if check.now_ms is None else check.now_ms
        args.append(f"{position}:{check.cost}:{1 if check.consume else 0}:{now}")
    args += set_args
    return keys, args


def decode(checks: Sequence[Check], reply: object) -> list[Outcome | BackendError]:
    """Split ``decide.lua``'s reply (numbers in one string, then the messages of checks
    that failed) into one outcome per check, or the error of a check that failed."""
    messages: list[object] = []
    if isinstance(reply, list) and reply:
        reply, *messages = reply
    if not isinstance(reply, bytes | str):
        raise BackendError(f"unexpected reply from the decide script: {reply!r}")
    numbers = list(map(int, reply.split()))
    failures = iter(messages)
    outcomes: list[Outcome | BackendError] = []
    position = 0
    for check in checks:
        now_ms, allowed = numbers[position], numbers[position + 1] == 1
        if numbers[position + 1] == -1:
            message = _text(next(failures, "no message"))
            outcomes.append(BackendError(f"the decision failed in Redis: {message}"))
            position += 2
            continue
        states = []
        for _ in check.limits:
            states.append((numbers[position + 2], numbers[position + 3], numbers[position + 4]))
            position += 3
        outcomes.append(Outcome(now_ms, allowed, tuple(states)))
        position += 2
    return outcomes


def _text(value: object) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


@functools.lru_cache(maxsize=1024)
def _set_args(limits: tuple[Limit, ...]) -> tuple[str, ...]:
    """A limit set as ``decide.lua`` reads it: size, kinds, hash fields, then figures."""
    fields: list[str] = []
    for limit in limits:
        if limit.exact:
            fields.append(f"log:{limit.storage_id}")
        else:
            fields += (limit.storage_id, f"{limit.storage_id}:i", f"{limit.storage_id}:p")
    return (
        str(len(limits)),
        *("1" if limit.exact else "0" for limit in limits),
        *fields,
        *(str(limit.amount) for limit in limits),
        *(str(limit.window_ms) for limit in limits),
    )


@functools.lru_cache(maxsize=1024)
def _log_ids(limits: tuple[Limit, ...]) -> tuple[str, ...]:
    return tuple(limit.storage_id for limit in limits if limit.exact)
