"""The coredis store: concurrent checks coalesced into one ``EVALSHA`` per round trip.

``decide.lua`` takes a batch of checks, so on a single Redis everything the coalescer
gathered goes out as one script call. On Redis Cluster a script may only touch one
slot: the batch is split by slot (every key of a check shares the check's hash tag)
and the parts go out together in one cluster pipeline. The script is called by its
SHA1 and loaded only when Redis answers ``NOSCRIPT``. Every coredis failure comes out
as ``BackendError``: for the whole batch when Redis cannot be reached, for one check
(or one slot's part) when only it failed, so that one bad check never fails others.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import anyio
import coredis
from coredis.exceptions import NoScriptError, RedisError

from ratelimiter import scripts
from ratelimiter.backend import Check, Outcome
from ratelimiter.batcher import CoalescedStore
from ratelimiter.errors import BackendError

AsyncRedisClient = coredis.Redis[Any] | coredis.RedisCluster[Any]

_FAILURES = (
    RedisError,
    OSError,
    anyio.BrokenResourceError,
    anyio.ClosedResourceError,
    anyio.EndOfStream,
)


class AsyncRedisBackend(CoalescedStore):
    """Decides on Redis through coredis. The client must be entered (``async with``)
    before use: by the application, or by ``open`` when the backend owns it.
    """

    def __init__(
        self,
        client: AsyncRedisClient,
        *,
        prefix: str = "rl",
        owns_client: bool = False,
        timeout_s: float = 5.0,
    ) -> None:
        self.client = client
        self._prefix = prefix
        self._owns_client = owns_client
        self._opened = False
        self._cluster = isinstance(client, coredis.RedisCluster)
        super().__init__(self._send, timeout_s=timeout_s)

    async def open(self) -> None:
        if self._owns_client:
            await self.client.__aenter__()
            self._opened = True

    async def reset(self, key: str) -> None:
        self._require_open()
        try:
            await self._evalsha(scripts.RESET, [scripts.hash_key(self._prefix, key)], [])
        except _FAILURES as error:
            raise BackendError(f"Redis failed: {error}") from error

    async def aclose(self) -> None:
        if self._owns_client and self._opened:
            self._opened = False
            await self.client.__aexit__(None, None, None)

    async def _send(self, checks: Sequence[Check]) -> list[Outcome | BackendError]:
        self._require_open()
        try:
            if not self._cluster:
                return await self._decide(checks)
            return await self._decide_by_slot(checks)
        except _FAILURES as error:
            raise BackendError(f"Redis failed: {error}") from error

    def _require_open(self) -> None:
        if self._owns_client and not self._opened:
            raise BackendError(
                "the limiter's Redis client is not open: use "
                "'async with AsyncLimiter.from_url(...) as limiter:'"
            )

    async def _decide(self, checks: Sequence[Check]) -> list[Outcome | BackendError]:
        keys, args = scripts.encode(self._prefix, checks)
        return scripts.decode(checks, await self._evalsha(scripts.DECIDE, keys, args))

    async def _decide_by_slot(self, checks: Sequence[Check]) -> list[Outcome | BackendError]:
        parts = scripts.slot_groups(self._prefix, checks)
        groups = [[checks[position] for position in positions] for positions in parts]
        if len(groups) == 1:
            return await self._decide(checks)
        sha = scripts.SHA1[scripts.DECIDE]
        async with self.client.pipeline(raise_on_error=False) as pipe:
            for group in groups:
                keys, args = scripts.encode(self._prefix, group)
                pipe.evalsha(sha, keys=keys, args=args)
        replies = list(pipe.results or ())
        outcomes: list[Outcome | BackendError | None] = [None] * len(checks)
        for group, positions, reply in zip(groups, parts, replies, strict=True):
            if isinstance(reply, NoScriptError):
                keys, args = scripts.encode(self._prefix, group)
                reply = await self._evalsha(scripts.DECIDE, keys, args)
            if isinstance(reply, Exception):  # this slot's part failed, not the others
                decoded: list[Outcome | BackendError] = [
                    BackendError(f"Redis failed: {reply}") for _ in group
                ]
            else:
                decoded = scripts.decode(group, reply)
            for position, outcome in zip(positions, decoded, strict=True):
                outcomes[position] = outcome
        return [outcome for outcome in outcomes if outcome is not None]

    async def _evalsha(self, source: str, keys: list[str], args: list[str]) -> object:
        """``EVALSHA``, loading the script (on every node) when Redis does not know it."""
        sha = scripts.SHA1[source]
        try:
            return await self.client.evalsha(sha, keys=keys, args=args)
        except NoScriptError:
            await self.client.script_load(source)
            return await self.client.evalsha(sha, keys=keys, args=args)
