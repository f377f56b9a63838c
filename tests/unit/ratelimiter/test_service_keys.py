"""API keys: their form, the SHA-256-only record, and the look-up cache on trio's clock.

A dictionary stands in for Redis, so the clock can jump; the Redis store is exercised in
tests/integration/ratelimiter/test_service_redis.py.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any, cast

import pytest
import trio
import trio.testing

from ratelimiter import BackendError
from ratelimiter.errors import UnknownApiKey
from ratelimiter.keys import KEY_PREFIX, TTL_JITTER, Credential, KeyStore, id_of


class FakeRedis:
    """The four hash and set commands the key store uses, and a switch to break them."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}
        self.reads = 0
        self.down = False
        self.hanging = False

    def _check(self) -> None:
        if self.down:
            raise ConnectionError("Connection refused")

    async def hset(self, key: str, fields: dict[str, str]) -> int:
        self._check()
        self.data.setdefault(key, {}).update({k.encode(): v.encode() for k, v in fields.items()})
        return len(fields)

    async def sadd(self, key: str, members: list[str]) -> int:
        self._check()
        self.data.setdefault(key, set()).update(m.encode() for m in members)
        return len(members)

    async def smembers(self, key: str) -> set[bytes]:
        self._check()
        return set(self.data.get(key, set()))

    async def hgetall(self, key: str) -> dict[bytes, bytes]:
        self._check()
        self.reads += 1
        if self.hanging:
            await trio.sleep_forever()
        await trio.lowlevel.checkpoint()
        return dict(self.data.get(key, {}))

    async def hget(self, key: str, field: str) -> bytes | None:
        self._check()
        value: bytes | None = self.data.get(key, {}).get(field.encode())
        return value


@pytest.fixture
def redis() -> FakeRedis:
    return FakeRedis()


@pytest.fixture
def store(redis: FakeRedis) -> KeyStore:
    return KeyStore(cast(Any, redis), prefix="t", cache_ttl_s=5.0)


async def test_a_key_is_shown_once_and_stored_as_its_sha256(
    store: KeyStore, redis: FakeRedis
) -> None:
    key, record = await store.create("v_1", "growth", now_s=1_700_000_000)
    assert re.fullmatch(r"mk_live_[A-Za-z0-9]{32}", key)
    assert record.id == id_of(key) == "key_" + hashlib.sha256(key.encode()).hexdigest()[:16]
    stored = redis.data[f"t:apikey:{record.id}"]
    assert stored[b"sha256"] == hashlib.sha256(key.encode()).hexdigest().encode()
    assert key.encode() not in repr(redis.data).encode()
    assert record.public() == {"id": record.id, "vendor": "v_1", "plan": "growth",
                               "created": 1_700_000_000, "revoked": None}  # fmt: skip
    assert len({(await store.create("v_1", "basic", now_s=0))[0] for _ in range(20)}) == 20


async def test_list_revoke_and_set_plan_by_id_or_by_key(store: KeyStore) -> None:
    first, one = await store.create("v_1", "basic", now_s=10)
    _, two = await store.create("v_2", "growth", now_s=20)
    assert [record.id for record in await store.all()] == [one.id, two.id]
    assert (await store.set_plan(first, "enterprise")).plan == "enterprise"
    revoked = await store.revoke(two.id, now_s=30)
    assert revoked.revoked == 30
    assert (await store.revoke(two.id, now_s=99)).revoked == 30  # revoking twice changes nothing
    with pytest.raises(UnknownApiKey, match="no API key key_nope"):
        await store.get("key_nope")
    with pytest.raises(UnknownApiKey):
        await store.revoke(KEY_PREFIX + "x" * 32, now_s=1)


