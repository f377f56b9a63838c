"""The service on a real Redis: API keys and vendors' quotas, shared round trips, one bad
request in a shared round trip, and Redis down or hanging."""

from __future__ import annotations

import signal
import socket
from collections.abc import Iterator
from pathlib import Path

import coredis
import httpx
import pytest
import redis
import trio
import trio.testing
from service_harness import evalsha_calls, key_store, running_service, service_settings, write_plans

from httpserve import Request, Response
from ratelimiter.config import service_policy
from ratelimiter.embedded import RedisProcess, free_port, running_redis
from ratelimiter.service import FAILURE_HEADER, open_service
from ratelimiter.vendors import AsyncVendorPlans

RATE_HEADERS = ("x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset",
                "ratelimit-policy", "ratelimit")  # fmt: skip


async def test_check_and_auth_count_in_redis(redis_url: str, key_prefix: str) -> None:
    settings = service_settings(redis_url, key_prefix, deny_status=403, trust_key_header=True)
    async with running_service(settings) as url, httpx.AsyncClient(base_url=url) as http:
        for expected in (49, 48):
            answer = await http.post("/v1/check", json={"key": "vendor:v_1", "plan": "basic"})
            assert (answer.status_code, answer.json()["remaining"]) == (200, expected)
        shared = await http.get("/v1/auth", headers={"X-RateLimit-Key": "vendor:v_1"})
        assert (shared.status_code, shared.headers["x-ratelimit-remaining"]) == (200, "47")
        refused = await http.post("/v1/check", json={"key": "k", "limits": ["1/m"], "cost": 2})
        assert refused.json()["allowed"] is False
        assert "retry-after" in refused.headers
        health = await http.get("/healthz")
        assert health.json() == {"status": "ok", "store": "redis"}


async def test_a_vendors_keys_share_its_plan_and_a_keys_own_plan_applies_too(
    redis_url: str, key_prefix: str, tmp_path: Path
) -> None:
    settings = service_settings(redis_url, key_prefix, write_plans(tmp_path), default_plan="basic")
    async with (
        key_store(redis_url, key_prefix) as keys,
        coredis.Redis.from_url(redis_url) as client,
        running_service(settings) as url,
        httpx.AsyncClient(base_url=url) as http,
    ):
        vendors = AsyncVendorPlans(client, plans=settings.plans_file, prefix=key_prefix)
        await vendors.set_plan("v_1", "small")  # 3/minute
        await vendors.set_plan("v_2", "large")  # 5/minute
        first, _ = await keys.create("v_1", None, now_s=0)
        second, _ = await keys.create("v_1", None, now_s=0)
        tight, _ = await keys.create("v_2", "small", now_s=0)
        loose, loose_record = await keys.create("v_2", None, now_s=0)

        async def auth(key: str) -> int:
            answer = await http.get("/v1/auth", headers={"Authorization": f"Bearer {key}"})
            return answer.status_code

        # Two keys of one vendor: three calls between them, as its plan says.
        assert [await auth(key) for key in (first, second, first, second, first)] == (
            [200, 200, 200, 429, 429]
        )
        # A key's own plan (3/minute) binds before its vendor's (5/minute)...
        assert [await auth(tight) for _ in range(4)] == [200, 200, 200, 429]
        # ... and what it used counts for the vendor: two calls are left for the others.
        assert [await auth(loose) for _ in range(3)] == [200, 200, 429]
        usage = await vendors.usage("v_2", "large")
        assert [(u.limit, u.used, u.remaining) for u in usage] == [("5/minute", 5, 0)]
        # A vendor's new plan reaches the service (the test's cache lasts 0 s).
        await vendors.set_plan("v_2", "basic")
        refreshed = await http.get("/v1/auth", headers={"Authorization": f"Bearer {loose}"})
        assert refreshed.headers["x-ratelimit-limit"] == "50"

        assert await auth("mk_live_" + "0" * 32) == 401
        await keys.revoke(loose_record.id, now_s=1)
        revoked = await http.get("/v1/auth", headers={"Authorization": f"Bearer {loose}"})
        assert revoked.status_code == 401
        assert "revoked" in revoked.json()["message"]


