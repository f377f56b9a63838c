"""The service's pure halves: requests into hits, answers out of decisions, no I/O."""

from __future__ import annotations

import json

import pytest

from httpserve import Request
from ratelimiter import load_policy, parse_limit
from ratelimiter.keys import ApiKey, Credential
from ratelimiter.service import FAILURE_HEADER, BadRequest, Hit, RequestRules, Unauthorized, answers
from ratelimiter.service.requests import API_KEY_PENDING

RULES = RequestRules(load_policy().plans, "basic")
NOW_MS = 1_700_000_000_000


def auth(**headers: str) -> Request:
    return Request("GET", "/v1/auth", headers, b"", "/v1/auth")


def test_a_check_body_becomes_a_hit_in_the_raw_namespace() -> None:
    hit = RULES.check_hit({"key": "k", "limits": ["5/m"], "cost": 3.0, "route": "GET /x"})
    assert hit == Hit("raw:k", None, "GET /x", ("5/m",), 3)
    assert RULES.check_hit({"key": "k"}).plan == "basic"
    with pytest.raises(BadRequest) as caught:
        RULES.check_hit({"key": "k", "plan": "gold"})
    assert caught.value.field == "plan"


def test_auth_headers_become_a_hit_and_the_api_key_to_look_up() -> None:
    key = "mk_live_" + "a" * 32
    hit, api_key = RULES.auth_hit(auth(authorization=f"Bearer {key}"))
    assert api_key == key and hit.key == API_KEY_PENDING
    with pytest.raises(Unauthorized) as caught:
        RULES.auth_hit(auth(**{"x-ratelimit-key": "ip:1"}))  # not trusted by default
    assert caught.value.invalid is False


def test_a_looked_up_key_counts_under_its_vendor_with_its_own_plan_besides() -> None:
    hit = Hit("apikey:key_1", "basic", "GET /x", (), 1)
    on_growth = RULES.vendor_hit(hit, Credential(ApiKey("key_1", "v_1", "enterprise", 0), "growth"))
    assert (on_growth.key, on_growth.plan, on_growth.route) == ("vendor:v_1", "growth", "GET /x")
    assert [limit.scope for limit in on_growth.limits] == ["key_1", "key_1"]
    lost = RULES.vendor_hit(hit, Credential(ApiKey("key_1", "v_1", "gone", 0), "gone"))
    assert (lost.plan, lost.limits) == ("basic", ())


@pytest.mark.parametrize("mode", ["open", "closed"])
def test_a_store_failure_is_answered_by_the_failure_mode_at_the_time_given(mode: str) -> None:
    limits = (parse_limit("50/m"), parse_limit("10000/d"))
    answer = answers.failed(limits, mode, NOW_MS, body=True)
    headers = dict(answer.headers)
    assert headers[FAILURE_HEADER] == mode
    assert headers["X-RateLimit-Reset"] == str(NOW_MS // 1000)
    if mode == "open":
        body = json.loads(answer.body)
        assert (answer.status, body["allowed"], body["failure_mode"]) == (200, True, "open")
        assert headers["X-RateLimit-Remaining"] == "50"
    else:
        assert answer.status == 503 and headers["Retry-After"] == "1"
