"""Which vendor owns what an admin API path names: an endpoint, an event, a dead letter.

The admin API asks before a portal token may touch something (``principals.admit``).
None means nobody's or unknown, which a vendor is told is not found. An event is its
vendor's: the ``vendor`` field of its stream entry, or, once that entry is trimmed, the
vendor of the endpoints it went to (events only ever go to their own vendor's).
"""

from __future__ import annotations

import re

from webhookd.errors import EndpointNotFound
from webhookd.registry import Registry
from webhookd.store import Store

_STREAM_ID = re.compile(r"\d{1,20}-\d{1,20}")


async def endpoint_owner(registry: Registry, endpoint_id: str) -> str | None:
    try:
        return (await registry.get(endpoint_id)).vendor
    except EndpointNotFound:
        return None


async def event_owner(store: Store, registry: Registry, event_id: str) -> str | None:
    found = await store.event_record(event_id)
    if found is None:
        return None
    _, states, _ = found
    for state in states.values():
        origin = state.get("origin")
        if origin:
            fields = await store.entry(str(origin[0]), str(origin[1]))
            if fields is not None and b"vendor" in fields:
                return fields[b"vendor"].decode()
            break
    for endpoint_id in sorted(states):
        owner = await endpoint_owner(registry, endpoint_id)
        if owner is not None:
            return owner
    return None


async def dead_letter_owner(store: Store, dead_id: str) -> str | None:
    if not _STREAM_ID.fullmatch(dead_id):
        return None
    fields = await store.entry(store.dead_stream, dead_id)
    if fields is None or b"vendor" not in fields:
        return None
    return fields[b"vendor"].decode()
