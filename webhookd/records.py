"""An event's delivery record as operators see it (``GET /v1/events/{id}``,
``webhookd events show``): each endpoint's delivery with every attempt made for it."""

from __future__ import annotations

from typing import Any

from webhookd.store import Store


async def event_deliveries(store: Store, event_id: str) -> dict[str, Any] | None:
    """The event's deliveries, or None when nothing is recorded for it."""
    found = await store.event_record(event_id)
    if found is None:
        return None
    _, states, attempts = found
    deliveries = [
        {**state, "attempt_log": [a for a in attempts if a["endpoint_id"] == endpoint_id]}
        for endpoint_id, state in sorted(states.items())
    ]
    return {"event_id": event_id, "deliveries": deliveries}
