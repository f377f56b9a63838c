"""The event-type catalog, and what intake does with unknown types and oversized payloads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from webhookd.catalog import (
    Catalog,
    catalog_path,
    event_rules,
    example_body,
    example_data,
    load_catalog,
    parse_catalog,
)
from webhookd.config import settings_from_mapping
from webhookd.errors import ConfigError, EndpointError, InvalidEventError
from webhookd.events import EventRules, parse_entry

SHIPPED = Path(__file__).resolve().parents[2] / "config" / "events.toml"
CATALOG = load_catalog(SHIPPED)
GROUPS = ("order", "product", "inventory", "payment", "payout", "customer", "shipment")


def entry(event_type: str, data: object) -> dict[bytes, bytes]:
    return {b"type": event_type.encode(), b"vendor": b"v_1", b"data": json.dumps(data).encode()}


def test_the_shipped_catalog_covers_the_marketplace() -> None:
    assert len(CATALOG.types) >= 50
    assert {t.split(".")[0] for t in CATALOG.types} == set(GROUPS)
    for group in GROUPS:
        assert sum(t.startswith(f"{group}.") for t in CATALOG.types) >= 5, group
    for event_type in (
        "order.created",
        "order.shipped",
        "inventory.low_stock",
        "payment.captured",
        "payout.paid",
        "customer.created",
        "shipment.delivered",
        "product.updated",
    ):
        assert CATALOG.knows(event_type)
    assert all(description.endswith(".") for description in CATALOG.types.values())


def test_the_default_path_finds_the_shipped_catalog_from_anywhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert catalog_path(Path("config/events.toml")) == SHIPPED
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "events.toml").write_text('[a]\nb = "x"\n')
    assert catalog_path(Path("config/events.toml")) == Path("config/events.toml")


@pytest.mark.parametrize(
    "patterns",
    [["*"], ["order.*"], ["order.created", "payment.*"], ["inventory.low_stock"]],
)
def test_types_and_patterns_that_match_are_accepted(patterns: list[str]) -> None:
    CATALOG.check(patterns)


@pytest.mark.parametrize(
    ("patterns", "named", "suggestion"),
    [
        (["order.create"], "'order.create'", "did you mean 'order.created'?"),
        (["order.created", "orders.*"], "'orders.*'", "did you mean 'order.*'?"),
        (["refund.issued"], "'refund.issued'", ""),
        (["order.created.v2"], "'order.created.v2'", ""),
        (["order"], "'order'", ""),
    ],
)
def test_types_and_patterns_that_match_nothing_are_refused(
    patterns: list[str], named: str, suggestion: str
) -> None:
    with pytest.raises(EndpointError) as caught:
        CATALOG.check(patterns)
    message = str(caught.value)
    assert message.startswith(f"events: {named} matches no event type in ")
    assert suggestion in message


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        ({}, "lists no event types"),
        ({"order": {"created": 1}}, "must be a description"),
        ({"created": "no group"}, "is not a <group>.<name> event type"),
        ({"order": {"bad name": "x"}}, "is not a <group>.<name> event type"),
    ],
)
def test_a_malformed_catalog_is_a_config_error(data: dict[str, object], problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        parse_catalog(data, "events.toml")


def test_nested_tables_make_deeper_types() -> None:
    catalog = parse_catalog({"payment": {"dispute": {"opened": "x"}, "captured": "y"}}, "t")
    assert set(catalog.types) == {"payment.dispute.opened", "payment.captured"}


def test_an_unreadable_catalog_is_a_config_error_naming_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"events\.catalog: cannot read"):
        load_catalog(tmp_path / "missing.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("[order\n")
    with pytest.raises(ConfigError, match=r"events\.catalog: .* is not valid TOML"):
        load_catalog(broken)


# --- intake ---------------------------------------------------------------------------


def test_unknown_types_are_delivered_by_default() -> None:
    rules = event_rules(settings_from_mapping({}))
    assert rules == EventRules(max_body_bytes=262144, known_types=None)
    assert parse_entry("1-0", entry("partner.synced", {}), 0.0, rules).type == "partner.synced"


def test_unknown_types_are_dead_lettered_when_configured() -> None:
    rules = event_rules(settings_from_mapping({"events": {"unknown": "dead_letter"}}))
    assert parse_entry("1-0", entry("order.created", {}), 0.0, rules).type == "order.created"
    with pytest.raises(InvalidEventError) as caught:
        parse_entry("1-0", entry("partner.synced", {}), 0.0, rules)
    assert str(caught.value) == (
        "unknown event type 'partner.synced': not in the event catalog "
        "(events.unknown is dead_letter)"
    )


def test_a_payload_over_the_cap_is_refused_with_a_clear_reason() -> None:
    rules = EventRules(max_body_bytes=200)
    small = parse_entry("1-0", entry("order.created", {"n": "x" * 50}), 0.0, rules)
    assert len(small.body) <= 200
    with pytest.raises(InvalidEventError) as caught:
        parse_entry("1-0", entry("order.created", {"n": "x" * 500}), 0.0, rules)
    assert str(caught.value).startswith("payload is ")
    assert str(caught.value).endswith(
        " bytes, over the 200-byte limit (delivery.max_payload_bytes)"
    )


def test_the_cap_counts_the_body_as_delivered() -> None:
    event = parse_entry("1-0", entry("order.created", {"n": "é" * 10}), 0.0)
    assert (
        parse_entry(
            "1-0",
            entry("order.created", {"n": "é" * 10}),
            0.0,
            EventRules(max_body_bytes=len(event.body)),
        )
        == event
    )
    with pytest.raises(InvalidEventError, match="over the"):
        parse_entry(
            "1-0",
            entry("order.created", {"n": "é" * 10}),
            0.0,
            EventRules(max_body_bytes=len(event.body) - 1),
        )


def test_a_refusal_names_the_catalog_it_checked() -> None:
    catalog = Catalog({"a.b": "x"}, "here")
    with pytest.raises(EndpointError, match="matches no event type in here"):
        catalog.check(["c.*"])


def test_every_shipped_type_has_an_example_delivery_body_of_its_group() -> None:
    for event_type in CATALOG.types:
        body = example_body(event_type)
        assert set(body) == {"event", "event_id", "timestamp", "data"}
        assert body["event"] == event_type and body["data"], event_type
        json.dumps(body)  # a JSON document, as a receiver gets it
    assert "order_id" in example_data("order.created")
    assert "tracking_number" in example_data("shipment.label_created")
    assert example_data("order.cancelled")["reason"]
    assert example_data("loyalty.points_added") == {"loyalty_id": "loyalty_1"}
