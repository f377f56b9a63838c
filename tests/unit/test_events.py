"""Stream entries in, events out: the producer contract as parse_entry enforces it."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from webhookd.errors import InvalidEventError
from webhookd.events import (
    Event,
    format_timestamp,
    parse_entry,
    parse_timestamp,
    render_body,
)

ENTRY_ID = "1714559696000-0"
READ_AT_S = 1714559696.5  # 2024-05-01T10:34:56.500Z
VALID = {b"type": b"order.created", b"vendor": b"v_1", b"data": b'{"order_id":42}'}


def entry(**changes: bytes | None) -> dict[bytes, bytes]:
    """The valid entry with fields replaced (a value) or removed (None)."""
    fields = dict(VALID)
    for name, value in changes.items():
        if value is None:
            fields.pop(name.encode(), None)
        else:
            fields[name.encode()] = value
    return fields


def names_field(message: str, field: str) -> bool:
    return re.search(rf"\b{re.escape(field)}\b", message) is not None


# --- valid entries -------------------------------------------------------------------


def test_minimal_entry_becomes_an_event_with_the_contract_body() -> None:
    event = parse_entry(ENTRY_ID, VALID, READ_AT_S)

    assert event == Event(
        id=f"evt_{ENTRY_ID}",
        type="order.created",
        vendor="v_1",
        timestamp="2024-05-01T10:34:56.500Z",
        body=event.body,
    )
    payload = json.loads(event.body)
    assert list(payload) == ["event", "event_id", "timestamp", "data"]
    assert payload == {
        "event": "order.created",
        "event_id": f"evt_{ENTRY_ID}",
        "timestamp": "2024-05-01T10:34:56.500Z",
        "data": {"order_id": 42},
    }


def test_default_id_is_evt_and_the_stream_entry_id() -> None:
    assert parse_entry("5-3", VALID, READ_AT_S).id == "evt_5-3"


@pytest.mark.parametrize("event_id", ["ord_123", "a", "x" * 256, "evt:with/punctuation!~"])
def test_explicit_id_is_kept(event_id: str) -> None:
    event = parse_entry(ENTRY_ID, entry(id=event_id.encode()), READ_AT_S)
    assert event.id == event_id
    assert json.loads(event.body)["event_id"] == event_id


@pytest.mark.parametrize(
    ("ts", "rendered"),
    [
        ("2024-05-01T12:34:56.789+02:00", "2024-05-01T10:34:56.789Z"),
        ("2024-05-01T10:34:56Z", "2024-05-01T10:34:56.000Z"),
        ("2024-05-01T10:34:56+00:00", "2024-05-01T10:34:56.000Z"),
        ("2024-05-01T10:34:56.123456-05:30", "2024-05-01T16:04:56.123Z"),
        ("2023-12-31T23:30:00-01:00", "2024-01-01T00:30:00.000Z"),
    ],
)
def test_ts_is_honoured_and_rendered_in_utc(ts: str, rendered: str) -> None:
    event = parse_entry(ENTRY_ID, entry(ts=ts.encode()), READ_AT_S)
    assert event.timestamp == rendered
    assert json.loads(event.body)["timestamp"] == rendered


def test_without_ts_the_read_time_is_the_timestamp() -> None:
    assert parse_entry(ENTRY_ID, VALID, 0.0).timestamp == "1970-01-01T00:00:00.000Z"


def test_unicode_data_travels_as_utf8() -> None:
    data = '{"name":"Café ☕","emoji":"\\ud83d\\ude00"}'.encode()
    event = parse_entry(ENTRY_ID, entry(data=data), READ_AT_S)
    assert "Café ☕".encode() in event.body
    assert json.loads(event.body)["data"] == {"name": "Café ☕", "emoji": "😀"}


def test_extra_fields_are_ignored() -> None:
    event = parse_entry(ENTRY_ID, {**VALID, b"trace": b"abc"}, READ_AT_S)
    assert event.type == "order.created"


# --- malformed entries -----------------------------------------------------------------

MALFORMED = [
    pytest.param(entry(type=None), "type", id="missing type"),
    pytest.param(entry(vendor=None), "vendor", id="missing vendor"),
    pytest.param(entry(data=None), "data", id="missing data"),
    pytest.param(entry(type=b""), "type", id="empty type"),
    pytest.param(entry(type=b"order created"), "type", id="type with a space"),
    pytest.param(entry(type=b"order.created\n"), "type", id="type with a newline"),
    pytest.param(entry(vendor=b"v 1"), "vendor", id="vendor with a space"),
    pytest.param(entry(data=b"{"), "data", id="data not JSON"),
    pytest.param(entry(data=b""), "data", id="data empty"),
    pytest.param(entry(data=b"[1,2]"), "data", id="data an array"),
    pytest.param(entry(data=b'"text"'), "data", id="data a string"),
    pytest.param(entry(data=b"3"), "data", id="data a number"),
    pytest.param(entry(data=b"null"), "data", id="data null"),
    pytest.param(entry(id=b"evt 1"), "id", id="id with a space"),
    pytest.param(entry(id=b"evt\x01"), "id", id="id with a control character"),
    pytest.param(entry(id=b"evt\n1"), "id", id="id with a newline"),
    pytest.param(entry(id=b"evt\x7f"), "id", id="id with DEL"),
    pytest.param(entry(id=b""), "id", id="id empty"),
    pytest.param(entry(id=b"x" * 257), "id", id="id too long"),
    pytest.param(entry(id="évt".encode()), "id", id="id not ASCII"),
    pytest.param(entry(ts=b"2024-05-01T10:34:56"), "ts", id="ts without offset"),
    pytest.param(entry(ts=b"yesterday"), "ts", id="ts garbage"),
    pytest.param(entry(ts=b""), "ts", id="ts empty"),
    pytest.param(entry(ts=b"2024-13-01T00:00:00Z"), "ts", id="ts impossible month"),
    pytest.param(entry(data=b'{"a":"\xff"}'), "data", id="data not UTF-8"),
    # Not JSON by RFC 8259; the body would carry them on to receivers whose parsers refuse it.
    pytest.param(entry(data=b'{"a":NaN}'), "data", id="data with NaN"),
    pytest.param(entry(data=b'{"a":-Infinity}'), "data", id="data with Infinity"),
]


@pytest.mark.parametrize(("fields", "field"), MALFORMED)
def test_malformed_entry_is_refused_with_a_reason_naming_the_field(
    fields: dict[bytes, bytes], field: str
) -> None:
    with pytest.raises(InvalidEventError) as caught:
        parse_entry(ENTRY_ID, fields, READ_AT_S)
    assert names_field(str(caught.value), field), str(caught.value)


def test_field_name_not_utf8_is_refused() -> None:
    with pytest.raises(InvalidEventError, match="UTF-8"):
        parse_entry(ENTRY_ID, {**VALID, b"\xfe\xff": b"x"}, READ_AT_S)


def test_data_that_is_not_an_object_says_what_it_got() -> None:
    with pytest.raises(InvalidEventError, match="list"):
        parse_entry(ENTRY_ID, entry(data=b"[]"), READ_AT_S)


# Producers control these; each must become a dead letter, never another exception.
HOSTILE = [
    pytest.param(entry(data=b'{"a":"\\ud800"}'), "data", id="data with a lone surrogate escape"),
    pytest.param(entry(data=b"[" * 100_000), "data", id="data nested past the recursion limit"),
    pytest.param(
        entry(data=b'{"a":' + b"[" * 5_000 + b"]" * 5_000 + b"}"),
        "data",
        id="valid data nested 5000 deep",
    ),
    pytest.param(entry(ts=b"0001-01-01T00:00:00+01:00"), "ts", id="ts before year 1 in UTC"),
    pytest.param(entry(ts=b"9999-12-31T23:59:59-01:00"), "ts", id="ts after year 9999 in UTC"),
]


@pytest.mark.parametrize(("fields", "field"), HOSTILE)
def test_hostile_entry_is_refused_as_invalid(fields: dict[bytes, bytes], field: str) -> None:
    with pytest.raises(InvalidEventError) as caught:
        parse_entry(ENTRY_ID, fields, READ_AT_S)
    assert names_field(str(caught.value), field), str(caught.value)


# --- properties ------------------------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=5,
)
offsets = st.integers(-23 * 60 - 59, 23 * 60 + 59).map(lambda m: timezone(timedelta(minutes=m)))
timestamps_text = st.builds(
    lambda moment, tz: moment.replace(tzinfo=tz).isoformat(),
    st.datetimes(),
    st.none() | offsets,
)
ALNUM = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_"


def names(first: str, rest: str) -> st.SearchStrategy[str]:
    return st.builds(str.__add__, st.sampled_from(first), st.text(rest, max_size=30))


event_types = names(ALNUM, ALNUM + ".-")
vendors = names(ALNUM, ALNUM + ".:-")
event_ids = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=40)
field_values = st.one_of(
    st.binary(max_size=40),
    st.text(max_size=40).map(str.encode),
    json_values.map(lambda value: json.dumps(value).encode()),
    timestamps_text.map(str.encode),
    event_types.map(str.encode),
    vendors.map(str.encode),
    event_ids.map(str.encode),
)
field_names = st.sampled_from([b"type", b"vendor", b"data", b"id", b"ts"]) | st.binary(max_size=6)


@settings(max_examples=100, deadline=None)
@given(
    fields=st.dictionaries(field_names, field_values, max_size=7),
    start_valid=st.booleans(),
    dropped=st.sets(st.sampled_from([b"type", b"vendor", b"data"])),
    read_at_s=st.floats(0, 4e9),
)
def test_parse_entry_raises_only_invalid_event_error(
    fields: dict[bytes, bytes], start_valid: bool, dropped: set[bytes], read_at_s: float
) -> None:
    merged = {**VALID, **fields} if start_valid else dict(fields)
    for name in dropped:
        merged.pop(name, None)
    try:
        event = parse_entry(ENTRY_ID, merged, read_at_s)
    except InvalidEventError as exc:
        assert str(exc)
    else:
        assert isinstance(json.loads(event.body)["data"], dict)
        assert event.timestamp.endswith("Z")


@settings(max_examples=100, deadline=None)
@given(
    moment=st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(2100, 1, 1)),
    tz=offsets,
)
def test_ts_with_any_offset_renders_as_the_same_instant_in_utc(
    moment: datetime, tz: timezone
) -> None:
    moment = moment.replace(microsecond=moment.microsecond // 1000 * 1000)
    local = moment.replace(tzinfo=UTC).astimezone(tz)
    rendered = parse_entry(ENTRY_ID, entry(ts=local.isoformat().encode()), READ_AT_S).timestamp
    assert rendered == moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


@settings(max_examples=100, deadline=None)
@given(epoch_s=st.floats(-1e9, 4e9))
def test_format_timestamp_is_rfc3339_utc_with_milliseconds(epoch_s: float) -> None:
    text = format_timestamp(epoch_s)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", text)
    assert abs(parse_timestamp(text) - epoch_s) < 0.001 + 1e-6


def test_parse_timestamp_reads_offsets() -> None:
    assert parse_timestamp("1970-01-01T01:00:00+01:00") == 0.0
    assert parse_timestamp("1970-01-01T00:00:01.5Z") == 1.5


def test_render_body_is_compact_utf8_json_in_contract_order() -> None:
    body = render_body("a.b", "evt_1", "2024-01-01T00:00:00.000Z", {"k": "é", "n": [1, 2]})
    assert (
        body
        == (
            '{"event":"a.b","event_id":"evt_1","timestamp":"2024-01-01T00:00:00.000Z",'
            '"data":{"k":"é","n":[1,2]}}'
        ).encode()
    )


@pytest.mark.parametrize(
    "number", ["123456789012345678901234567890", "-9223372036854775809", "18446744073709551616"]
)
def test_integers_beyond_64_bits_keep_every_digit(number: str) -> None:
    event = parse_entry("1-0", entry(data=f'{{"id": {number}}}'.encode()), 1_700_000_000.0)
    assert f'"data":{{"id":{number}}}' in event.body.decode()


def test_a_number_too_large_for_a_float_is_refused() -> None:
    with pytest.raises(InvalidEventError, match="data is not valid JSON"):
        parse_entry("1-0", entry(data=b'{"x": 1e400}'), 1_700_000_000.0)
