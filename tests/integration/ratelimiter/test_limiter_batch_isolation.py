"""One bad check in a coalesced round trip fails only itself, on a real Redis.

The reproduction: a check with about 2,700 ad-hoc limits once made ``decide.lua`` fail
("too many results to unpack"), and with it the checks of every other client in the
same batch. Now the script reads and writes in chunks, and a check that fails for any
other reason (here: its key holds a string, not a hash) is answered with its own error.
"""

from __future__ import annotations

import httpx
import pytest
import redis
import trio
from service_harness import evalsha_calls, running_service, service_settings

from ratelimiter import AsyncLimiter, BackendError, Limiter, parse_limit
from ratelimiter.scripts import hash_key

POISON = [f"{amount}/h" for amount in range(1_000, 3_700)]  # 2,700 distinct limits


async def test_a_check_with_2700_limits_shares_a_round_trip_harmlessly(
    redis_url: str, redis_client: redis.Redis, key_prefix: str
) -> None:
    async with AsyncLimiter.from_url(redis_url, prefix=key_prefix) as limiter:
        await limiter.hit("warm-up", "5/m")  # loads the script
        others: list[bool] = []
        big: list[int] = []

        async def other(index: int) -> None:
            others.append((await limiter.hit(f"client:{index}", "5/m")).allowed)

        async def poison() -> None:
            big.append(len((await limiter.hit("poison", *POISON)).limits))

        before = evalsha_calls(redis_client)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(other, -1)  # its round trip is in flight while the rest queue
            nursery.start_soon(poison)
            for index in range(300):
                nursery.start_soon(other, index)
        calls = evalsha_calls(redis_client) - before
    assert calls <= 3, f"{calls} round trips: the checks were not coalesced"
    assert others == [True] * 301
    assert big == [2_700]
    assert redis_client.hlen(hash_key(key_prefix, "poison")) == 3 * 2_700 + 1


async def test_a_failing_check_fails_alone_in_its_batch(
    redis_url: str, redis_client: redis.Redis, key_prefix: str
) -> None:
    redis_client.set(hash_key(key_prefix, "broken"), "not a hash")
    async with AsyncLimiter.from_url(redis_url, prefix=key_prefix) as limiter:
        await limiter.hit("warm-up", "5/m")
        outcomes: dict[str, object] = {}

        async def hit(key: str) -> None:
            try:
                outcomes[key] = (await limiter.hit(key, "5/m", "100/h")).remaining
            except BackendError as error:
                outcomes[key] = error

        before = evalsha_calls(redis_client)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(hit, "first")
            for key in ("a", "broken", "b", "broken", "c"):
                nursery.start_soon(hit, key)
        assert evalsha_calls(redis_client) - before == 1  # all six ready at once: one batch
    failure = outcomes.pop("broken")
    assert isinstance(failure, BackendError) and "WRONGTYPE" in str(failure)
    assert outcomes == {"first": 4, "a": 4, "b": 4, "c": 4}


def test_the_sync_limiter_reports_a_failing_check_as_a_backend_error(
    redis_url: str, redis_client: redis.Redis, key_prefix: str
) -> None:
    redis_client.set(hash_key(key_prefix, "broken"), "not a hash")
    with Limiter.from_url(redis_url, prefix=key_prefix) as limiter:
        with pytest.raises(BackendError, match="WRONGTYPE"):
            limiter.hit("broken", "5/m")
        exact = parse_limit("3/m", exact=True)
        assert limiter.hit("fine", exact, *POISON).remaining == 2


async def test_the_service_refuses_too_many_limits_and_other_clients_are_unaffected(
    redis_url: str, key_prefix: str
) -> None:
    # failure_mode closed: a check that failed would answer 503; a generous timeout, since
    # the clients share this process (and its event loop) with the service
    settings = service_settings(redis_url, key_prefix, failure_mode="closed", redis_timeout=5)
    async with running_service(settings) as url:
        pool = httpx.Limits(max_connections=64, max_keepalive_connections=64)
        async with httpx.AsyncClient(base_url=url, limits=pool) as http:
            statuses: list[int] = []
            refused: list[httpx.Response] = []

            async def client(index: int) -> None:
                for _ in range(2):
                    body = {"key": f"client:{index}", "limits": ["5/m"]}
                    statuses.append((await http.post("/v1/check", json=body)).status_code)

            async def poison() -> None:
                body = {"key": "poison", "limits": POISON}
                refused.append(await http.post("/v1/check", json=body))

            async with trio.open_nursery() as nursery:
                for index in range(150):
                    nursery.start_soon(client, index)
                    if index == 75:
                        nursery.start_soon(poison)
    assert statuses == [200] * 300
    assert refused[0].status_code == 400
    assert refused[0].json()["field"] == "limits"
    assert "at most 16 limits" in refused[0].json()["message"]
