"""``endpoint test``: one signed ``webhook.test`` event sent straight to an endpoint.

Not published to the stream and not recorded: the event goes through the sender's own
path (its transport, egress guard, TLS and signing), so what the answer shows is what a
real delivery would meet. ``webhook.test`` need not be in the event catalog, and the
endpoint need not subscribe to it.
"""

from __future__ import annotations

import random
import secrets
from typing import Any

from webhookd.clock import EpochClock
from webhookd.config import Settings
from webhookd.egress import delivery_transport
from webhookd.endpoints import Endpoint
from webhookd.events import Event, format_timestamp, render_body
from webhookd.retry import RetryPolicy
from webhookd.sender import Sender

TEST_EVENT_TYPE = "webhook.test"
EXCERPT_CHARS = 1024  # of the response body, in the answer


def test_event(endpoint: Endpoint, now_s: float, token: str) -> Event:
    """The test event for an endpoint; ``token`` makes its id unique."""
    event_id = f"evt_test_{token}"
    timestamp = format_timestamp(now_s)
    data = {"endpoint_id": endpoint.id, "message": "A test event sent by an operator."}
    body = render_body(TEST_EVENT_TYPE, event_id, timestamp, data)
    return Event(event_id, TEST_EVENT_TYPE, endpoint.vendor, timestamp, body)


async def send_test_event(sender: Sender, endpoint: Endpoint, now_s: float) -> dict[str, Any]:
    """Send the test event; what came back: status (None without a response), whether
    it counts as delivered, error, duration and the start of the response body."""
    event = test_event(endpoint, now_s, secrets.token_hex(8))
    record = await sender.probe(event, endpoint)
    status = record.result.status
    return {
        "endpoint_id": endpoint.id,
        "event_id": event.id,
        "url": endpoint.url,
        "delivered": status is not None and 200 <= status < 300,
        "status": status,
        "error": record.result.error,
        "duration_ms": round(record.duration_s * 1000, 3),
        "response": record.response_excerpt[:EXCERPT_CHARS],
    }


async def send_test_event_once(settings: Settings, endpoint: Endpoint) -> dict[str, Any]:
    """``send_test_event`` for one command (``webhookd endpoint test``), through a
    transport configured as the daemon's and closed afterwards."""
    transport = delivery_transport(settings.delivery)
    clock = EpochClock()
    sender = Sender(
        transport=transport,
        policy=RetryPolicy(settings.retry.schedule_s, settings.retry.jitter),
        clock=clock,
        rng=random.Random(),
        timeout_s=settings.delivery.timeout_s,
        concurrency=1,
    )
    try:
        return await send_test_event(sender, endpoint, clock.now_s())
    finally:
        await transport.aclose()
