"""Plans and routes: the shipped plans file, resolution of a hit's limits, bad files."""

from __future__ import annotations

from pathlib import Path

import pytest

import ratelimiter
from ratelimiter import ConfigError, Limit, Limiter, UnknownPlan, load_policy, parse_limit
from ratelimiter.policy import normalize_route


def test_the_shipped_plans_hold_the_documented_figures() -> None:
    shipped = Path(ratelimiter.__file__).resolve().parent.parent / "config" / "plans.toml"
    assert ratelimiter.default_plans_path() == shipped
    policy = load_policy()
    figures = {
        name: (sorted((lim.window_s, lim.amount) for lim in plan.limits), plan.webhooks_per_day)
        for name, plan in policy.plans.items()
    }
    assert figures == {
        "basic": ([(60, 50), (86400, 10_000)], 100),
        "growth": ([(60, 200), (86400, 100_000)], 1_000),
        "enterprise": ([(60, 1_000), (86400, 1_000_000)], 10_000),
    }
    assert policy.route_limit("GET /api/v2/products") == Limit(
        1000, 60, scope="GET /api/v2/products", name="GET /api/v2/products"
    )


def test_plan_limits_are_named_after_the_plan() -> None:
    names = {lim.policy for lim in load_policy().plan("basic").limits}
    assert names == {"basic-day", "basic-minute"}


def test_an_unknown_plan_is_a_clear_error() -> None:
    limiter = Limiter()
    with pytest.raises(UnknownPlan, match=r"'platinum'.*basic, enterprise, growth"):
        limiter.hit("k", plan="platinum")
    with pytest.raises(UnknownPlan):
        limiter.plan("platinum")
    assert limiter.plan("growth").webhooks_per_day == 1000


def test_a_hit_gathers_adhoc_plan_and_route_limits_each_counter_once() -> None:
    policy = load_policy()
    limits = policy.limits_for(("50/m", "5/s"), "basic", "get /api/v2/products?page=2")
    assert [str(lim) for lim in limits] == [
        "50/minute",  # the plan's 50/minute counts on the same counter: kept once
        "5/second",
        "10000/day",
        "1000/minute",
    ]
    assert limits[-1].scope == "GET /api/v2/products"
    assert policy.limits_for((), None, "GET /unknown") == ()


def test_routes_given_to_the_constructor_add_to_the_file() -> None:
    limiter = Limiter(routes={"post /api/v2/orders": "10/s"})
    assert limiter.policy.route_limit("POST /api/v2/orders") == Limit(
        10, 1, scope="POST /api/v2/orders", name="POST /api/v2/orders"
    )
    assert limiter.policy.route_limit("GET /api/v2/products") is not None
    decision = limiter.hit("k", route="POST /api/v2/orders")
    assert (decision.limit, decision.remaining) == (10, 9)


def test_routes_are_normalized() -> None:
    assert normalize_route("get  /a/b?x=1#top") == "GET /a/b"
    assert normalize_route("DELETE /a") == "DELETE /a"


@pytest.mark.parametrize(
    "spelling",
    [
        "/api/v2/orders",
        "/api/v2/%6frders",  # an unreserved character percent-encoded
        "/api/v2/%6Frders",
        "/api%2Fv2/orders",  # an encoded slash, which some servers decode
        "/api/v2/orders/",  # trailing slash
        "/api//v2/orders",  # duplicate slashes
        "//api/v2//orders//",
        "/api/./v2/orders",  # dot segments
        "/api/v2/x/../orders",
        "/../api/v2/orders",
        "/api/v2/%2e/orders",
        "/API/V2/ORDERS",  # case
        "/Api/v2/Orders?page=2",
        "/api/v2/orders;jsessionid=1",  # path parameters (Tomcat, Spring)
        "api/v2/orders",
    ],
)
def test_every_spelling_of_a_path_normalizes_to_one_route(spelling: str) -> None:
    assert normalize_route(f"post {spelling}") == "POST /api/v2/orders"


@pytest.mark.parametrize(
    ("spelling", "normal"),
    [
        ("", "GET"),
        ("/", "GET /"),
        ("/..", "GET /"),
        ("/a/%zz", "GET /a/%zz"),
        ("/a%20b", "GET /a b"),
    ],
)
def test_odd_paths_normalize_without_error(spelling: str, normal: str) -> None:
    assert normalize_route(f"GET {spelling}") == normal


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "plans.toml"
    path.write_text(text)
    return path


def test_a_plans_file_with_exact_plans_and_routes(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [plans.strict]
        limits = ["5/s"]
        exact = true
        [routes]
        "GET /x" = { limit = "3/s", exact = true }
        """,
    )
    policy = load_policy(path)
    assert policy.plan("strict").limits == (Limit(5, 1, exact=True, name="strict-second"),)
    assert policy.plan("strict").webhooks_per_day is None
    assert policy.route_limit("GET /x") == Limit(3, 1, True, scope="GET /x", name="GET /x")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[plans.a]\nlimits = ['5/week']", r"plans\.a\.limits: bad limit expression '5/week'"),
        ("[plans.a]\nlimits = []", r"plans\.a\.limits must be a non-empty list"),
        ("[plans.a]\nlimits = ['5/s']\nburst = 3", r"unknown key plans\.a\.burst"),
        ("[plans.a]\nlimits = ['5/s']\nwebhooks_per_day = 'x'", "webhooks_per_day must be"),
        ("[plans.a]\nlimits = ['5/s']\nexact = 1", r"plans\.a\.exact must be true or false"),
        ("[plans]\na = 3", r"plans\.a must be a table"),
        ("[routes]\n'GET /x' = 5", "must be a limit expression"),
        ("[routes]\n'GET /x' = { limit = '5/s', fast = true }", "unknown key routes"),
        ("[limits]\nx = 1", "unknown key 'limits'"),
        ("plans = [", "not valid TOML"),
    ],
)
def test_bad_plans_files_name_the_key(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match=message) as caught:
        load_policy(path)
    assert str(path) in str(caught.value)


def test_a_missing_plans_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read plans file"):
        Limiter(plans=tmp_path / "missing.toml")


def test_parse_limit_is_cached_but_limits_compare_by_value() -> None:
    assert parse_limit("50/m") is parse_limit("50/m")
    assert parse_limit("50/m") == Limit(50, 60)
