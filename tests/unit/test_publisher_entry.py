"""The producer helper's pure half: the entry it writes and the partition it picks."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from webhookd.errors import InvalidEventError
from webhookd.events import EVENT_ID, EVENT_TYPE, VENDOR_ID, parse_entry
from webhookd.publisher import entry_fields, partition_of

ALNUM = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_"


def names(first: str, rest: str) -> st.SearchStrategy[str]:
    return st.builds(str.__add__, st.sampled_from(first), st.text(rest, max_size=30))


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=5,
)


@settings(max_examples=60, deadline=None)
@given(
    event_type=names(ALNUM, ALNUM + ".-"),
    vendor=names(ALNUM, ALNUM + ".:-"),
    data=st.dictionaries(st.text(max_size=8), json_values, max_size=5),
    event_id=st.none()
    | st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=40),
)
def test_what_the_publisher_writes_the_daemon_reads_back(
    event_type: str, vendor: str, data: dict[str, Any], event_id: str | None
) -> None:
    fields = entry_fields(event_type, vendor, data, event_id)
    assert all(isinstance(value, str) for value in fields.values())
    assert EVENT_TYPE.fullmatch(event_type) and VENDOR_ID.fullmatch(vendor)
    assert event_id is None or EVENT_ID.fullmatch(event_id)

    event = parse_entry("7-0", {k.encode(): v.encode() for k, v in fields.items()}, 0.0)

    assert (event.type, event.vendor) == (event_type, vendor)
    assert event.id == (event_id if event_id is not None else "evt_7-0")
    assert json.loads(event.body)["data"] == data


def test_entry_has_the_contract_field_names() -> None:
    assert entry_fields("order.created", "v_1", {"a": 1}, None) == {
        "type": "order.created",
        "vendor": "v_1",
        "data": '{"a":1}',
    }
    assert entry_fields("order.created", "v_1", {}, "ord_1")["id"] == "ord_1"


@pytest.mark.parametrize(
    ("event_type", "vendor", "data", "event_id", "field"),
    [
        ("", "v_1", {}, None, "type"),
        ("order created", "v_1", {}, None, "type"),
        ("order.created", "v 1", {}, None, "vendor"),
        ("order.created", "", {}, None, "vendor"),
        ("order.created", "v_1", [1, 2], None, "data"),
        ("order.created", "v_1", {}, "evt 1", "id"),
        ("order.created", "v_1", {}, "", "id"),
    ],
)
def test_entry_fields_refuses_what_the_daemon_would_dead_letter(
    event_type: str, vendor: str, data: Any, event_id: str | None, field: str
) -> None:
    with pytest.raises(InvalidEventError, match=field):
        entry_fields(event_type, vendor, data, event_id)


@settings(max_examples=100, deadline=None)
@given(vendor=st.text(max_size=30), partitions=st.integers(1, 64))
def test_partition_is_in_range_and_stable(vendor: str, partitions: int) -> None:
    partition = partition_of(vendor, partitions)
    assert 0 <= partition < partitions
    assert partition_of(vendor, partitions) == partition


def test_one_partition_takes_everything() -> None:
    assert {partition_of(f"v_{n}", 1) for n in range(100)} == {0}


def test_vendors_spread_over_every_partition() -> None:
    counts = Counter(partition_of(f"v_{n}", 8) for n in range(800))
    assert set(counts) == set(range(8))
    assert min(counts.values()) > 50