async def test_check_keys_never_touch_an_api_keys_quota(
    redis_url: str, key_prefix: str, tmp_path: Path
) -> None:
    settings = service_settings(redis_url, key_prefix, write_plans(tmp_path), default_plan="small")
    async with (
        key_store(redis_url, key_prefix) as keys,
        running_service(settings) as url,
        httpx.AsyncClient(base_url=url) as http,
    ):
        key, record = await keys.create("v_9", None, now_s=0)
        for name in (f"apikey:{record.id}", "vendor:v_9", "raw:vendor:v_9", "}vendor:v_9"):
            for _ in range(3):
                body = {"key": name, "plan": "small", "limits": ["1/m"]}
                await http.post("/v1/check", json=body)
        answer = await http.get("/v1/auth", headers={"Authorization": f"Bearer {key}"})
        assert (answer.status_code, answer.headers["x-ratelimit-remaining"]) == (200, "2")


async def test_concurrent_requests_share_redis_round_trips(
    redis_url: str, redis_client: redis.Redis, key_prefix: str
) -> None:
    settings = service_settings(redis_url, key_prefix)
    async with running_service(settings) as url:
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
        async with httpx.AsyncClient(base_url=url, limits=limits) as http:
            await http.post("/v1/check", json={"key": "warm-up"})  # loads the script
            statuses: list[int] = []

            async def client(index: int) -> None:
                answer = await http.post("/v1/check", json={"key": f"k{index % 16}"})
                statuses.append(answer.status_code)

            before = evalsha_calls(redis_client)
            # Redis holds the first round trip (a write pause holds EVALSHA, not CLIENT
            # UNPAUSE) until every other request has arrived and waits, however slow the
            # machine: they all go out in the next one.
            redis_client.client_pause(30_000, all=False)
            async with trio.open_nursery() as nursery:
                for index in range(64):
                    nursery.start_soon(client, index)
                try:
                    await trio.testing.wait_all_tasks_blocked(cushion=0.05)
                finally:
                    redis_client.client_unpause()
            calls = evalsha_calls(redis_client) - before
    assert statuses == [200] * 64
    assert calls <= 3, f"{calls} round trips for 64 concurrent decisions"


@pytest.fixture
def dead_redis_url() -> str:
    """A port nothing listens on: every connection is refused at once."""
    return f"redis://127.0.0.1:{free_port()}/0"


@pytest.fixture
def hanging_redis_url() -> Iterator[str]:
    """A port that accepts connections (the kernel does) and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        yield f"redis://127.0.0.1:{listener.getsockname()[1]}/0"


def auth_request(**headers: str) -> Request:
    named = {name.replace("_", "-"): value for name, value in headers.items()}
    return Request("GET", "/v1/auth", named, b"", "/v1/auth")


@pytest.mark.parametrize(("mode", "status"), [("open", 200), ("closed", 503)])
async def test_redis_down_answers_by_failure_mode_at_once(
    dead_redis_url: str, key_prefix: str, mode: str, status: int
) -> None:
    settings = service_settings(
        dead_redis_url, key_prefix, failure_mode=mode, trust_key_header=True
    )
    async with running_service(settings) as url, httpx.AsyncClient(base_url=url) as http:
        with trio.fail_after(5):
            for answer in (
                await http.post("/v1/check", json={"key": "k"}),
                await http.get("/v1/auth", headers={"X-RateLimit-Key": "k"}),
                await http.get("/v1/auth", headers={"Authorization": "Bearer mk_live_" + "1" * 32}),
            ):
                assert answer.status_code == status
                assert answer.headers[FAILURE_HEADER.lower()] == mode
                assert all(name in answer.headers for name in RATE_HEADERS)
            health = await http.get("/healthz")
        assert health.status_code == status
        assert health.json()["status"] == "degraded"


@pytest.mark.parametrize(("mode", "status"), [("open", 200), ("closed", 503)])
async def test_a_hanging_redis_is_given_up_on_within_the_timeout(
    hanging_redis_url: str,
    key_prefix: str,
    mock_clock: trio.testing.MockClock,
    mode: str,
    status: int,
) -> None:
    """Measured on trio's clock, which jumps while the requests wait on the silent socket."""
    settings = service_settings(
        hanging_redis_url, key_prefix, failure_mode=mode, redis_timeout=2, trust_key_header=True
    )
    async with open_service(settings, service_policy(settings)) as service:
        for request in (
            auth_request(x_ratelimit_key="k"),
            auth_request(authorization="Bearer mk_live_" + "2" * 32),  # a look-up first
        ):
            answers: list[Response] = []

            async def ask(request: Request = request, answers: list[Response] = answers) -> None:
                answers.append(await service.handle(request))

            started = trio.current_time()
            async with trio.open_nursery() as nursery:  # one waits behind another's round trip
                for _ in range(8):
                    nursery.start_soon(ask)
            waited = trio.current_time() - started
            timeout_s = settings.service.redis_timeout_s
            assert timeout_s / 2 <= waited <= timeout_s, waited
            assert [answer.status for answer in answers] == [status] * 8
            assert all(dict(answer.headers)[FAILURE_HEADER] == mode for answer in answers)


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisProcess]:
    """A redis-server of this test's own, which it may freeze (SIGSTOP) to make it hang."""
    with running_redis(tmp_path / "redis", persistent=False) as server:
        try:
            yield server
        finally:
            server.process.send_signal(signal.SIGCONT)


