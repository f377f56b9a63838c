"""The redis-py store: one ``EVALSHA`` of ``decide.lua`` per decision.

It works with the application's own ``redis.Redis`` or ``redis.RedisCluster`` (any
``decode_responses``: the scripts answer with integers only). Scripts are called by
their SHA1 and loaded (on every node) only when Redis answers ``NOSCRIPT``. Every
redis-py failure comes out as ``BackendError``.
"""

from __future__ import annotations

import redis
from redis.exceptions import NoScriptError

from ratelimiter import scripts
from ratelimiter.backend import Check, Outcome
from ratelimiter.errors import BackendError

RedisClient = redis.Redis | redis.RedisCluster


class RedisBackend:
    """Decides on Redis; ``owns_client`` closes the client with the backend."""

    def __init__(self, client: RedisClient, *, prefix: str = "rl", owns_client: bool = False):
        self.client = client
        self._prefix = prefix
        self._owns_client = owns_client

    def decide(self, check: Check) -> Outcome:
        keys, args = scripts.encode(self._prefix, (check,))
        outcome = scripts.decode((check,), self._evalsha(scripts.DECIDE, keys, args))[0]
        if isinstance(outcome, BackendError):
            raise outcome
        return outcome

    def reset(self, key: str) -> None:
        self._evalsha(scripts.RESET, [scripts.hash_key(self._prefix, key)], [])

    def close(self) -> None:
        if self._owns_client:
            self.client.close()

    def _evalsha(self, source: str, keys: list[str], args: list[str]) -> object:
        sha = scripts.SHA1[source]
        try:
            try:
                return self.client.evalsha(sha, len(keys), *keys, *args)
            except NoScriptError:
                self.client.script_load(source)
                return self.client.evalsha(sha, len(keys), *keys, *args)
        except (redis.RedisError, OSError) as error:
            raise BackendError(f"Redis failed: {error}") from error
