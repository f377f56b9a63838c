"""Decisions: the binding limit, header fields (IETF draft and X-RateLimit), the 429 body."""

from __future__ import annotations

import json

import pytest

from ratelimiter import BackendError, Limit, Limiter, scripts
from ratelimiter.backend import Check, Outcome
from ratelimiter.decision import decide
from ratelimiter.hits import unlimited

MINUTE = Limit(50, 60, name="basic-minute")
DAY = Limit(10_000, 86_400, name="basic-day")
NOW_MS = 1_700_000_030_500  # 30.5 s into a minute


def test_an_allowed_hit_is_bound_by_the_limit_with_fewest_units_left() -> None:
    decision = decide(
        (DAY, MINUTE), [(9_000, 1_700_086_400_000, 0), (12, 1_700_000_100_000, 0)], True, NOW_MS
    )
    assert decision.allowed
    assert decision.binding is MINUTE
    assert (decision.limit, decision.remaining, decision.retry_after) == (50, 12, 0)
    assert decision.reset == 1_700_000_100
    assert decision.at == 1_700_000_030.5
    assert decision.headers() == {
        "X-RateLimit-Limit": "50",
        "X-RateLimit-Remaining": "12",
        "X-RateLimit-Reset": "1700000100",
        "RateLimit-Policy": '"basic-minute";q=50;w=60, "basic-day";q=10000;w=86400',
        "RateLimit": '"basic-minute";r=12;t=69',
    }


def test_a_refusal_is_bound_by_the_limit_to_wait_longest_for() -> None:
    decision = decide(
        (MINUTE, DAY),
        [(0, 1_700_000_100_000, 2_500), (0, 1_700_050_000_000, 7_200_400)],
        False,
        NOW_MS,
    )
    assert not decision.allowed
    assert decision.binding is DAY
    assert (decision.limit, decision.remaining) == (10_000, 0)
    assert decision.retry_after == 7_200.4
    headers = decision.headers()
    assert headers["Retry-After"] == "7201"
    assert headers["RateLimit"] == '"basic-day";r=0;t=7201'
    assert headers["RateLimit-Policy"].startswith('"basic-day";q=10000;w=86400')
    body = decision.error_body()
    assert body == {
        "error": "rate_limit_exceeded",
        "message": "Rate limit exceeded: 10000 requests per day (basic-day). "
        "Retry in 7201 seconds.",
        "retry_after": 7201,
    }
    json.dumps(body)


def test_retry_after_rounds_up_to_whole_seconds() -> None:
    decision = decide((MINUTE,), [(0, NOW_MS + 60_000, 1)], False, NOW_MS)
    assert decision.retry_after == 0.001
    assert decision.headers()["Retry-After"] == "1"
    assert decision.error_body()["message"].endswith("Retry in 1 second.")  # type: ignore[union-attr]


def test_policy_names_are_structured_field_strings() -> None:
    odd = Limit(5, 1, name='say "hi" \\ café')
    decision = decide((odd,), [(4, NOW_MS + 1000, 0)], True, NOW_MS)
    assert decision.headers()["RateLimit"] == r'"say \"hi\" \\ caf?";r=4;t=1'


def test_header_fields_follow_the_limits_of_each_decision() -> None:
    """The rendered policy is kept per tuple of limits: an equal tuple built anew, or
    another binding limit in the same tuple, renders its own figures."""
    states = [(9_000, 1_700_086_400_000, 0), (12, 1_700_000_100_000, 0)]
    first = decide((DAY, MINUTE), states, True, NOW_MS)
    assert first.header_fields() == tuple(first.headers().items())
    other_day = Limit(10_000, 86_400, name="gold-day")
    second = decide((other_day, MINUTE), [(9_000, 1_700_086_400_000, 0), (9_999, 0, 0)], True,
                    NOW_MS)  # fmt: skip
    assert dict(second.header_fields())["RateLimit-Policy"] == (
        '"gold-day";q=10000;w=86400, "basic-minute";q=50;w=60'
    )
    assert dict(decide((DAY, MINUTE), states, True, NOW_MS).header_fields()) == first.headers()


def test_a_hit_without_limits_is_allowed_and_renders_no_headers() -> None:
    decision = Limiter().hit("k", route="GET /not-limited")
    assert decision.allowed
    assert decision.binding is None
    assert decision.headers() == {}
    assert decision.as_dict()["policy"] is None


def test_a_hit_without_limits_is_timed_by_the_clock_passed_in() -> None:
    at_store_time = Check("k", (), 1, True, NOW_MS)
    assert unlimited(at_store_time, lambda: 1.0).at == NOW_MS / 1000
    assert unlimited(at_store_time._replace(now_ms=None), lambda: 1234.5).at == 1234.5
    assert Limiter(clock=lambda: 99.0).hit("k").at == 99.0


def test_as_dict_is_json_ready() -> None:
    decision = Limiter().hit("k", "3/m")
    assert json.loads(json.dumps(decision.as_dict())) == {
        "allowed": True,
        "limit": 3,
        "remaining": 2,
        "reset": decision.reset,
        "retry_after": 0.0,
        "policy": "3/minute",
    }


def test_a_reply_the_script_never_gives_is_a_backend_error() -> None:
    check = Check("k", (MINUTE,), 1, True, None)
    with pytest.raises(BackendError, match="unexpected reply"):
        scripts.decode((check,), [1, 2])
    assert scripts.decode((check,), b"1700000030500 1 49 1700000100000 0") == [
        Outcome(1_700_000_030_500, True, ((49, 1_700_000_100_000, 0),))
    ]
