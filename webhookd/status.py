"""What waits where, for ``webhookd status`` and ``GET /v1/status``: per partition the
consumer group's lag and pending entries, retry backlog, held and deferred deliveries;
over all of them the totals; and the endpoints disabled now, with why."""

from __future__ import annotations

import dataclasses
from typing import Any

from webhookd.registry import Registry
from webhookd.store import PartitionStats, Store

TOTALS = ("lag", "pending", "retry_backlog", "held", "deferred")


def totals(stats: list[PartitionStats]) -> dict[str, int]:
    """Sums over the partitions (an unknown lag counts as 0)."""
    return {name: sum(getattr(s, name) or 0 for s in stats) for name in TOTALS}


async def status_report(store: Store, registry: Registry) -> dict[str, Any]:
    stats = await store.partition_stats()
    disabled = [
        {
            "id": e.id,
            "vendor": e.vendor,
            "reason": e.disabled_reason,
            "by": e.disabled_by,
            "since": e.disabled_at,
            "last_error": e.last_error,
        }
        for e in await registry.all()
        if not e.enabled
    ]
    return {
        **totals(stats),
        "partitions": [dataclasses.asdict(s) for s in stats],
        "disabled_endpoints": {"count": len(disabled), "endpoints": disabled},
    }
