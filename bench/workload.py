"""What every client in the delivery benchmark sends: the events, their bodies and ids.

The daemons get their events through XADD; the bare clients POST the body one such
event renders to, so every client sends the same ~1.1 KB.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

import redis

from webhookd.events import format_timestamp, render_body
from webhookd.publisher import entry_fields

EVENT_TYPE = "order.created"
DATA_BYTES = 1024
PUBLISH_CHUNK = 1000


def event_data(seq: int) -> dict[str, Any]:
    """A data object whose JSON is exactly DATA_BYTES long, as the issue asks."""
    data: dict[str, Any] = {"order_id": f"ord_{seq:08d}", "amount_cents": 1999 + seq % 1000}
    data["note"] = ""
    data["note"] = "x" * (DATA_BYTES - len(json.dumps(data, separators=(",", ":"))))
    return data


def sample_body(now_s: float = 0.0) -> bytes:
    """The body of one event, as the daemon renders it: what the bare clients POST."""
    return render_body(EVENT_TYPE, "evt_0-0", format_timestamp(now_s), event_data(0))


def vendor_of(seq: int, vendors: int) -> str:
    return f"vendor-{seq % vendors}"


def publish(client: redis.Redis, stream: str, seqs: range, vendors: int) -> list[str]:
    """Pipelined XADDs of the events ``seqs``; returns their event ids (evt_ + entry id)."""
    ids: list[str] = []
    for start in range(seqs.start, seqs.stop, PUBLISH_CHUNK):
        pipe = client.pipeline(transaction=False)
        for seq in range(start, min(start + PUBLISH_CHUNK, seqs.stop)):
            fields = entry_fields(EVENT_TYPE, vendor_of(seq, vendors), event_data(seq), None)
            pipe.xadd(stream, fields)  # type: ignore[arg-type]
        ids += [f"evt_{entry_id}" for entry_id in pipe.execute()]
    return ids


def xadd_ms(event_id: str) -> float:
    """The XADD time Redis put into an entry id (``evt_<ms>-<seq>``)."""
    return float(event_id.removeprefix("evt_").partition("-")[0])


def percentile(ordered: Sequence[float], share: float) -> float:
    """Nearest-rank percentile of an already sorted sequence; NaN when it is empty."""
    if not ordered:
        return math.nan
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]
