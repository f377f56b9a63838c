"""Limit expressions: what parses, to what, and the errors for what does not."""

from __future__ import annotations

import pytest

from ratelimiter import InvalidLimit, InvalidRequest, Limit, RateLimiterError, parse_limit


@pytest.mark.parametrize(
    ("text", "amount", "window_s"),
    [
        ("50/m", 50, 60),
        ("10000/day", 10000, 86400),
        ("1/s", 1, 1),
        ("3/second", 3, 1),
        ("1000/minute", 1000, 60),
        ("7/h", 7, 3600),
        ("7/hour", 7, 3600),
        ("9/d", 9, 86400),
        (" 50 / m ", 50, 60),
    ],
)
def test_expressions_parse(text: str, amount: int, window_s: int) -> None:
    limit = parse_limit(text)
    assert (limit.amount, limit.window_s, limit.exact) == (amount, window_s, False)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "50",
        "50/",
        "/m",
        "50/week",
        "50/M",
        "fifty/m",
        "-5/m",
        "0/m",
        "5.5/m",
        "50/mm",
        "50 per minute",
        "50/m/s",
        "١٢/m",
    ],
)
def test_bad_expressions_are_refused_with_a_clear_message(text: str) -> None:
    with pytest.raises(InvalidLimit) as caught:
        parse_limit(text)
    assert repr(text) in str(caught.value) or "at least 1" in str(caught.value)
    assert isinstance(caught.value, InvalidRequest)
    assert isinstance(caught.value, ValueError)
    assert isinstance(caught.value, RateLimiterError)


def test_the_message_lists_the_units() -> None:
    with pytest.raises(InvalidLimit, match="s, m, h, d, second, minute, hour, day"):
        parse_limit("5/week")


def test_limits_too_large_for_exact_arithmetic_are_refused() -> None:
    assert parse_limit("100000000/day").amount == 100_000_000
    with pytest.raises(InvalidLimit, match="too large"):
        parse_limit("200000000/day")
    with pytest.raises(InvalidLimit, match="positive"):
        Limit(5, 0)


def test_a_limit_reads_back_as_its_canonical_expression() -> None:
    assert str(parse_limit("50/m")) == "50/minute"
    assert parse_limit("50/m").policy == "50/minute"
    assert Limit(5, 90).unit == "90 seconds"
    assert parse_limit("50/m", exact=True).exact
    assert parse_limit("1000/m", scope="GET /x").storage_id == "1000/60@GET /x"
