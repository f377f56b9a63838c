"""The Lua scripts against the pure model: same checks at the same (explicit) instants,
the same outcomes to the millisecond. The pure model is itself checked against a naive
reference in tests/unit/ratelimiter/test_limiter_model.py."""

from __future__ import annotations

import uuid

import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ratelimiter import Limit, MemoryBackend, RedisBackend
from ratelimiter.backend import Check

START_MS = 1_700_000_000_000

limits_strategy = st.lists(
    st.builds(Limit, amount=st.integers(1, 12), window_s=st.integers(1, 3), exact=st.booleans()),
    min_size=1,
    max_size=3,
).map(
    lambda limits: tuple(
        Limit(lim.amount, lim.window_s, lim.exact, scope=f"s{index}")
        for index, lim in enumerate(limits)
    )
)
steps_strategy = st.lists(
    st.tuples(st.integers(0, 2500), st.integers(1, 4) | st.just(1), st.booleans() | st.just(True)),
    max_size=50,
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(limits=limits_strategy, steps=steps_strategy)
def test_the_lua_script_decides_like_the_pure_model(
    redis_client: redis.Redis, limits: tuple[Limit, ...], steps: list[tuple[int, int, bool]]
) -> None:
    lua = RedisBackend(redis_client)
    model = MemoryBackend()
    key = f"model:{uuid.uuid4().hex}"
    now_ms = START_MS
    for advance_ms, cost, consume in steps:
        now_ms += advance_ms
        check = Check(key, limits, cost, consume, now_ms)
        assert lua.decide(check) == model.decide(check)


def test_the_server_clock_is_used_when_no_time_is_given(redis_client: redis.Redis) -> None:
    seconds, microseconds = redis_client.time()
    outcome = RedisBackend(redis_client).decide(
        Check(f"clock:{uuid.uuid4().hex}", (Limit(5, 60),), 1, True, None)
    )
    assert 0 <= outcome.now_ms - (seconds * 1000 + microseconds // 1000) < 5_000
