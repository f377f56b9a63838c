"""The delivery history's pure parts: cursors, filters, how an entry is shown, and which
records make an entry."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from webhookd.events import Event
from webhookd.history import (
    LARGEST,
    Filter,
    _inclusive,
    decode_cursor,
    encode_cursor,
    shown,
)
from webhookd.keyspace import history_fields, history_outcome
from webhookd.model import AttemptRecord, Delivery, EntryRef, RecordAttempt
from webhookd.retry import AttemptResult

EVENT = Event("evt-1", "order.created", "v_1", "2024-05-01T10:34:56.000Z", b"{}")
DELIVERY = Delivery(EVENT, "ep_1", EntryRef("s", "1-0"), attempts_made=1)


@given(st.integers(0, LARGEST), st.integers(0, LARGEST), st.integers(0, 99_999))
def test_a_cursor_reads_back_as_it_was_made(ms: int, seq: int, partition: int) -> None:
    assert decode_cursor(encode_cursor((ms, seq, partition))) == (ms, seq, partition)


@pytest.mark.parametrize("bad", ["", "nope", "1-2", "1_2", "a-1_0", "1-b_0", "1-1_x", "\u0661-1_0"])
def test_a_cursor_the_api_did_not_make_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="cursor"):
        decode_cursor(bad)


def test_a_cursor_past_every_id_means_the_newest() -> None:
    assert decode_cursor(f"{10**30}-{10**30}_1")[:2] == (LARGEST, LARGEST)
    assert _inclusive((LARGEST, LARGEST, 0)) == "+"
    assert _inclusive((5, LARGEST, 0)) == "6-0"
    assert _inclusive((5, 7, 0)) == "5-8"


def test_filters_take_what_they_name() -> None:
    fields = {"endpoint": "ep_1", "vendor": "v_1", "outcome": "failed"}
    assert Filter().admits(fields)
    assert Filter("ep_1", "v_1", "failed").admits(fields)
    assert not Filter(endpoint_id="ep_2").admits(fields)
    assert not Filter(vendor="v_2").admits(fields)
    assert not Filter(outcome="delivered").admits(fields)


def record(state: str, status: int | None, error: str | None = None) -> RecordAttempt:
    attempt = AttemptRecord(2, 1_714_559_696.5, 0.0123, AttemptResult(status, error), "x" * 500)
    return RecordAttempt(DELIVERY, state, attempt)


def test_an_attempt_is_history_and_shows_as_the_api_gives_it() -> None:
    write = record("scheduled", 500)
    outcome = history_outcome(write)
    assert outcome == "failed"
    flat = history_fields(write, outcome)
    fields = dict(zip(flat[::2], flat[1::2], strict=True))
    item = shown("1714559697000-0", fields)
    assert item == {
        "event_id": "evt-1", "event_type": "order.created", "vendor": "v_1",
        "endpoint_id": "ep_1", "state": "failed", "attempt": 2, "status": 500, "error": None,
        "duration_ms": 12.3, "at": "2024-05-01T10:34:56.500Z", "response": "x" * 200,
    }  # fmt: skip


def test_held_and_untried_dead_deliveries_are_history_but_waiting_is_not() -> None:
    held = RecordAttempt(DELIVERY, "held", None, reason="endpoint disabled: by operator")
    assert history_outcome(held) == "held"
    flat = history_fields(held, "held")
    fields = dict(zip(flat[::2], flat[1::2], strict=True))
    item = shown("1714559697000-0", fields)
    assert (item["state"], item["attempt"], item["error"], item["status"]) == (
        "held", 1, "endpoint disabled: by operator", None)  # fmt: skip
    assert item["at"] == "2024-05-01T10:34:57.000Z"  # no attempt: when it was recorded
    assert history_outcome(RecordAttempt(DELIVERY, "dead", None, reason="quota")) == "dead"
    assert history_outcome(RecordAttempt(DELIVERY, "deferred", None, reason="quota")) is None
    assert history_outcome(RecordAttempt(DELIVERY, "scheduled", None)) is None
