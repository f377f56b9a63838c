"""Intake rules through the daemon: the payload cap and events of unknown types."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import trio
from conftest import AsyncRedis, entries, pending, publish, running_daemon, until
from webhook_receiver import Receiver

from webhookd.config import Settings
from webhookd.publisher import Publisher


async def test_oversized_and_unknown_events_are_dead_lettered_with_their_reason(
    make_settings: Callable[..., Settings], receiver: Receiver, aredis: AsyncRedis
) -> None:
    settings = make_settings(
        delivery={"max_payload_bytes": 1024}, events={"unknown": "dead_letter"}
    )
    assert settings.redis.url
    publisher = Publisher.from_url(settings.redis.url, stream=settings.stream.name)
    async with running_daemon(settings) as daemon:
        await daemon.registry.add("v_1", receiver.url(), now_s=time.time())
        await publish(publisher, "order.created", vendor="v_1", data={"note": "x" * 2000})
        await publish(publisher, "partner.synced", vendor="v_1", data={})
        await publish(publisher, "order.created", vendor="v_1", data={"note": "fits"})
        with trio.fail_after(10):
            await receiver.wait_for(1)
            await until(lambda: aredis.xlen(settings.stream.dead), equals=2)
    reasons = [fields["reason"] for _, fields in await entries(aredis, settings.stream.dead)]
    assert reasons[0].endswith("over the 1024-byte limit (delivery.max_payload_bytes)")
    assert reasons[1].startswith("unknown event type 'partner.synced'")
    assert [json.loads(r.body)["data"] for r in receiver.requests] == [{"note": "fits"}]
    assert await pending(aredis, settings.stream.name, settings.stream.group) == 0


async def test_unknown_types_are_delivered_by_default(
    make_settings: Callable[..., Settings], receiver: Receiver
) -> None:
    settings = make_settings()
    assert settings.redis.url
    publisher = Publisher.from_url(settings.redis.url, stream=settings.stream.name)
    async with running_daemon(settings) as daemon:
        await daemon.registry.add("v_1", receiver.url(), now_s=time.time())
        await publish(publisher, "partner.synced", vendor="v_1", data={})
        with trio.fail_after(10):
            [request] = await receiver.wait_for(1)
    assert request.headers["x-event-type"] == "partner.synced"
