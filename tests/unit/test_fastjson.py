"""fastjson: orjson's speed, the standard library's answers where the two differ."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

import fastjson

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner),
    max_leaves=20,
)  # fmt: skip


@given(JSON_VALUES)
def test_what_it_writes_reads_back_as_the_standard_library_reads_it(value: object) -> None:
    text = fastjson.dumps(value)
    assert fastjson.loads(text) == json.loads(text) == value


def test_integers_beyond_64_bits_keep_every_digit_both_ways() -> None:
    big = 2**70 + 1
    assert fastjson.loads(b'{"n": %d}' % big) == {"n": big}  # orjson would give a float
    assert fastjson.loads(fastjson.dumps({"n": -big})) == {"n": -big}


@pytest.mark.parametrize("text", [b'{"n": NaN}', b"[Infinity]", b"[-Infinity]", b"[1e400]"])
def test_numbers_no_json_document_can_carry_are_refused(text: bytes) -> None:
    with pytest.raises(ValueError, match="JSON number"):
        fastjson.loads(text)


def test_what_neither_parses_is_refused_with_the_standard_librarys_reason() -> None:
    with pytest.raises(ValueError, match="line 1 column 9"):
        fastjson.loads(b'{"key": }')


def test_a_lone_surrogate_reads_as_the_standard_library_reads_it() -> None:
    assert fastjson.loads(b'["\\ud800"]') == ["\ud800"]  # orjson refuses it
