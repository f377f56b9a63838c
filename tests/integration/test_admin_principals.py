"""Portal tokens on a running daemon: a vendor's token reaches its own endpoints, events,
dead letters, keys and usage, and nothing of another vendor's, on every route."""

from __future__ import annotations

import re
import time
from collections.abc import Callable

import httpx
import trio
from conftest import AsyncRedis, publish, running_daemon, until
from webhook_receiver import Receiver, Reply

from ratelimiter import AsyncVendorPlans
from webhookd import connection
from webhookd.admin import AdminApi
from webhookd.clock import EpochClock
from webhookd.config import Settings
from webhookd.daemon import Daemon
from webhookd.portal_tokens import issue
from webhookd.principals import Scope
from webhookd.publisher import Publisher
from webhookd.vendor_api import vendor_api

ADMIN = "test-admin-token"
OPERATOR = {"Authorization": f"Bearer {ADMIN}"}


def bearer(vendor: str, ttl_s: int = 600, now_s: float | None = None) -> dict[str, str]:
    token = issue(vendor, admin_token=ADMIN, now_s=now_s or time.time(), ttl_s=ttl_s)
    return {"Authorization": f"Bearer {token}"}


def routes_of(daemon: Daemon, settings: Settings) -> list[tuple[str, re.Pattern[str], Scope]]:
    """The daemon's admin route table (an AdminApi built as the daemon builds its own, on
    a Redis client it never uses)."""
    clock = EpochClock()
    assert settings.redis.url is not None
    vendors = vendor_api(connection.client_for(settings.redis.url), settings, daemon.registry,
                         clock)  # fmt: skip
    return AdminApi(token=ADMIN, registry=daemon.registry, store=daemon.store,
                    readiness=daemon.readiness, clock=clock, vendors=vendors).scopes()  # fmt: skip


def fill(pattern: re.Pattern[str], values: dict[str, str]) -> str:
    """A path matching ``pattern``, its named groups replaced by ``values``."""
    return re.sub(r"\(\?P<(\w+)>[^)]*\)", lambda group: values[group[1]], pattern.pattern)


def client_for(daemon: Daemon) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=f"http://127.0.0.1:{daemon.admin_port}")


