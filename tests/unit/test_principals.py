"""What each principal may see: the operator everything, a vendor its own and nothing
else, another vendor's things looking exactly like missing ones."""

from __future__ import annotations

import pytest

from webhookd.principals import (
    OPERATOR,
    Principal,
    Refusal,
    Scope,
    admit,
    listing_vendor,
    owner_of_new,
)

VENDOR = Principal("v_1")
NAMED = [Scope.ENDPOINT, Scope.EVENT, Scope.DEAD, Scope.VENDOR]


@pytest.mark.parametrize("scope", list(Scope))
@pytest.mark.parametrize("owner", ["v_1", "v_2", None])
def test_the_operator_is_admitted_everywhere(scope: Scope, owner: str | None) -> None:
    admit(OPERATOR, scope, owner)


@pytest.mark.parametrize("scope", NAMED)
def test_a_vendor_is_admitted_to_its_own(scope: Scope) -> None:
    admit(VENDOR, scope, "v_1")


@pytest.mark.parametrize("scope", NAMED)
@pytest.mark.parametrize("owner", ["v_2", "v_10", "", None])
def test_anything_else_is_not_found_for_a_vendor(scope: Scope, owner: str | None) -> None:
    with pytest.raises(Refusal) as refused:
        admit(VENDOR, scope, owner, "endpoint ep_1")
    assert (refused.value.status, refused.value.message) == (404, "no endpoint ep_1")


def test_operator_routes_are_forbidden_to_a_vendor() -> None:
    with pytest.raises(Refusal) as refused:
        admit(VENDOR, Scope.OPERATOR, "v_1")
    assert refused.value.status == 403


def test_listings_are_narrowed_to_the_vendor() -> None:
    assert listing_vendor(OPERATOR, None) is None
    assert listing_vendor(OPERATOR, "v_2") == "v_2"
    assert listing_vendor(VENDOR, None) == "v_1"
    assert listing_vendor(VENDOR, "v_1") == "v_1"
    with pytest.raises(Refusal) as refused:
        listing_vendor(VENDOR, "v_2")
    assert refused.value.status == 403


def test_a_vendor_makes_things_only_for_itself() -> None:
    assert owner_of_new(VENDOR, None) == "v_1"
    assert owner_of_new(VENDOR, "v_1") == "v_1"
    assert owner_of_new(OPERATOR, "v_2") == "v_2"
    with pytest.raises(Refusal) as refused:
        owner_of_new(VENDOR, "v_2")
    assert refused.value.status == 403
