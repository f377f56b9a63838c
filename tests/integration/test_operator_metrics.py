"""The gauges operators alert on: the retry backlog and the disabled endpoints."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import trio
from conftest import publish, running_daemon, until
from prometheus_client.parser import text_string_to_metric_families
from webhook_receiver import Receiver, Reply

from webhookd.config import Settings
from webhookd.publisher import Publisher

TOKEN = {"Authorization": "Bearer test-admin-token"}


def gauge(text: str, name: str) -> float | None:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                return sample.value
    return None


async def test_the_retry_backlog_and_disabled_endpoints_are_on_metrics(
    make_settings: Callable[..., Settings], receiver: Receiver
) -> None:
    settings = make_settings(retry={"schedule": [60], "jitter": 0})
    receiver.script("/failing", Reply(status=500))
    assert settings.redis.url
    publisher = Publisher.from_url(settings.redis.url, stream=settings.stream.name)
    async with running_daemon(settings) as daemon:
        base = f"http://127.0.0.1:{daemon.admin_port}"
        async with httpx.AsyncClient(base_url=base, headers=TOKEN) as http:
            for path in ("/failing", "/off"):
                endpoint = {"vendor": "v_1", "url": receiver.url(path)}
                made = await http.post("/v1/endpoints", json=endpoint)
                assert made.status_code == 201
            await http.patch(f"/v1/endpoints/{made.json()['id']}", json={"enabled": False})
            await publish(publisher, "order.created", vendor="v_1", data={"n": 1})

            async def scraped() -> tuple[float | None, float | None]:
                text = (await http.get("/metrics")).text
                return (gauge(text, "webhookd_retry_backlog"),
                        gauge(text, "webhookd_disabled_endpoints"))  # fmt: skip

            with trio.fail_after(15):  # the backlog is sampled every 5 s
                await until(scraped, equals=(1.0, 1.0), interval_s=0.2)
