"""The limiter on a real Redis through redis-py: behaviour, key layout, failures."""

from __future__ import annotations

import pytest
import redis
from redis.crc import key_slot

from ratelimiter import BackendError, Limiter, RedisBackend, parse_limit
from webhookd.embedded import free_port

SECOND = 1_700_000_000


class Clock:
    def __init__(self, now: float = SECOND) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def limiter(redis_client: redis.Redis, key_prefix: str) -> Limiter:
    return Limiter(redis_client, prefix=key_prefix, clock=Clock())


def test_hits_peeks_and_cost(limiter: Limiter) -> None:
    assert limiter.hit("k", "10/m", cost=4).remaining == 6
    assert limiter.peek("k", "10/m").remaining == 6
    refused = limiter.hit("k", "10/m", cost=7)
    assert (refused.allowed, refused.remaining) == (False, 6)
    assert limiter.hit("k", "10/m", cost=6).remaining == 0
    assert not limiter.peek("k", "10/m").allowed


def test_a_refused_multi_limit_hit_consumes_none_of_its_limits(limiter: Limiter) -> None:
    exact_minute = parse_limit("5/m", exact=True)
    for _ in range(2):
        assert limiter.hit("k", exact_minute, "2/s", plan="basic").allowed
    refused = limiter.hit("k", exact_minute, "2/s", plan="basic")
    assert not refused.allowed
    assert str(refused.binding) == "2/second"
    assert limiter.peek("k", exact_minute).remaining == 3
    assert limiter.peek("k", plan="basic").remaining == 48


def test_window_boundaries_on_the_server(limiter: Limiter) -> None:
    clock = limiter._rules.clock
    assert isinstance(clock, Clock)
    clock.now = SECOND - 0.001
    for _ in range(3):
        assert limiter.hit("k", "3/s").allowed
    clock.now = SECOND + 0.333
    assert not limiter.hit("k", "3/s").allowed
    clock.now = SECOND + 0.334
    assert limiter.hit("k", "3/s").allowed


def test_reset_forgets_counters_and_logs(
    limiter: Limiter, redis_client: redis.Redis, key_prefix: str
) -> None:
    limiter.hit("k", "1/d", parse_limit("1/h", exact=True), route="GET /api/v2/products")
    limiter.hit("other", "1/d")
    assert len(redis_client.keys(f"{key_prefix}:*")) == 3
    limiter.reset("k")
    assert redis_client.keys(f"{key_prefix}:*") == [f"{key_prefix}:{{other}}"]
    assert limiter.hit("k", "1/d").allowed


def test_every_key_of_a_decision_hashes_to_one_cluster_slot(
    limiter: Limiter, redis_client: redis.Redis, key_prefix: str
) -> None:
    limiter.hit(
        "vendor:v_1",
        parse_limit("100/s", exact=True),
        parse_limit("1000/m", exact=True),
        plan="basic",
        route="GET /api/v2/products",
    )
    keys = redis_client.keys(f"{key_prefix}:*")
    assert len(keys) == 3
    # redis-server 7.0 answers CLUSTER KEYSLOT only in cluster mode (the cluster test
    # asks a real cluster node); here the client's CRC16 of the same algorithm is used.
    assert {key_slot(key.encode()) for key in keys} == {key_slot(b"vendor:v_1")}


def test_keys_expire_with_their_windows(redis_client: redis.Redis, key_prefix: str) -> None:
    limiter = Limiter(redis_client, prefix=key_prefix)  # the server's clock
    limiter.hit("k", "5/m", parse_limit("5/s", exact=True))
    counters_ttl = redis_client.pttl(f"{key_prefix}:{{k}}")
    log_ttl = redis_client.pttl(f"{key_prefix}:{{k}}:log:5/1")
    assert 60_000 < counters_ttl <= 120_000  # counted until the next window has passed
    assert 0 < log_ttl <= 1_000


def test_scripts_are_reloaded_after_a_script_flush(
    limiter: Limiter, redis_client: redis.Redis
) -> None:
    assert limiter.hit("k", "5/m").allowed
    redis_client.script_flush()
    assert limiter.hit("k", "5/m").remaining == 3
    redis_client.script_flush()
    limiter.reset("k")
    assert limiter.hit("k", "5/m").remaining == 4


def test_clients_with_or_without_decoded_responses(redis_url: str, key_prefix: str) -> None:
    for decode in (True, False):
        client = redis.Redis.from_url(redis_url, decode_responses=decode)
        with Limiter(RedisBackend(client, prefix=f"{key_prefix}{decode}")) as limiter:
            assert limiter.hit("k", "5/m").remaining == 4
        client.close()


def test_from_url(redis_url: str, key_prefix: str) -> None:
    with Limiter.from_url(redis_url, prefix=key_prefix) as limiter:
        decision = limiter.hit("vendor:v_1", "50/m", plan="basic")
        assert (decision.allowed, decision.limit, decision.remaining) == (True, 50, 49)


def test_an_unreachable_redis_is_a_backend_error() -> None:
    limiter = Limiter.from_url(f"redis://127.0.0.1:{free_port()}/0")
    with pytest.raises(BackendError, match="Redis failed") as caught:
        limiter.hit("k", "5/m")
    assert isinstance(caught.value.__cause__, redis.ConnectionError)
    with pytest.raises(BackendError):
        limiter.reset("k")
