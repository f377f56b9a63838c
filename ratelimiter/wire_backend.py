"""The limiter's store on ``rediswire``, for trio: what the service and webhookd run on.

The same coalescing and the same ``decide.lua`` as ``AsyncRedisBackend``, over the wire:
coredis costs about 280 µs of CPU per round trip on trio, the wire about 70
(docs/decisions.md). coredis stays for asyncio callers (``AsyncLimiter.from_url``).
On Redis Cluster each slot's checks go out in a script call of their own, all at once.
Redis unreachable fails the whole batch with ``BackendError``; an error reply fails only
the checks of its call.
"""

from __future__ import annotations

from collections.abc import Sequence

import trio

from ratelimiter import scripts
from ratelimiter.backend import Check, Outcome
from ratelimiter.batcher import CoalescedStore
from ratelimiter.errors import BackendError
from rediswire import ReplyError, Script, Wire, WireUnavailable

_DECIDE = Script(scripts.DECIDE)
_RESET = Script(scripts.RESET)


class WireBackend(CoalescedStore):
    def __init__(
        self, wire: Wire, *, prefix: str = "rl", owns_wire: bool = False, timeout_s: float = 5.0
    ) -> None:
        self.wire = wire
        self._prefix = prefix
        self._owns_wire = owns_wire
        super().__init__(self._send, timeout_s=timeout_s)

    async def open(self) -> None:
        await trio.lowlevel.checkpoint()

    async def reset(self, key: str) -> None:
        try:
            await self.wire.evalsha(_RESET, [scripts.hash_key(self._prefix, key)], [])
        except (ReplyError, WireUnavailable) as error:
            raise BackendError(f"Redis failed: {error}") from error

    async def aclose(self) -> None:
        if self._owns_wire:
            await self.wire.aclose()

    async def _send(self, checks: Sequence[Check]) -> list[Outcome | BackendError]:
        parts = (
            scripts.slot_groups(self._prefix, checks)
            if self.wire.cluster
            else [list(range(len(checks)))]
        )
        outcomes: list[Outcome | BackendError] = [BackendError("not decided")] * len(checks)
        try:
            if len(parts) == 1:
                await self._decide(checks, parts[0], outcomes)
            else:
                async with trio.open_nursery() as nursery:
                    for positions in parts:
                        nursery.start_soon(self._decide, checks, positions, outcomes)
        except* WireUnavailable as group:
            raise BackendError(f"Redis failed: {group.exceptions[0]}") from None
        return outcomes

    async def _decide(
        self,
        checks: Sequence[Check],
        positions: list[int],
        outcomes: list[Outcome | BackendError],
    ) -> None:
        part = [checks[position] for position in positions]
        keys, args = scripts.encode(self._prefix, part)
        try:
            decoded = scripts.decode(part, await self.wire.evalsha(_DECIDE, keys, args))
        except ReplyError as error:
            decoded = [BackendError(f"Redis failed: {error}") for _ in part]
        for position, outcome in zip(positions, decoded, strict=True):
            outcomes[position] = outcome
