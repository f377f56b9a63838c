"""The event-type catalog (``config/events.toml``): which event types exist.

It decides two things: which subscriptions an endpoint may ask for (a type or pattern
that matches nothing in the catalog is a typo, refused at registration), and which
published events intake treats as unknown (``events.unknown``). Parsing is pure; only
``load_catalog`` reads a file.
"""

from __future__ import annotations

import difflib
import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from configtable import ConfigFileError, read_toml
from webhookd.config import Settings
from webhookd.endpoints import matches
from webhookd.errors import ConfigError, EndpointError
from webhookd.events import EVENT_TYPE, EventRules


@dataclass(frozen=True, slots=True)
class Catalog:
    """Event types and what each means, as the catalog file lists them."""

    types: Mapping[str, str]  # event type -> description
    source: str = "the event catalog"

    def knows(self, event_type: str) -> bool:
        return event_type in self.types

    def check(self, patterns: Iterable[str]) -> None:
        """EndpointError for the first pattern that matches no type in the catalog."""
        for pattern in patterns:
            if not any(matches(pattern, event_type) for event_type in self.types):
                raise EndpointError(
                    f"events: {pattern!r} matches no event type in {self.source}"
                    f"{self._suggestion(pattern)}"
                )

    def _suggestion(self, pattern: str) -> str:
        known = [*self.types, *sorted({t.rsplit(".", 1)[0] + ".*" for t in self.types})]
        close = difflib.get_close_matches(pattern, known, n=1)
        return f"; did you mean {close[0]!r}?" if close else ""


def parse_catalog(data: Mapping[str, Any], source: str) -> Catalog:
    """The catalog in parsed TOML: nested tables of ``name = "description"``."""
    types: dict[str, str] = {}
    pending: list[tuple[str, Mapping[str, Any]]] = [("", data)]
    while pending:
        prefix, table = pending.pop()
        for name, value in table.items():
            dotted = f"{prefix}{name}"
            if isinstance(value, Mapping):
                pending.append((f"{dotted}.", value))
            elif not isinstance(value, str):
                raise ConfigError(f"events.catalog: {dotted} in {source} must be a description")
            elif "." not in dotted or not EVENT_TYPE.fullmatch(dotted):
                raise ConfigError(
                    f"events.catalog: {dotted!r} in {source} is not a <group>.<name> event type"
                )
            else:
                types[dotted] = value
    if not types:
        raise ConfigError(f"events.catalog: {source} lists no event types")
    return Catalog(dict(sorted(types.items())), source)


def catalog_path(configured: Path) -> Path:
    """A relative path from the working directory, else from where webhookd is installed."""
    if configured.is_absolute() or configured.exists():
        return configured
    import webhookd

    shipped = Path(webhookd.__file__).resolve().parent.parent / configured
    return shipped if shipped.exists() else configured


@functools.cache
def load_catalog(configured: Path) -> Catalog:
    """The catalog file, read once per process; ConfigError naming the key if unusable."""
    path = catalog_path(configured)
    try:
        data = read_toml(path, "event catalog")
    except ConfigFileError as error:
        raise ConfigError(f"events.catalog: {error}") from None
    return parse_catalog(data, str(configured))


def event_rules(settings: Settings) -> EventRules:
    """What intake accepts: the payload cap, and only catalogued types if so configured."""
    known = None
    if settings.events.unknown == "dead_letter":
        known = frozenset(load_catalog(settings.events.catalog).types)
    return EventRules(max_body_bytes=settings.delivery.max_payload_bytes, known_types=known)


# What an event of each group carries, for the portal's examples and the vendor docs;
# a type's own fields are added by its name below.
_GROUP_EXAMPLES: dict[str, dict[str, Any]] = {
    "order": {"order_id": "ord_1001", "currency": "EUR", "total": "59.90",
              "lines": [{"sku": "TSHIRT-M", "quantity": 2, "price": "29.95"}]},
    "product": {"product_id": "prod_204", "sku": "TSHIRT-M", "title": "T-shirt, medium",
                "price": "29.95", "currency": "EUR"},
    "inventory": {"sku": "TSHIRT-M", "warehouse": "wh_main", "available": 3, "threshold": 5},
    "payment": {"payment_id": "pay_7731", "order_id": "ord_1001", "amount": "59.90",
                "currency": "EUR"},
    "payout": {"payout_id": "po_88", "amount": "1240.00", "currency": "EUR",
               "arrival_date": "2026-12-04"},
    "customer": {"customer_id": "cus_512", "email": "buyer@example.com", "name": "Ada Buyer"},
    "shipment": {"shipment_id": "shp_31", "order_id": "ord_1001", "carrier": "DHL",
                 "tracking_number": "JD014600003828"},
}  # fmt: skip
_NAME_EXAMPLES: dict[str, dict[str, Any]] = {
    "cancelled": {"reason": "buyer_request"},
    "failed": {"reason": "card_declined"},
    "dispute_closed": {"outcome": "won"},
    "price_changed": {"previous_price": "34.95"},
    "review_posted": {"rating": 5, "comment": "Fits well."},
    "partially_refunded": {"refunded": "10.00"},
}


def example_data(event_type: str) -> dict[str, Any]:
    """Data a typical event of this type carries (made up, but of the real shape)."""
    group, _, name = event_type.rpartition(".")
    base = _GROUP_EXAMPLES.get(group, {f"{group.replace('.', '_')}_id": f"{group}_1"})
    return {**base, **_NAME_EXAMPLES.get(name, {})}


def example_body(event_type: str) -> dict[str, Any]:
    """The delivery body a receiver gets for an event of this type (the contract's shape)."""
    return {
        "event": event_type,
        "event_id": "evt_1764590400000-0",
        "timestamp": "2026-12-01T12:00:00Z",
        "data": example_data(event_type),
    }
