"""Stream entries in, events out: parsing and validating what producers publish.

Pure: no I/O, no clock. The read time is passed in for events without ``ts``.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

import fastjson
from webhookd.errors import InvalidEventError
from webhookd.values import value_type

EVENT_TYPE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,199}")
VENDOR_ID = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:\-]{0,199}")
EVENT_ID = re.compile(r"[!-~]{1,256}")  # printable ASCII, no spaces: it travels in headers


@value_type
class Event:
    """One published event, with its delivery body rendered once for every endpoint and attempt."""

    id: str
    type: str
    vendor: str
    timestamp: str
    body: bytes


@dataclass(frozen=True, slots=True)
class EventRules:
    """What intake accepts beyond a well-formed entry; the defaults accept everything."""

    max_body_bytes: int | None = None  # delivery.max_payload_bytes
    known_types: frozenset[str] | None = None  # the catalog when events.unknown = dead_letter


ACCEPT_ALL = EventRules()


def format_timestamp(epoch_s: float) -> str:
    """RFC 3339 in UTC with millisecond precision, the form every payload carries."""
    whole_s = math.floor(epoch_s)
    microseconds = round((epoch_s - whole_s) * 1e6)  # as datetime rounds, half to even
    if microseconds == 1_000_000:
        whole_s, microseconds = whole_s + 1, 0
    return f"{_second(whole_s)}.{microseconds // 1000:03d}Z"


@functools.lru_cache(maxsize=64)
def _second(whole_s: int) -> str:
    """The seconds part of a timestamp: every delivery in one second shares it."""
    return datetime.fromtimestamp(whole_s, UTC).strftime("%Y-%m-%dT%H:%M:%S")


def parse_timestamp(text: str) -> float:
    """Epoch seconds of an RFC 3339 timestamp; one with no offset is refused as ambiguous."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidEventError(f"ts is not an RFC 3339 timestamp: {text[:64]!r}") from None
    if moment.tzinfo is None:
        raise InvalidEventError(f"ts has no UTC offset: {text[:64]!r}")
    try:
        epoch_s = moment.timestamp()
        format_timestamp(epoch_s)
    except (OverflowError, ValueError, OSError):
        raise InvalidEventError(f"ts is out of range: {text[:64]!r}") from None
    return epoch_s


def render_body(
    event_type: str, event_id: str, timestamp: str, data: Mapping[str, object]
) -> bytes:
    payload = {"event": event_type, "event_id": event_id, "timestamp": timestamp, "data": data}
    return fastjson.dumps(payload)


def default_event_id(entry_id: str, partition: int | None) -> str:
    """``evt_<entry id>``; on a partitioned stream ``evt_p<partition>_<entry id>``, since two
    partitions can hand out the same entry id in the same millisecond."""
    return f"evt_{entry_id}" if partition is None else f"evt_p{partition}_{entry_id}"


DEFAULT_ID = re.compile(r"evt_(?:p(?P<partition>\d+)_)?(?P<entry>\d+-\d+)")


def default_id_entry(event_id: str) -> tuple[int | None, str] | None:
    """(partition or None, entry id) that a default event id names; None for other ids."""
    match = DEFAULT_ID.fullmatch(event_id)
    if match is None:
        return None
    partition = match["partition"]
    return (None if partition is None else int(partition)), match["entry"]


def parse_entry(
    entry_id: str,
    fields: Mapping[bytes, bytes],
    read_at_s: float,
    rules: EventRules = ACCEPT_ALL,
    partition: int | None = None,
) -> Event:
    """The event a stream entry holds; raises InvalidEventError whose message is the reason.
    ``partition`` is the stream's index when the stream is partitioned, else None."""
    text = _decode_fields(fields)
    event_type = _required(text, "type", EVENT_TYPE)
    if rules.known_types is not None and event_type not in rules.known_types:
        raise InvalidEventError(
            f"unknown event type {event_type!r}: not in the event catalog "
            "(events.unknown is dead_letter)"
        )
    vendor = _required(text, "vendor", VENDOR_ID)
    raw_data = text.get("data")
    if raw_data is None:
        raise InvalidEventError("missing field 'data'")
    try:
        data = fastjson.loads(raw_data)
    except ValueError as exc:
        raise InvalidEventError(f"data is not valid JSON: {exc}") from None
    except RecursionError:
        raise InvalidEventError("data is nested too deeply") from None
    if not isinstance(data, dict):
        raise InvalidEventError(f"data must be a JSON object, got {type(data).__name__}")
    event_id = text.get("id")
    if event_id is None:
        event_id = default_event_id(entry_id, partition)
    elif not EVENT_ID.fullmatch(event_id):
        raise InvalidEventError("id must be 1-256 printable ASCII characters without spaces")
    ts = text.get("ts")
    epoch_s = read_at_s if ts is None else parse_timestamp(ts)
    timestamp = format_timestamp(epoch_s)
    try:
        body = render_body(event_type, event_id, timestamp, data)
    except UnicodeEncodeError:
        raise InvalidEventError("data holds a lone surrogate escape, not valid Unicode") from None
    except RecursionError:
        raise InvalidEventError("data is nested too deeply") from None
    if rules.max_body_bytes is not None and len(body) > rules.max_body_bytes:
        raise InvalidEventError(
            f"payload is {len(body)} bytes, over the {rules.max_body_bytes}-byte limit "
            "(delivery.max_payload_bytes)"
        )
    return Event(id=event_id, type=event_type, vendor=vendor, timestamp=timestamp, body=body)


def _decode_fields(fields: Mapping[bytes, bytes]) -> dict[str, str]:
    decoded = {}
    for key, value in fields.items():
        try:
            decoded[key.decode()] = value.decode()
        except UnicodeDecodeError:
            name = key.decode("utf-8", "replace")
            raise InvalidEventError(f"field {name!r} is not valid UTF-8") from None
    return decoded


def _required(fields: Mapping[str, str], name: str, pattern: re.Pattern[str]) -> str:
    value = fields.get(name)
    if value is None:
        raise InvalidEventError(f"missing field {name!r}")
    if not pattern.fullmatch(value):
        raise InvalidEventError(f"field {name!r} is not valid: {value[:64]!r}")
    return value
