"""API keys as gateways use them: ``mk_live_`` + 32 random characters, stored as SHA-256.

A key is shown once, when it is made; Redis keeps only its SHA-256 with the vendor it
belongs to and, optionally, a plan of its own (tighter than its vendor's: both apply).
Its id, ``key_`` + the first 16 hex digits of that digest, names it in listings and
commands without revealing it, and is derived from the key, so looking a key up is one
``HGETALL`` (and one ``HGET`` of its vendor's plan, ``vendors.py``)::

    <prefix>:apikey:<id>   hash   sha256, vendor, plan ("" for none), created, revoked
    <prefix>:apikeys       set    every id, for listing

The service looks keys up through an in-process cache (trio's clock), unknown keys
included, so a stream of requests with one key costs one Redis read per ``cache_ttl_s``
and a revocation or a vendor's new plan reaches every process within that time. Each
entry lives between 80 % and all of that time, at random, so keys cached together (at
start, say) are not read again all at once, stalling the requests behind them; the
service reads them over its ``rediswire`` connection, a quarter of coredis's cost. When
Redis fails or does not answer within ``timeout_s``, an expired entry is still used
rather than none: a key known to be unknown or revoked stays refused while Redis
hangs. Every coredis failure comes out as ``BackendError``.
"""

from __future__ import annotations

import contextlib
import enum
import functools
import hashlib
import hmac
import math
import random
import secrets
import string
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

import anyio
import trio
from coredis.exceptions import RedisError

from ratelimiter.async_redis import AsyncRedisClient
from ratelimiter.errors import BackendError, UnknownApiKey
from ratelimiter.limit import Limit
from ratelimiter.policy import Plan
from ratelimiter.vendors import PLAN_FIELD, record_key
from rediswire import ReplyError, Wire, WireUnavailable

KEY_PREFIX = "mk_live_"
KEY_CHARS = 32
_ALPHABET = string.ascii_letters + string.digits  # 32 of these 62 carry 190 random bits
_FAILURES = (RedisError, OSError, anyio.BrokenResourceError, anyio.ClosedResourceError,
             WireUnavailable, ReplyError)  # fmt: skip
TTL_JITTER = 0.2  # a cached entry lives between (1 - this) and all of cache_ttl_s


@dataclass(frozen=True, slots=True)
class ApiKey:
    """What is known of a key: never the key itself. ``plan`` is the key's own plan (None:
    its vendor's alone applies); ``revoked`` is when it was revoked, if it was."""

    id: str
    vendor: str
    plan: str | None
    created: int
    revoked: int | None = None

    def public(self) -> dict[str, object]:
        return {
            "id": self.id,
            "vendor": self.vendor,
            "plan": self.plan,
            "created": self.created,
            "revoked": self.revoked,
        }


@dataclass(frozen=True, slots=True)
class Credential:
    """A presented key's record, and its vendor's plan (None: the vendor has no record)."""

    key: ApiKey
    vendor_plan: str | None


@functools.lru_cache(maxsize=4096)
def key_limits(plan: Plan, key_id: str) -> tuple[Limit, ...]:
    """A key's own plan, as limits counted for that key alone (scoped to its id), so they
    can sit in its vendor's counter hash and be checked in one step with the vendor's."""
    return tuple(
        Limit(limit.amount, limit.window_s, limit.exact, scope=key_id, name=f"key-{limit.policy}")
        for limit in plan.limits
    )


class _Miss(enum.Enum):
    MISS = "miss"


NOT_CACHED: Literal[_Miss.MISS] = _Miss.MISS


def new_key() -> str:
    return KEY_PREFIX + "".join(secrets.choice(_ALPHABET) for _ in range(KEY_CHARS))


