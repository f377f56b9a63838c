"""``webhookd demo``: a newcomer's first minute, end to end on a real Redis.

A sample vendor receiver (plain ``http.server``, verifying every signature with
``webhookd.verify``) is registered as an endpoint; a few marketplace events are
published; the first delivery of one of them is refused once so the retry shows.
"""

from __future__ import annotations

import dataclasses
import http.server
import threading
import time
from collections.abc import Callable
from typing import Any

import click
import trio

from webhookd.config import Settings
from webhookd.connection import open_client
from webhookd.daemon import Daemon
from webhookd.publisher import Publisher
from webhookd.verify import InvalidSignature, verify

DEMO_PREFIX = "webhookd:demo"
EVENTS: list[tuple[str, dict[str, Any]]] = [
    (
        "order.created",
        {
            "order_id": "ord_1001",
            "customer": {"id": "cus_42", "name": "Ada Lovelace", "email": "ada@example.com"},
            "items": [
                {"sku": "MUG-BLUE", "name": "Blue mug", "quantity": 2, "unit_price": "12.50"},
                {"sku": "TEA-EARL", "name": "Earl Grey", "quantity": 1, "unit_price": "7.90"},
            ],
            "total": "32.90",
            "currency": "EUR",
            "shipping_address": {
                "line1": "12 St James's Square", "city": "London",
                "postal_code": "SW1Y 4JH", "country": "GB",
            },
        },
    ),
    ("inventory.low_stock", {"sku": "MUG-BLUE", "available": 3, "threshold": 5}),
    ("order.shipped", {"order_id": "ord_1001", "carrier": "DHL", "tracking": "JD0146000033"}),
]  # fmt: skip


@dataclasses.dataclass
class SampleVendor:
    """What the vendor's server saw: (event type, event id, status answered, verified)."""

    secret: str = ""
    seen: list[tuple[str, str, int, bool]] = dataclasses.field(default_factory=list)
    expected: int = len(EVENTS) + 1  # every event, and the one refused delivery again
    refuse_once: str = "inventory.low_stock"
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)
    all_seen: threading.Event = dataclasses.field(default_factory=threading.Event)

    def handle(self, body: bytes, headers: dict[str, str]) -> int:
        try:
            payload = verify(body, headers, self.secret)
            verified = True
        except InvalidSignature:
            payload, verified = {}, False
        event_type = str(payload.get("event", "?"))
        with self.lock:
            refuse = verified and event_type == self.refuse_once
            if refuse:
                self.refuse_once = ""
            status = 401 if not verified else 503 if refuse else 200
            self.seen.append((event_type, str(payload.get("event_id", "?")), status, verified))
            if len(self.seen) >= self.expected:
                self.all_seen.set()
        return status


def serve_vendor(vendor: SampleVendor) -> http.server.ThreadingHTTPServer:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            status = vendor.handle(body, dict(self.headers.items()))
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: the demo prints its own account."""

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def demo_settings(settings: Settings) -> Settings:
    """The operator's settings, on keys of the demo's own, allowed to POST to loopback."""
    return dataclasses.replace(
        settings,
        redis=dataclasses.replace(settings.redis, key_prefix=DEMO_PREFIX),
        stream=dataclasses.replace(
            settings.stream, name=f"{DEMO_PREFIX}:events", dead=f"{DEMO_PREFIX}:dead", partitions=1
        ),
        delivery=dataclasses.replace(
            settings.delivery, require_https=False, allow_private_targets=True
        ),
        admin=dataclasses.replace(settings.admin, listen="127.0.0.1:0"),
    )


async def run_demo(settings: Settings, url: str, say: Callable[[str], None]) -> bool:
    vendor = SampleVendor()
    server = serve_vendor(vendor)
    host, port = server.server_address[:2]
    try:
        async with open_client(url) as client, trio.open_nursery() as nursery:
            daemon = Daemon(settings, client)
            await nursery.start(daemon.run)
            for leftover in await daemon.registry.all():
                await daemon.registry.remove(leftover.id)
            endpoint = await daemon.registry.add(
                "vendor_demo", f"http://{host!s}:{port}/webhooks", "*", now_s=time.time()
            )
            vendor.secret = endpoint.secret
            say(f"registered endpoint {endpoint.id} -> {endpoint.url}")
            publisher = Publisher.from_url(url, stream=settings.stream.name)
            for event_type, data in EVENTS:
                event_id = publisher.publish(event_type, vendor="vendor_demo", data=data)
                say(f"published {event_type:<22} {event_id}")
            publisher.close()
            await trio.to_thread.run_sync(vendor.all_seen.wait, 30)
            await daemon.registry.remove(endpoint.id)
            daemon.stop()
    finally:
        server.shutdown()
    say("")
    say("what the vendor's server received (signatures checked with webhookd.verify):")
    for event_type, event_id, status, verified in vendor.seen:
        check = "signature ok" if verified else "BAD SIGNATURE"
        note = "  <- refused once on purpose; retried 1 s later" if status == 503 else ""
        say(f"  {status}  {event_type:<22} {event_id}  {check}{note}")
    ok = len(vendor.seen) == vendor.expected and all(v for *_, v in vendor.seen)
    say("")
    say("demo finished: every event delivered and verified" if ok else "demo did NOT finish")
    return ok


def demo(settings: Settings, url: str) -> bool:
    settings = demo_settings(settings)
    click.echo(f"webhookd demo on {url} (stream {settings.stream.name})")
    return trio.run(run_demo, settings, url, click.echo)