async def test_a_vendor_token_never_reaches_another_vendors_data(
    make_settings: Callable[..., Settings], receiver: Receiver, aredis: AsyncRedis, key_prefix: str
) -> None:
    settings = make_settings(
        retry={"schedule": [0.1], "jitter": 0}, quotas={"limiter_prefix": f"{key_prefix}:rl"}
    )
    receiver.script("/dead", Reply(status=500), Reply(status=500))
    assert settings.redis.url
    publisher = Publisher.from_url(settings.redis.url, stream=settings.stream.name)
    one, two = bearer("v_1"), bearer("v_2")
    async with running_daemon(settings) as daemon, client_for(daemon) as http:
        made = await http.post("/v1/endpoints", headers=one, json={"url": receiver.url("/a")})
        assert made.status_code == 201, made.text
        mine = made.json()
        assert mine["vendor"] == "v_1" and mine["secret"].startswith("whsec_")
        theirs_made = {"vendor": "v_2", "url": receiver.url("/dead")}
        other = (await http.post("/v1/endpoints", headers=OPERATOR, json=theirs_made)).json()
        other_event = await publish(publisher, "order.created", vendor="v_2", data={"n": 2})
        my_event = await publish(publisher, "order.created", vendor="v_1", data={"n": 1})
        with trio.fail_after(10):
            await receiver.wait_for(1, "/a")
            await until(lambda: aredis.xlen(settings.stream.dead), equals=1)
        [dead] = (await http.get("/v1/dead", headers=OPERATOR)).json()
        key = (await http.post("/v1/vendors/v_2/keys", headers=OPERATOR, json={})).json()

        # The vendor's own things answer.
        listed = (await http.get("/v1/endpoints", headers=one)).json()
        assert [e["id"] for e in listed] == [mine["id"]]
        assert (await http.get(f"/v1/endpoints/{mine['id']}", headers=one)).status_code == 200
        assert (await http.get(f"/v1/events/{my_event}", headers=one)).status_code == 200
        assert (await http.post(f"/v1/events/{my_event}/replay", headers=one)).status_code == 202
        assert (await http.get("/v1/dead", headers=one)).json() == []
        assert [d["id"] for d in (await http.get("/v1/dead", headers=two)).json()] == [dead["id"]]
        assert (await http.get("/v1/vendors/v_1", headers=one)).json()["vendor"] == "v_1"
        assert (await http.get("/v1/catalog", headers=one)).status_code == 200

        # Every route naming another vendor's thing answers 404, as if it did not exist.
        theirs = [
            ("GET", f"/v1/endpoints/{other['id']}", None),
            ("PATCH", f"/v1/endpoints/{other['id']}", {"enabled": False}),
            ("DELETE", f"/v1/endpoints/{other['id']}", None),
            ("POST", f"/v1/endpoints/{other['id']}/rotate-secret", None),
            ("POST", f"/v1/endpoints/{other['id']}/reveal-secret", None),
            ("GET", f"/v1/events/{other_event}", None),
            ("POST", f"/v1/events/{other_event}/replay", None),
            ("GET", "/v1/vendors/v_2", None),
            ("GET", "/v1/vendors/v_2/keys", None),
            ("POST", "/v1/vendors/v_2/keys", {}),
            ("DELETE", f"/v1/vendors/v_2/keys/{key['id']}", None),
            ("DELETE", f"/v1/vendors/v_1/keys/{key['id']}", None),
        ]
        for method, path, body in theirs:
            answer = await http.request(method, path, headers=one, json=body)
            assert answer.status_code == 404, (method, path, answer.text)
            assert answer.json()["error"] == "not_found" and "whsec_" not in answer.text
        missing = await http.get("/v1/endpoints/ep_missing", headers=one)
        assert missing.json()["message"] == "no endpoint ep_missing"

        # Walk the route table itself, so a route added later is held to the same rule:
        # what names another vendor's thing is 404, operator routes 403, and the vendor's
        # own listings hold nothing of the other vendor's.
        named = {Scope.ENDPOINT: {"id": other["id"]}, Scope.EVENT: {"id": other_event},
                 Scope.DEAD: {"id": dead["id"]},
                 Scope.VENDOR: {"vendor": "v_2", "key_id": key["id"]}}  # fmt: skip
        table = routes_of(daemon, settings)
        assert {scope for _, _, scope in table} == set(Scope)
        for method, pattern, scope in table:
            if scope in (Scope.OWN, Scope.OPERATOR):  # a path naming a thing names its owner
                assert not pattern.groupindex, f"{method} {pattern.pattern} is scoped {scope}"
            path = fill(pattern, named.get(scope, {}))
            body = {} if method in ("POST", "PATCH") else None
            answer = await http.request(method, path, headers=one, json=body)
            if scope is Scope.OPERATOR:
                assert answer.status_code == 403, (method, path, answer.text)
            elif scope is Scope.OWN:
                assert answer.status_code < 500, (method, path, answer.text)
                for theirs_id in (other["id"], other_event, dead["id"], key["id"], "v_2"):
                    assert theirs_id not in answer.text, (method, path, answer.text)
            else:
                assert answer.status_code == 404, (method, path, answer.text)
                assert answer.json()["error"] == "not_found" and "whsec_" not in answer.text

        # What only the operator may do, or another vendor's data by filter, is forbidden.
        forbidden = [
            ("GET", "/v1/vendors", None),
            ("GET", "/v1/endpoints?vendor=v_2", None),
            ("POST", "/v1/endpoints", {"vendor": "v_2", "url": receiver.url("/x")}),
        ]
        for method, path, body in forbidden:
            answer = await http.request(method, path, headers=one, json=body)
            assert answer.status_code == 403, (method, path, answer.text)

        # A vendor's redrive and dead-letter listing take only its own letters, whatever
        # the filter or ids it names.
        for query in ("", f"?endpoint_id={other['id']}"):
            redriven = await http.post(f"/v1/dead/redrive{query}", headers=one)
            assert redriven.json()["redriven"] == 0, redriven.text
            assert (await http.get(f"/v1/dead{query}", headers=one)).json() == []
        by_id = await http.post("/v1/dead/redrive", headers=one, json={"ids": [dead["id"]]})
        assert by_id.json()["redriven"] == 0
        assert (await http.get("/v1/dead", headers=OPERATOR)).json() == [dead]

        # Nothing of v_2 changed on the way.
        still = (await http.get(f"/v1/endpoints/{other['id']}", headers=OPERATOR)).json()
        assert still["enabled"] is True
        keys = (await http.get("/v1/vendors/v_2/keys", headers=two)).json()
        assert [(k["id"], k["revoked"]) for k in keys] == [(key["id"], None)]


