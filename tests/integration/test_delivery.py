"""End-to-end delivery: real Redis, real receiver, the daemon in this trio run."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable

import redis
import trio
import trio.testing

from conftest import running_daemon
from webhook_receiver import Receiver, Reply
from webhookd.config import Settings
from webhookd.publisher import Publisher
from webhookd.verify import verify

ORDER = {
    "order_id": "ord_1001",
    "customer": {"id": "cus_7", "email": "ada@example.com"},
    "items": [{"sku": "SKU-1", "quantity": 2, "unit_price": "19.90"}],
    "total": "39.80",
}


def publisher(settings: Settings) -> Publisher:
    assert settings.redis.url
    return Publisher.from_url(settings.redis.url, stream=settings.stream.name)


def key_of(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix("whsec_"))


async def test_fan_out_signs_each_delivery_for_its_endpoint(
    make_settings: Callable[..., Settings], receiver: Receiver
) -> None:
    settings = make_settings()
    async with running_daemon(settings) as daemon:
        now = time.time()
        every = await daemon.registry.add("v_1", receiver.url("/every"), "*", now_s=now)
        orders = await daemon.registry.add("v_1", receiver.url("/orders"), "order.*", now_s=now)
        stock = await daemon.registry.add(
            "v_1", receiver.url("/stock"), "inventory.low_stock", now_s=now
        )
        other = await daemon.registry.add("v_2", receiver.url("/other"), "*", now_s=now)
        event_id = publisher(settings).publish("order.created", vendor="v_1", data=ORDER)
        with trio.fail_after(10):
            await receiver.wait_for(1, "/every")
            await receiver.wait_for(1, "/orders")
    assert receiver.to("/stock") == [] and receiver.to("/other") == []
    for path, endpoint in (("/every", every), ("/orders", orders)):
        [request] = receiver.to(path)
        headers, body = request.headers, request.body
        payload = json.loads(body)
        assert payload["event"] == "order.created"
        assert payload["event_id"] == event_id
        assert payload["data"] == ORDER
        assert payload["timestamp"].endswith("Z")
        assert headers["content-type"] == "application/json"
        assert headers["x-event-type"] == "order.created"
        assert headers["x-event-id"] == event_id
        assert headers["user-agent"].startswith("webhookd/")
        assert abs(int(headers["x-timestamp"]) - time.time()) < 60
        key = key_of(endpoint.secret)
        signed = headers["x-timestamp"].encode() + b"." + body
        assert headers["x-signature"] == "sha256=" + hmac.new(key, signed, "sha256").hexdigest()
        assert headers["webhook-id"] == event_id
        assert headers["webhook-timestamp"] == headers["x-timestamp"]
        std_signed = f"{event_id}.{headers['webhook-timestamp']}.".encode() + body
        expected = base64.b64encode(hmac.new(key, std_signed, hashlib.sha256).digest()).decode()
        assert headers["webhook-signature"] == "v1," + expected
        assert verify(body, headers, endpoint.secret)["event_id"] == event_id
    assert stock.id != other.id


async def test_retries_follow_the_schedule_then_dead_letter(
    make_settings: Callable[..., Settings],
    receiver: Receiver,
    redis_client: redis.Redis,
    mock_clock: trio.testing.MockClock,
) -> None:
    settings = make_settings()
    receiver.default = Reply(status=503, body=b"down for maintenance")
    async with running_daemon(settings) as daemon:
        endpoint = await daemon.registry.add("v_1", receiver.url(), now_s=time.time())
        event_id = publisher(settings).publish("order.created", vendor="v_1", data=ORDER)
        with trio.fail_after(60):
            attempts = await receiver.wait_for(6)
            while not redis_client.xlen(settings.stream.dead):
                await trio.sleep(0.05)
    gaps = [later.at - earlier.at for earlier, later in zip(attempts, attempts[1:], strict=False)]
    for gap, base in zip(gaps, (1, 2, 4, 8, 16), strict=True):
        assert base <= gap <= base * 1.1 + 0.1, gaps
    assert len({a.headers["x-event-id"] for a in attempts}) == 1
    [(_, dead)] = redis_client.xrange(settings.stream.dead)
    assert dead["event_id"] == event_id
    assert dead["endpoint_id"] == endpoint.id
    assert dead["attempts"] == "6"
    assert dead["last_status"] == "503"
    assert dead["last_error"] == "HTTP 503"
    assert redis_client.xpending(settings.stream.name, settings.stream.group)["pending"] == 0
