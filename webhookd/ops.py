"""Operational events: what operators and the platform are told, on ``stream.ops``.

Entries use the producers' format (``type``, ``vendor``, ``data`` as a JSON object,
``id``), so the platform can read them as any stream, or point a webhookd endpoint at
them. Each is written once per occurrence: by whoever made the change (the daemon whose
compare-and-swap disabled the endpoint, the recorder that wrote the dead letter), and
its ``id`` names the occurrence, so a consumer that dedupes on ids (webhookd does)
takes a repeat after a retried write once.

The builders are pure; ``emit`` is the one Redis call.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import fastjson
from webhookd.connection import RedisClient, translated
from webhookd.endpoints import Endpoint

OpsEntry = dict[str, str]


def entry(event_type: str, vendor: str, data: Mapping[str, Any], event_id: str) -> OpsEntry:
    return {"type": event_type, "vendor": vendor, "data": fastjson.dumps_text(dict(data)),
            "id": event_id}  # fmt: skip


def endpoint_disabled(endpoint: Endpoint, now_ms: int) -> OpsEntry:
    """``endpoint`` as just disabled: why (gone, failing, operator), since, last answer."""
    data = {
        "endpoint_id": endpoint.id,
        "reason": endpoint.disabled_by or "operator",
        "detail": endpoint.disabled_reason,
        "since": endpoint.disabled_at,
        "last_status": endpoint.last_status,
        "last_error": endpoint.last_error,
        "url": endpoint.url,
    }
    return entry("endpoint.disabled", endpoint.vendor, data,
                 f"op_endpoint.disabled_{endpoint.id}_{now_ms}")  # fmt: skip


def endpoint_enabled(endpoint: Endpoint, at: str, now_ms: int) -> OpsEntry:
    data = {"endpoint_id": endpoint.id, "at": at, "url": endpoint.url}
    return entry("endpoint.enabled", endpoint.vendor, data,
                 f"op_endpoint.enabled_{endpoint.id}_{now_ms}")  # fmt: skip


def dead_lettered(letter: Mapping[str, str], dead_id: str) -> OpsEntry | None:
    """For a delivery's dead letter (``model.dead_letter``'s fields); None for other
    dead letters (a malformed entry, an id conflict), which name no endpoint."""
    if "endpoint_id" not in letter or "event_id" not in letter:
        return None
    status = letter.get("last_status") or None
    data = {
        "event_id": letter["event_id"],
        "endpoint_id": letter["endpoint_id"],
        "event_type": letter.get("event_type"),
        "attempts": int(letter.get("attempts") or 0),
        "last_status": None if status is None else int(status),
        "last_error": letter.get("last_error") or None,
        "reason": letter.get("reason"),
        "dead_letter_id": dead_id,
    }
    return entry("delivery.dead_lettered", letter.get("vendor", ""), data,
                 f"op_delivery.dead_lettered_{dead_id}")  # fmt: skip


async def emit(client: RedisClient, stream: str, ops_entry: OpsEntry) -> None:
    """Raises StoreError."""
    with translated(f"XADD {stream}"):
        await client.xadd(stream, dict(ops_entry))
