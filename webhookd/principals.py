"""Who is calling the admin API, and what each route lets them see: pure decisions.

Two principals: the operator (the admin token) sees everything; a vendor (a portal
token) sees only its own vendor's data. Each route declares its ``Scope``; the admin
edge finds the owner of what the path names (an endpoint, an event, a dead letter, a
vendor) and asks ``admit``. Something another vendor owns answers 404, exactly as if it
did not exist, so a vendor cannot even learn which ids are taken; what only an operator
may do answers 403. Listings are narrowed with ``listing_vendor``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller: ``vendor`` None for the operator."""

    vendor: str | None = None

    @property
    def is_operator(self) -> bool:
        return self.vendor is None


OPERATOR = Principal()


class Scope(enum.Enum):
    """What a route's path names, hence whose it is."""

    OPERATOR = "operator"  # operator only: status, stats, purge, all vendors
    OWN = "own"  # anyone; the route narrows what it shows with ``listing_vendor``
    ENDPOINT = "endpoint"  # {id} is an endpoint
    EVENT = "event"  # {id} is an event
    DEAD = "dead"  # {id} is a dead letter
    VENDOR = "vendor"  # {vendor} is a vendor


class Refusal(Exception):
    """Why a principal may not have something: the status and message to answer with."""

    def __init__(self, status: int, error: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.error = error
        self.message = message


def forbidden() -> Refusal:
    return Refusal(403, "forbidden", "this needs the admin token; a portal token cannot do it")


def not_found(what: str) -> Refusal:
    return Refusal(404, "not_found", f"no {what}")


def admit(principal: Principal, scope: Scope, owner: str | None, what: str = "such thing") -> None:
    """Raise ``Refusal`` unless ``principal`` may use a route of ``scope`` on something
    ``owner`` (a vendor id; None when nobody's or unknown) owns."""
    if principal.is_operator or scope is Scope.OWN:
        return
    if scope is Scope.OPERATOR:
        raise forbidden()
    if owner != principal.vendor:
        raise not_found(what)


def listing_vendor(principal: Principal, requested: str | None) -> str | None:
    """The vendor a listing is narrowed to: what the operator asked for (None: all), or
    the vendor's own; a vendor asking for another vendor's is refused."""
    if principal.is_operator:
        return requested
    if requested not in (None, principal.vendor):
        raise Refusal(403, "forbidden", "a portal token sees only its own vendor's data")
    return principal.vendor


def owner_of_new(principal: Principal, requested: str | None) -> str | None:
    """The vendor a new endpoint or key belongs to: a vendor's own when it names none."""
    if principal.is_operator:
        return requested
    if requested not in (None, principal.vendor):
        raise Refusal(403, "forbidden", f"a portal token of {principal.vendor} makes only its own")
    return principal.vendor