async def test_expired_tampered_and_foreign_tokens_answer_401(
    make_settings: Callable[..., Settings],
) -> None:
    expired = bearer("v_1", ttl_s=1, now_s=time.time() - 5)
    foreign = {"Authorization": "Bearer " + issue("v_1", admin_token="other", now_s=time.time())}
    good = bearer("v_1")["Authorization"]
    tampered = {"Authorization": good[:-2] + ("A" if good[-2] != "A" else "B") + good[-1]}
    async with running_daemon(make_settings()) as daemon, client_for(daemon) as http:
        for headers in (expired, foreign, tampered):
            answer = await http.get("/v1/endpoints", headers=headers)
            assert answer.status_code == 401, answer.text
            assert answer.headers["www-authenticate"].startswith("Bearer")
        assert (await http.get("/v1/endpoints", headers={"Authorization": good})).status_code == 200


async def test_no_admin_token_means_no_portal_token_either(
    make_settings: Callable[..., Settings],
) -> None:
    async with (
        running_daemon(make_settings(admin={"token": ""})) as daemon,
        client_for(daemon) as http,
    ):
        assert (await http.get("/v1/endpoints", headers=bearer("v_1"))).status_code == 401


async def test_vendors_keys_usage_and_catalog(
    make_settings: Callable[..., Settings], key_prefix: str, aredis: AsyncRedis
) -> None:
    settings = make_settings(quotas={"default_plan": "basic", "limiter_prefix": f"{key_prefix}:rl"})
    one = bearer("v_1")
    async with running_daemon(settings) as daemon, client_for(daemon) as http:
        await http.post("/v1/endpoints", headers=one, json={"url": "http://127.0.0.1:9/h"})
        made = await http.post("/v1/vendors/v_1/keys", headers=one)
        assert made.status_code == 201, made.text
        key = made.json()
        assert key["key"].startswith("mk_live_") and key["vendor"] == "v_1"
        listed = (await http.get("/v1/vendors/v_1/keys", headers=one)).json()
        assert [k["id"] for k in listed] == [key["id"]] and "mk_live_" not in str(listed)
        usage = (await http.get("/v1/vendors/v_1", headers=one)).json()
        assert usage["plan"] == "basic"
        assert [u["limit"] for u in usage["api_calls"]] == ["10000/day", "50/minute"]
        assert usage["burst_headroom"] == 50
        assert usage["webhooks"]["daily_quota"]["amount"] == 100
        bad_plan = await http.post("/v1/vendors/v_1/keys", headers=one, json={"plan": "gold"})
        assert bad_plan.status_code == 400 and "basic" in bad_plan.text
        plans = AsyncVendorPlans(aredis, prefix=f"{key_prefix}:rl")
        await plans.set_plan("v_3", "growth")
        vendors = (await http.get("/v1/vendors", headers=OPERATOR)).json()
        assert vendors == [
            {"vendor": "v_1", "plan": None, "endpoints": 1, "api_keys": 1},
            {"vendor": "v_3", "plan": "growth", "endpoints": 0, "api_keys": 0},
        ]
        growth = (await http.get("/v1/vendors/v_3", headers=OPERATOR)).json()
        assert (growth["plan"], growth["burst_headroom"]) == ("growth", 200)
        revoked = await http.delete(f"/v1/vendors/v_1/keys/{key['id']}", headers=one)
        assert revoked.status_code == 200 and revoked.json()["revoked"] is not None
        catalog = (await http.get("/v1/catalog", headers=one)).json()
        created = next(t for t in catalog if t["type"] == "order.created")
        assert created["example"]["event"] == "order.created"
        assert created["example"]["data"]["order_id"]


async def test_the_portal_is_served_with_strict_headers(
    make_settings: Callable[..., Settings],
) -> None:
    async with running_daemon(make_settings()) as daemon, client_for(daemon) as http:
        page = await http.get("/portal/")
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]
        assert 'src="/portal/app.js"' in page.text and "<script>" not in page.text
        for path in ("/portal/", "/portal/app.js", "/portal/dom.js", "/portal/app.css"):
            answer = await http.get(path)
            assert answer.status_code == 200, path
            assert answer.headers["content-security-policy"].startswith("default-src 'self'")
            assert answer.headers["x-content-type-options"] == "nosniff"
            assert answer.headers["referrer-policy"] == "no-referrer"
            assert answer.headers["x-frame-options"] == "DENY"
            assert "set-cookie" not in answer.headers
        assert (await http.get("/portal")).headers["location"] == "/portal/"
        assert (await http.get("/portal/../webhookd.toml")).status_code == 404
        assert (await http.post("/portal/")).status_code == 405