def digest_of(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()


def id_of(key_or_id: str) -> str:
    """The id of an ``mk_live_`` key, or the argument itself when it is an id already."""
    return f"key_{digest_of(key_or_id)[:16]}" if key_or_id.startswith(KEY_PREFIX) else key_or_id


class KeyStore:
    """API keys in Redis, with the service's look-up cache."""

    def __init__(
        self,
        client: AsyncRedisClient,
        *,
        prefix: str = "rl",
        cache_ttl_s: float = 5.0,
        cache_size: int = 100_000,
        timeout_s: float = math.inf,
        wire: Wire | None = None,
    ) -> None:
        self._client: Any = client
        self._wire = wire  # for look-ups, when given
        self._prefix = prefix
        self._cache_ttl_s = cache_ttl_s
        self._cache_size = cache_size
        self._timeout_s = timeout_s
        self._cache: dict[str, tuple[Credential | None, float]] = {}

    def _record_key(self, key_id: str) -> str:
        return f"{self._prefix}:apikey:{key_id}"

    async def create(self, vendor: str, plan: str | None, *, now_s: float) -> tuple[str, ApiKey]:
        """A new key and its record; the key itself is not kept anywhere."""
        key = new_key()
        record = ApiKey(id_of(key), vendor, plan, int(now_s))
        fields = {"sha256": digest_of(key), "vendor": vendor, "plan": plan or "",
                  "created": str(record.created), "revoked": ""}  # fmt: skip
        with _translated():
            await self._client.hset(self._record_key(record.id), fields)
            await self._client.sadd(f"{self._prefix}:apikeys", [record.id])
        return key, record

    async def all(self) -> list[ApiKey]:
        with _translated():
            ids = sorted(_text(i) for i in await self._client.smembers(f"{self._prefix}:apikeys"))
            found = [await self._fetch(key_id) for key_id in ids]
        return sorted((record for record, _ in filter(None, found)), key=lambda r: r.created)

    async def get(self, key_or_id: str) -> ApiKey:
        with _translated():
            found = await self._fetch(id_of(key_or_id))
        if found is None:
            raise UnknownApiKey(f"no API key {id_of(key_or_id)}")
        return found[0]

    async def revoke(self, key_or_id: str, *, now_s: float) -> ApiKey:
        record = await self.get(key_or_id)
        if record.revoked is not None:
            return record
        with _translated():
            await self._client.hset(self._record_key(record.id), {"revoked": str(int(now_s))})
        return await self.get(record.id)

    async def set_plan(self, key_or_id: str, plan: str | None) -> ApiKey:
        """Give a key a plan of its own, or (None) take it away."""
        record = await self.get(key_or_id)
        with _translated():
            await self._client.hset(self._record_key(record.id), {"plan": plan or ""})
        return await self.get(record.id)

    def cached(self, key: str) -> Credential | Literal[_Miss.MISS] | None:
        """What ``lookup`` would answer without going to Redis, else ``NOT_CACHED``: the
        service's requests with a known key need no time bound of their own."""
        cached = self._cache.get(digest_of(key))
        if cached is not None and cached[1] > trio.current_time():
            return cached[0]
        return NOT_CACHED

    async def lookup(self, key: str) -> Credential | None:
        """The record of ``key`` (revoked ones too) with its vendor's plan, None if there is
        none; cached. ``BackendError`` only when Redis fails and nothing is cached."""
        digest = digest_of(key)
        now = trio.current_time()
        cached = self._cache.get(digest)
        if cached is not None and cached[1] > now:
            return cached[0]
        try:
            with trio.fail_after(self._timeout_s), _translated():
                credential = await self._credential(digest)
        except (BackendError, trio.TooSlowError) as error:
            if cached is not None:
                return cached[0]  # stale, but better than failing the request
            if isinstance(error, BackendError):
                raise
            raise BackendError(f"no answer from Redis within {self._timeout_s} s") from None
        if len(self._cache) >= self._cache_size:
            self._cache = {d: entry for d, entry in self._cache.items() if entry[1] > now}
            if len(self._cache) >= self._cache_size:
                self._cache.clear()
        ttl_s = self._cache_ttl_s * (1 - TTL_JITTER * random.random())
        self._cache[digest] = (credential, now + ttl_s)
        return credential

    async def _credential(self, digest: str) -> Credential | None:
        found = await self._fetch(f"key_{digest[:16]}")
        if found is None or not hmac.compare_digest(found[1], digest):
            return None
        record = found[0]
        vendor = record_key(self._prefix, record.vendor)
        if self._wire is None:
            plan = await self._client.hget(vendor, PLAN_FIELD)
        else:
            plan = await self._wire.call("HGET", vendor, PLAN_FIELD, route=vendor)
        return Credential(record, _text(plan) if plan else None)

    async def _fetch(self, key_id: str) -> tuple[ApiKey, str] | None:
        """The record and its stored digest, or None."""
        key = self._record_key(key_id)
        if self._wire is None:
            pairs = (await self._client.hgetall(key)).items()
        else:
            flat = await self._wire.call("HGETALL", key, route=key)
            assert isinstance(flat, list), flat  # HGETALL answers an array
            pairs = zip(flat[::2], flat[1::2], strict=True)
        fields = {_text(k): _text(v) for k, v in pairs}
        if "sha256" not in fields:
            return None
        revoked = fields.get("revoked") or None
        record = ApiKey(
            key_id,
            fields.get("vendor", ""),
            fields.get("plan") or None,
            int(fields.get("created") or 0),
            None if revoked is None else int(revoked),
        )
        return record, fields["sha256"]


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


@contextlib.contextmanager
def _translated() -> Iterator[None]:
    """Turns every coredis failure inside the block into ``BackendError``."""
    try:
        yield
    except _FAILURES as error:
        raise BackendError(f"Redis failed: {error}") from error
