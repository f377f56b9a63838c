"""``ServiceClient``, the Python client of the service, against a running service."""

from __future__ import annotations

import pytest
import trio
from service_harness import running_service, service_settings

from ratelimiter import BackendError, InvalidRequest
from ratelimiter.client import ServiceClient
from webhookd.embedded import free_port


async def test_check_returns_the_decision_and_raises_on_bad_requests(
    redis_url: str, key_prefix: str
) -> None:
    async with running_service(service_settings(redis_url, key_prefix)) as url:

        def use_the_client() -> list[dict[str, object]]:
            with ServiceClient(url) as client:
                decisions = [client.check("vendor:v_1", "2/m", route="GET /x") for _ in range(3)]
                decisions.append(client.check("vendor:v_2", plan="growth", cost=10))
                with pytest.raises(InvalidRequest, match="unknown plan 'gold'"):
                    client.check("vendor:v_1", plan="gold")
                with pytest.raises(InvalidRequest, match="cost"):
                    client.check("vendor:v_1", cost=0)
            return decisions

        decisions = await trio.to_thread.run_sync(use_the_client)
    assert [d["allowed"] for d in decisions[:3]] == [True, True, False]
    assert decisions[3]["remaining"] == 190


def test_an_unreachable_service_is_a_backend_error() -> None:
    client = ServiceClient(f"http://127.0.0.1:{free_port()}", timeout_s=0.5)
    with client, pytest.raises(BackendError, match="the rate limiter service failed"):
        client.check("k")
