"""AsyncLimiter on a real Redis through coredis, under trio and asyncio."""

from __future__ import annotations

import anyio
import coredis
import pytest
import redis
import trio
import trio.testing
from service_harness import evalsha_calls

from ratelimiter import AsyncLimiter, BackendError, parse_limit
from webhookd.embedded import free_port

EPOCH = 1_700_000_000


async def test_hit_peek_reset_and_plans(redis_url: str, key_prefix: str) -> None:
    async with AsyncLimiter.from_url(redis_url, prefix=key_prefix) as limiter:
        decision = await limiter.hit("vendor:v_1", "50/m", plan="basic")
        assert (decision.allowed, decision.limit, decision.remaining) == (True, 50, 49)
        assert (await limiter.peek("vendor:v_1", plan="basic")).remaining == 49
        await limiter.reset("vendor:v_1")
        assert (await limiter.peek("vendor:v_1", plan="basic")).remaining == 50


async def test_concurrent_hits_are_coalesced_into_few_round_trips(
    redis_url: str, redis_client: redis.Redis, key_prefix: str
) -> None:
    async with AsyncLimiter.from_url(redis_url, prefix=key_prefix) as limiter:
        admitted: list[bool] = []

        async def hammer(index: int) -> None:
            for _ in range(10):
                admitted.append((await limiter.hit(f"k{index % 8}", "50/m")).allowed)

        before = evalsha_calls(redis_client)
        async with trio.open_nursery() as nursery:
            for index in range(64):
                nursery.start_soon(hammer, index)
        calls = evalsha_calls(redis_client) - before
    assert admitted.count(True) == 8 * 50
    assert calls < len(admitted) / 8


async def test_on_the_redis_server_with_trio_mock_clock(
    redis_client: redis.Redis, redis_url: str, key_prefix: str, mock_clock: trio.testing.MockClock
) -> None:
    """Real I/O, so time moves only by explicit jumps of the mock clock."""
    client = coredis.Redis.from_url(redis_url)
    async with client:
        limiter = AsyncLimiter(client, prefix=key_prefix, clock=lambda: EPOCH + trio.current_time())
        exact = parse_limit("2/s", exact=True)
        assert (await limiter.hit("k", exact)).allowed
        mock_clock.jump(0.5)
        assert (await limiter.hit("k", exact)).allowed
        refused = await limiter.hit("k", exact)
        assert (refused.allowed, refused.retry_after) == (False, 0.5)
        mock_clock.jump(0.5)
        assert (await limiter.hit("k", exact)).allowed


async def test_scripts_are_reloaded_after_a_script_flush(
    redis_url: str, redis_client: redis.Redis, key_prefix: str
) -> None:
    async with AsyncLimiter.from_url(redis_url, prefix=key_prefix) as limiter:
        await limiter.hit("k", "5/m")
        redis_client.script_flush()
        assert (await limiter.hit("k", "5/m")).remaining == 3
        redis_client.script_flush()
        await limiter.reset("k")
        assert (await limiter.hit("k", "5/m")).remaining == 4


def test_under_asyncio(redis_url: str, key_prefix: str) -> None:
    async def main() -> list[bool]:
        async with AsyncLimiter.from_url(redis_url, prefix=key_prefix) as limiter:
            results: list[bool] = []

            async def one() -> None:
                results.append((await limiter.hit("k", "3/m")).allowed)

            async with anyio.create_task_group() as group:
                for _ in range(5):
                    group.start_soon(one)
            return results

    assert sorted(anyio.run(main, backend="asyncio")) == [False, False, True, True, True]


async def test_an_unreachable_redis_is_a_backend_error() -> None:
    async with AsyncLimiter.from_url(f"redis://127.0.0.1:{free_port()}/0") as limiter:
        with pytest.raises(BackendError, match="Redis failed"):
            await limiter.hit("k", "5/m")
        with pytest.raises(BackendError):
            await limiter.reset("k")


async def test_a_limiter_used_before_it_is_entered_says_so(redis_url: str) -> None:
    limiter = AsyncLimiter.from_url(redis_url)
    with pytest.raises(BackendError, match=r"async with AsyncLimiter\.from_url"):
        await limiter.hit("k", "5/m")
    with pytest.raises(BackendError, match="not open"):
        await limiter.reset("k")


async def test_hit_many_decides_every_key_in_one_round_trip(
    redis_url: str, redis_client: redis.Redis, key_prefix: str
) -> None:
    async with AsyncLimiter.from_url(redis_url, prefix=key_prefix) as limiter:
        before = evalsha_calls(redis_client)
        decisions = await limiter.hit_many(
            [("a", ["5/m"], 3), ("b", ["5/m", "100/d"], 5), ("c", ["5/m"], 6), ("d", [], 1)]
        )
        calls = evalsha_calls(redis_client) - before
        assert [d.allowed for d in decisions] == [True, True, False, True]
        assert [d.remaining for d in decisions[:2]] == [2, 0]
        assert (await limiter.peek("c", "5/m")).remaining == 5  # a refused hit counts nothing
    assert calls == 1


async def test_hit_many_on_memory_matches_hit() -> None:
    async with AsyncLimiter.from_url("memory://") as limiter:
        decisions = await limiter.hit_many([("a", ["2/m"], 2), ("a", ["2/m"], 1)])
    assert [d.allowed for d in decisions] == [True, False]
