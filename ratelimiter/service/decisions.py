"""The service's side of the store: hits to the limiter, API keys to the key store, each
request within ``service.redis_timeout``; None instead of a decision when Redis failed
or did not answer in time (``answers.failed`` then applies the failure mode).

The limiter bounds each round trip by half of the timeout and a check waits for at most
two (the one in flight, then its own), so a decision needs no cancel scope of its own;
an API-key look-up has no bound of its own, so it and the decision that follows run
under one scope of the timeout. Concurrent requests share round trips: the limiter's
coalescer sends the checks of all that are waiting as one script call (``batcher.py``).
"""

from __future__ import annotations

import structlog
import trio

from ratelimiter.async_limiter import AsyncLimiter
from ratelimiter.async_redis import AsyncRedisClient
from ratelimiter.decision import Decision
from ratelimiter.errors import BackendError, InvalidRequest
from ratelimiter.keys import NOT_CACHED, Credential, KeyStore, id_of
from ratelimiter.service.metrics import REDIS_ERRORS, StoreWatch
from ratelimiter.service.requests import BadRequest, Hit, RequestRules, Unauthorized

log = structlog.get_logger("ratelimiter.service")


class Decisions:
    """Decisions of the limiter and look-ups of the key store, bounded in time."""

    def __init__(
        self,
        limiter: AsyncLimiter,
        rules: RequestRules,
        watch: StoreWatch,
        *,
        timeout_s: float,
        keys: KeyStore | None = None,
        redis: AsyncRedisClient | None = None,
    ) -> None:
        self._limiter = limiter
        self._rules = rules
        self._watch = watch
        self._timeout_s = timeout_s
        self._keys = keys
        self._redis = redis

    async def decide(self, hit: Hit) -> Decision | None:
        """The limiter's decision, or None when Redis failed or did not answer in time."""
        try:
            decision = await self._limiter.hit(
                hit.key, *hit.limits, plan=hit.plan, route=hit.route, cost=hit.cost
            )
        except BackendError as error:
            self._watch.failed("decide", str(error))
            return None
        except InvalidRequest as error:  # validated before; kept from becoming a 500
            raise BadRequest("body", str(error)) from None
        self._watch.answered()
        return decision

    async def decide_for_key(self, hit: Hit, api_key: str) -> tuple[Hit, Decision | None]:
        """The hit of the key's vendor and its decision; ``Unauthorized`` for a key that
        is unknown or revoked.

        A key in the look-up cache costs no Redis call, so only the decision is bounded
        (by the limiter). Otherwise the look-up gives up after half of
        ``service.redis_timeout`` (and then answers from its cache when it can: a key
        known to be no good stays refused while Redis hangs), the decision after the rest.
        """
        if self._keys is None:
            credential: Credential | None = None
        else:
            cached = self._keys.cached(api_key)
            if cached is NOT_CACHED:
                return await self._look_up_and_decide(self._keys, hit, api_key)
            credential = cached
        hit = self._vendor_hit(hit, api_key, credential)
        return hit, await self.decide(hit)

    async def _look_up_and_decide(
        self, keys: KeyStore, hit: Hit, api_key: str
    ) -> tuple[Hit, Decision | None]:
        operation = "key_lookup"
        with trio.move_on_after(self._timeout_s):
            try:
                credential = await keys.lookup(api_key)
            except BackendError as error:
                self._watch.failed(operation, str(error))
                return hit, None
            hit = self._vendor_hit(hit, api_key, credential)
            operation = "decide"
            return hit, await self.decide(hit)
        self._watch.failed(operation, f"no answer within {self._timeout_s} s")
        return hit, None

    def _vendor_hit(self, hit: Hit, api_key: str, credential: Credential | None) -> Hit:
        """The hit counted for the key's vendor; ``Unauthorized`` for an unknown or
        revoked key."""
        if credential is None:
            unknown = f"unknown API key {id_of(api_key)}"
            if self._keys is None:
                unknown += " (API keys live in Redis, and redis.url is memory://)"
            raise Unauthorized(unknown, invalid=True)
        if credential.key.revoked is not None:
            raise Unauthorized(f"API key {credential.key.id} was revoked", invalid=True)
        return self._rules.vendor_hit(hit, credential)

    async def store_answers(self) -> bool:
        """Whether Redis answers a ping within the timeout (the memory store always does)."""
        if self._redis is None:
            return True
        with trio.move_on_after(self._timeout_s):
            try:
                await self._redis.ping()
            except Exception as error:  # any failure of the store is "unavailable"
                REDIS_ERRORS.labels("ping").inc()
                log.debug("ratelimiter.ping_failed", reason=str(error))
                return False
            return True
        return False
