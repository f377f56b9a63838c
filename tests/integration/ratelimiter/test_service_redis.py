"""The service on a real Redis: API keys, shared round trips, and Redis down or hanging."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import trio
import trio.testing
from service_harness import key_store, running_service, service_settings, write_plans

from httpserve import Request, Response
from ratelimiter.config import service_policy
from ratelimiter.service import FAILURE_HEADER, open_service
from webhookd.embedded import free_port

RATE_HEADERS = ("x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset",
                "ratelimit-policy", "ratelimit")  # fmt: skip


def evalsha_calls(client: redis.Redis) -> int:
    stats: dict[str, Any] = client.info("commandstats")  # type: ignore[assignment]
    return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))


async def test_check_and_auth_count_in_redis(redis_url: str, key_prefix: str) -> None:
    settings = service_settings(redis_url, key_prefix, deny_status=403)
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


async def test_api_keys_limit_per_key_on_the_keys_plan(
    redis_url: str, key_prefix: str, tmp_path: Path
) -> None:
    settings = service_settings(redis_url, key_prefix, write_plans(tmp_path), default_plan="basic")
    async with (
        key_store(redis_url, key_prefix) as keys,
        running_service(settings) as url,
        httpx.AsyncClient(base_url=url) as http,
    ):
        small, _ = await keys.create("v_1", "small", now_s=0)
        large, large_record = await keys.create("v_2", "large", now_s=0)

        async def auth(key: str) -> httpx.Response:
            return await http.get("/v1/auth", headers={"Authorization": f"Bearer {key}"})

        assert [(await auth(small)).status_code for _ in range(4)] == [200, 200, 200, 429]
        assert [(await auth(large)).status_code for _ in range(6)] == [200] * 5 + [429]
        assert (await auth("mk_live_" + "0" * 32)).status_code == 401
        await keys.set_plan(large_record.id, "basic")
        assert (await auth(large)).headers["x-ratelimit-limit"] == "50"
        await keys.revoke(small, now_s=1)
        revoked = await auth(small)
        assert revoked.status_code == 401
        assert "revoked" in revoked.json()["message"]


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
                for _ in range(5):
                    answer = await http.post("/v1/check", json={"key": f"k{index % 16}"})
                    statuses.append(answer.status_code)

            before = evalsha_calls(redis_client)
            async with trio.open_nursery() as nursery:
                for index in range(64):
                    nursery.start_soon(client, index)
            calls = evalsha_calls(redis_client) - before
    assert statuses == [200] * 320
    assert calls < 320 / 2, f"{calls} round trips for 320 decisions"


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
    settings = service_settings(dead_redis_url, key_prefix, failure_mode=mode)
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
    settings = service_settings(hanging_redis_url, key_prefix, failure_mode=mode, redis_timeout=2)
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