async def test_a_known_bad_api_key_stays_refused_while_redis_hangs(
    own_redis: RedisProcess, key_prefix: str, mock_clock: trio.testing.MockClock
) -> None:
    """failure_mode open lets requests through when Redis hangs, but not with a key the
    cache already knows to be unknown or revoked (the cache's TTL is 0 here: every entry
    has expired, and is still better than nothing)."""
    settings = service_settings(own_redis.url, key_prefix, failure_mode="open", redis_timeout=2)
    async with (
        key_store(own_redis.url, key_prefix) as keys,
        open_service(settings, service_policy(settings)) as service,
    ):
        good, _ = await keys.create("v_1", None, now_s=0)
        revoked, _ = await keys.create("v_1", None, now_s=0)
        await keys.revoke(revoked, now_s=1)
        unknown = "mk_live_" + "3" * 32
        requests = {
            name: auth_request(authorization=f"Bearer {key}")
            for name, key in (("good", good), ("revoked", revoked), ("unknown", unknown))
        }
        before = {name: (await service.handle(r)).status for name, r in requests.items()}
        assert before == {"good": 200, "revoked": 401, "unknown": 401}
        own_redis.process.send_signal(signal.SIGSTOP)
        started = trio.current_time()
        during = {name: await service.handle(r) for name, r in requests.items()}
        assert {name: answer.status for name, answer in during.items()} == before
        assert dict(during["good"].headers)[FAILURE_HEADER] == "open"
        assert FAILURE_HEADER not in dict(during["unknown"].headers)
        assert trio.current_time() - started <= 3 * settings.service.redis_timeout_s
        own_redis.process.send_signal(signal.SIGCONT)


SPELLINGS = [
    "/api/v2/%6frders",
    "/api/v2/orders/",
    "/api//v2/orders",
    "//api/v2/orders",
    "/api/v2/./orders",
    "/api/v2/x/../orders",
    "/API/V2/ORDERS",
    "/api/v2%2Forders?page=1",
    "/api/v2/orders;jsessionid=1",
]


@pytest.mark.parametrize("spelling", SPELLINGS)
async def test_no_spelling_of_a_path_escapes_its_route_limit(
    redis_url: str, key_prefix: str, spelling: str
) -> None:
    routes = {"POST /api/v2/orders": "5/minute"}
    settings = service_settings(redis_url, key_prefix, routes=routes)
    async with (
        key_store(redis_url, key_prefix) as keys,
        running_service(settings) as url,
        httpx.AsyncClient(base_url=url) as http,
    ):
        key, _ = await keys.create("v_1", None, now_s=0)

        async def auth(method: str, uri: str) -> int:
            headers = {"Authorization": f"Bearer {key}", "X-Original-Method": method,
                       "X-Original-URI": uri}  # fmt: skip
            return (await http.get("/v1/auth", headers=headers)).status_code

        assert [await auth("POST", "/api/v2/orders") for _ in range(5)] == [200] * 5
        assert await auth("POST", spelling) == 429
        assert await auth("post", spelling) == 429
        assert await auth("GET", spelling) == 200  # another route
        assert await auth("POST", "/api/v2/orders/1") == 200