async def test_look_ups_are_cached_for_the_ttl_unknown_keys_too(
    autojump_clock: trio.testing.MockClock, store: KeyStore, redis: FakeRedis
) -> None:
    key, record = await store.create("v_1", "basic", now_s=0)
    assert (await store.lookup(key)) == Credential(record, None)
    assert (await store.lookup(key)) == Credential(record, None)
    unknown = KEY_PREFIX + "u" * 32
    assert await store.lookup(unknown) is None
    assert await store.lookup(unknown) is None
    assert redis.reads == 2
    await store.revoke(key, now_s=1)
    reads = redis.reads
    await trio.sleep(5.0 * (1 - TTL_JITTER) - 0.1)
    found = await store.lookup(key)
    assert found is not None and found.key.revoked is None  # still the cached record
    await trio.sleep(5.0 * TTL_JITTER + 0.2)
    found = await store.lookup(key)
    assert found is not None and found.key.revoked == 1  # the TTL passed: read again
    assert redis.reads == reads + 1


async def test_keys_cached_together_are_not_read_again_together(
    autojump_clock: trio.testing.MockClock, store: KeyStore, redis: FakeRedis
) -> None:
    keys = [(await store.create(f"v_{n}", None, now_s=0))[0] for n in range(20)]
    for key in keys:
        await store.lookup(key)

    async def reads_at(fraction_of_ttl: float) -> int:
        await trio.sleep_until(started + 5.0 * fraction_of_ttl)
        before = redis.reads
        for key in keys:
            await store.lookup(key)
        return redis.reads - before

    started = trio.current_time()
    assert await reads_at(1 - TTL_JITTER - 0.01) == 0
    halfway = await reads_at(1 - TTL_JITTER / 2)
    assert 0 < halfway < len(keys)  # some expired, not all: 2 in a million fail this
    assert halfway + await reads_at(1.01) == len(keys)  # each read once within the TTL


async def test_a_key_that_only_shares_the_id_prefix_is_unknown(
    store: KeyStore, redis: FakeRedis
) -> None:
    key, record = await store.create("v_1", "basic", now_s=0)
    redis.data[f"t:apikey:{record.id}"][b"sha256"] = b"0" * 64
    assert await store.lookup(key) is None


async def test_when_redis_fails_an_expired_entry_is_used_else_the_error_is_raised(
    autojump_clock: trio.testing.MockClock, store: KeyStore, redis: FakeRedis
) -> None:
    key, record = await store.create("v_1", "basic", now_s=0)
    assert await store.lookup(key) == Credential(record, None)
    await trio.sleep(10)
    redis.down = True
    assert await store.lookup(key) == Credential(record, None)
    with pytest.raises(BackendError, match="Connection refused"):
        await store.lookup(KEY_PREFIX + "n" * 32)
    with pytest.raises(BackendError):
        await store.create("v_1", "basic", now_s=0)


async def test_a_lookup_gives_up_on_a_hanging_redis_and_keeps_a_refusal(
    autojump_clock: trio.testing.MockClock, redis: FakeRedis
) -> None:
    store = KeyStore(cast(Any, redis), prefix="t", cache_ttl_s=0, timeout_s=0.1)
    key, _ = await store.create("v_1", None, now_s=0)
    await store.revoke(key, now_s=1)
    unknown = KEY_PREFIX + "u" * 32
    assert await store.lookup(unknown) is None
    revoked = await store.lookup(key)
    assert revoked is not None and revoked.key.revoked == 1
    redis.hanging = True
    started = trio.current_time()
    assert await store.lookup(unknown) is None  # expired at once (ttl 0), yet still known
    still = await store.lookup(key)
    assert still is not None and still.key.revoked == 1
    assert trio.current_time() - started == pytest.approx(0.2)
    with pytest.raises(BackendError, match=r"no answer from Redis within 0\.1 s"):
        await store.lookup(KEY_PREFIX + "n" * 32)


async def test_a_lookup_brings_the_vendors_plan(store: KeyStore, redis: FakeRedis) -> None:
    key, record = await store.create("v_1", None, now_s=0)
    assert record.plan is None
    await redis.hset("t:vendor:v_1", {"plan": "growth"})
    assert await store.lookup(key) == Credential(record, "growth")


async def test_the_cache_is_bounded(
    autojump_clock: trio.testing.MockClock, redis: FakeRedis
) -> None:
    small = KeyStore(cast(Any, redis), prefix="t", cache_ttl_s=60, cache_size=10)
    for index in range(25):
        await small.lookup(f"{KEY_PREFIX}{index:032d}")
    assert len(small._cache) <= 10
