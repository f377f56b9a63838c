"""``@value_type``: plain slotted dataclasses at run time, compared and hashed by fields."""

from __future__ import annotations

import dataclasses

from webhookd.model import EntryRef
from webhookd.values import value_type


@value_type
class Pair:
    left: str
    right: tuple[int, ...] = ()


def test_values_compare_and_hash_by_their_fields() -> None:
    assert Pair("a", (1,)) == Pair("a", (1,)) and Pair("a") != Pair("b")
    assert len({Pair("a", (1,)), Pair("a", (1,)), Pair("a")}) == 2
    assert {EntryRef("s", "1-0"): 1}[EntryRef("s", "1-0")] == 1


def test_values_are_slotted_dataclasses_that_replace_builds_anew() -> None:
    pair = Pair("a")
    assert dataclasses.is_dataclass(pair) and not hasattr(pair, "__dict__")
    other = dataclasses.replace(pair, right=(2,))
    assert (pair.right, other.right) == ((), (2,))
