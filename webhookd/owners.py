"""Which vendor owns what an admin API path names: an endpoint, an event, a dead letter.

The admin API asks before a portal token may touch something (``principals.admit``).
None means nobody's or unknown, which a vendor is told is not found. An event is its
vendor's: the ``vendor`` field of its stream entry (found through its delivery record,
or, for an event with none, through its id), or, once that entry is trimmed, the vendor
of the endpoints it went to (events only ever go to their own vendor's).
"""

from __future__ import annotations

from webhookd.deadletters import valid_id
from webhookd.errors import EndpointNotFound
from webhookd.redrive import entry_of
from webhookd.registry import Registry
from webhookd.store import Store


async def endpoint_owner(registry: Registry, endpoint_id: str) -> str | None:
    try:
        return (await registry.get(endpoint_id)).vendor
    except EndpointNotFound:
        return None


async def event_owner(store: Store, registry: Registry, event_id: str) -> str | None:
    found = await store.event_record(event_id)
    states = found[1] if found is not None else {}
    origins = [state["origin"] for state in states.values() if state.get("origin")]
    located = (str(origins[0][0]), str(origins[0][1])) if origins else None
    if found is None:
        located = await entry_of(store, event_id)
    if located is not None:
        fields = await store.entry(*located)
        if fields is not None and b"vendor" in fields:
            return fields[b"vendor"].decode()
    for endpoint_id in sorted(states):
        owner = await endpoint_owner(registry, endpoint_id)
        if owner is not None:
            return owner
    return None


async def dead_letter_owner(store: Store, dead_id: str) -> str | None:
    if not valid_id(dead_id):
        return None
    [(_, fields)] = await store.dead_letters_by_id([dead_id])
    return None if fields is None else fields.get("vendor")
