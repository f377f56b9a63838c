"""One delivery: its request headers, the record ops of each outcome, its payload at rest."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from webhookd import __version__
from webhookd.delivery import (
    AttemptRecord,
    Delivery,
    EntryRef,
    Op,
    dead_ops,
    malformed_ops,
    record_ops,
    request_headers,
)
from webhookd.events import Event, parse_entry, render_body
from webhookd.retry import AttemptResult, DeadLetter, Delivered, Gone, Outcome, RetryAt
from webhookd.verify import verify

CONTRACT_HEADERS = {
    "Content-Type",
    "X-Event-Type",
    "X-Event-ID",
    "X-Timestamp",
    "X-Signature",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "User-Agent",
}
KEY, OLD_KEY = b"n" * 32, b"o" * 40
NOW = 1_714_559_696
DEAD = "webhookd:dead"
EVENT = parse_entry(
    "1714559696000-0",
    {b"type": b"order.created", b"vendor": b"v_1", b"data": '{"name":"Café"}'.encode()},
    NOW + 0.25,
)

# Arity of each op in lua/record.lua (the op name included).
OP_ARITY = {"attempt": 5, "schedule": 4, "settle": 2, "dead": 3, "ack": 3}


def split_ops(ops: list[Op]) -> list[list[Op]]:
    """Read an op list the way record.lua does; fail on anything it would refuse."""
    assert all(isinstance(arg, str | int | float) for arg in ops)
    out, i = [], 0
    while i < len(ops):
        name = ops[i]
        assert name in OP_ARITY, f"record.lua has no op {name!r}"
        arity = OP_ARITY[str(name)]
        assert i + arity <= len(ops), f"op {name!r} is cut short"
        out.append(list(ops[i : i + arity]))
        i += arity
    return out


def dead_fields(op: list[Op]) -> dict[str, str]:
    pairs = json.loads(str(op[2]))
    assert all(len(pair) == 2 and all(isinstance(x, str) for x in pair) for pair in pairs)
    return dict(pairs)


def contract_signatures(keys: list[bytes], event: Event, timestamp: int) -> tuple[str, str]:
    x = ",".join(
        "sha256=" + hmac.new(key, f"{timestamp}.".encode() + event.body, hashlib.sha256).hexdigest()
        for key in keys
    )
    signed = f"{event.id}.{timestamp}.".encode() + event.body
    v1 = " ".join(
        "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
        for key in keys
    )
    return x, v1


# --- the request -----------------------------------------------------------------------


def test_request_headers_are_exactly_the_contract_headers() -> None:
    headers = request_headers(EVENT, [KEY], NOW)
    names = [name for name, _ in headers]

    assert len(names) == len(set(names))
    assert set(names) == CONTRACT_HEADERS

    values = dict(headers)
    x, v1 = contract_signatures([KEY], EVENT, NOW)
    assert values == {
        "Content-Type": "application/json",
        "User-Agent": f"webhookd/{__version__}",
        "X-Event-Type": "order.created",
        "X-Event-ID": "evt_1714559696000-0",
        "X-Timestamp": str(NOW),
        "X-Signature": x,
        "webhook-id": "evt_1714559696000-0",
        "webhook-timestamp": str(NOW),
        "webhook-signature": v1,
    }


def test_during_rotation_every_live_key_signs() -> None:
    values = dict(request_headers(EVENT, [KEY, OLD_KEY], NOW))
    x, v1 = contract_signatures([KEY, OLD_KEY], EVENT, NOW)
    assert (values["X-Signature"], values["webhook-signature"]) == (x, v1)
    assert len(values["webhook-signature"].split(" ")) == 2


@pytest.mark.parametrize("key", [KEY, OLD_KEY])
def test_a_receiver_verifies_the_request(key: bytes) -> None:
    headers = dict(request_headers(EVENT, [KEY, OLD_KEY], NOW))
    secret = "whsec_" + base64.b64encode(key).decode()
    payload = verify(EVENT.body, headers, secret, now=NOW)
    assert payload == {
        "event": "order.created",
        "event_id": "evt_1714559696000-0",
        "timestamp": "2024-05-01T10:34:56.250Z",
        "data": {"name": "Café"},
    }


def test_header_names_and_values_are_ascii() -> None:
    for name, value in request_headers(EVENT, [KEY], NOW):
        name.encode("ascii")
        value.encode("ascii")


# --- record ops ------------------------------------------------------------------------


def delivery(scheduled: bool = False, attempts_made: int = 0) -> Delivery:
    entry = None if scheduled else EntryRef("webhookd:events", "1714559696000-0")
    return Delivery(EVENT, "ep_1", attempts_made, entry=entry, scheduled=scheduled)


def attempt(number: int, status: int | None, error: str | None = None) -> AttemptRecord:
    result = AttemptResult(status=status, error=error)
    return AttemptRecord(number, NOW + 0.5, 0.0123, result, "nope" if status else "")


def check_attempt_op(op: list[Op], state: str, number: int, status: int | None) -> dict[str, Any]:
    assert op[:3] == ["attempt", EVENT.id, "ep_1"]
    recorded_state = json.loads(str(op[3]))
    assert recorded_state["endpoint_id"] == "ep_1"
    assert recorded_state["state"] == state
    assert recorded_state["attempts"] == number
    assert recorded_state["last_status"] == status
    record = json.loads(str(op[4]))
    assert record["endpoint_id"] == "ep_1"
    assert record["attempt"] == number
    assert record["status"] == status
    assert record["at"] == "2024-05-01T10:34:56.500Z"
    assert record["duration_ms"] == 12.3
    return recorded_state


@pytest.mark.parametrize("scheduled", [False, True])
def test_delivered_records_the_attempt_and_settles_a_scheduled_retry(scheduled: bool) -> None:
    ops = split_ops(record_ops(delivery(scheduled), Delivered(200), attempt(1, 200), DEAD))

    check_attempt_op(ops[0], "delivered", 1, 200)
    assert ops[1:] == ([["settle", "ep_1:" + EVENT.id]] if scheduled else [])


@pytest.mark.parametrize("scheduled", [False, True])
def test_retry_records_the_attempt_and_schedules_the_payload(scheduled: bool) -> None:
    outcome = RetryAt(due_s=NOW + 2.5, delay_s=2.0)
    the_delivery = delivery(scheduled, attempts_made=1 if scheduled else 0)
    number = the_delivery.attempts_made + 1

    ops = split_ops(record_ops(the_delivery, outcome, attempt(number, 503), DEAD))

    state = check_attempt_op(ops[0], "scheduled", number, 503)
    assert state["next_attempt_at"] == "2024-05-01T10:34:58.500Z"
    assert len(ops) == 2
    name, member, due_ms, payload = ops[1]
    assert (name, member) == ("schedule", "ep_1:" + EVENT.id)
    assert due_ms == str(int((NOW + 2.5) * 1000))  # whole milliseconds, as Redis takes them
    back = Delivery.from_payload(str(payload))
    assert (back.event, back.endpoint_id, back.attempts_made) == (EVENT, "ep_1", number)
    assert back.scheduled


@pytest.mark.parametrize("scheduled", [False, True])
def test_dead_letter_writes_the_contract_fields(scheduled: bool) -> None:
    outcome = DeadLetter("gave up after 6 attempts: HTTP 500")

    ops = split_ops(record_ops(delivery(scheduled, 5), outcome, attempt(6, 500), DEAD))

    check_attempt_op(ops[0], "dead", 6, 500)
    assert ops[1][:2] == ["dead", DEAD]
    fields = dead_fields(ops[1])
    assert fields == {
        "event_id": EVENT.id,
        "endpoint_id": "ep_1",
        "attempts": "6",
        "last_status": "500",
        "last_error": "HTTP 500",
        "reason": "gave up after 6 attempts: HTTP 500",
        "event_type": "order.created",
        "vendor": "v_1",
        "timestamp": EVENT.timestamp,
        "body": EVENT.body.decode(),
    }
    assert ops[2:] == ([["settle", "ep_1:" + EVENT.id]] if scheduled else [])


def test_dead_letter_after_a_connection_error_has_an_empty_status() -> None:
    ops = split_ops(
        record_ops(delivery(True, 5), DeadLetter("x"), attempt(6, None, "timed out"), DEAD)
    )
    state = check_attempt_op(ops[0], "dead", 6, None)
    assert state["last_error"] == "timed out"
    fields = dead_fields(ops[1])
    assert (fields["last_status"], fields["last_error"]) == ("", "timed out")


def test_gone_dead_letters_with_the_410_reason() -> None:
    ops = split_ops(record_ops(delivery(), Gone(), attempt(1, 410), DEAD))

    check_attempt_op(ops[0], "gone", 1, 410)
    assert len(ops) == 2
    fields = dead_fields(ops[1])
    assert fields["last_status"] == "410"
    assert "410" in fields["reason"]
    assert "disabled" in fields["reason"]


def test_dead_ops_alone() -> None:
    ops = split_ops(dead_ops(delivery(True, 2), attempt(3, 502), "endpoint removed", "d"))
    assert [op[0] for op in ops] == ["dead", "settle"]
    assert ops[0][1] == "d"
    assert dead_fields(ops[0])["reason"] == "endpoint removed"


def test_malformed_entry_is_dead_lettered_then_acked() -> None:
    entry = EntryRef("webhookd:events:3", "1-0")
    raw = {"type": "order created", "vendor": "v_1", "data": "{}"}

    ops = split_ops(malformed_ops(entry, raw, "field 'type' is not valid", DEAD))

    assert [op[0] for op in ops] == ["dead", "ack"]
    assert ops[1] == ["ack", "webhookd:events:3", "1-0"]
    assert dead_fields(ops[0]) == {
        "reason": "field 'type' is not valid",
        "source_stream": "webhookd:events:3",
        "source_id": "1-0",
        "entry": json.dumps(raw, ensure_ascii=False),
    }


@settings(max_examples=60, deadline=None)
@given(
    outcome=st.sampled_from(
        [Delivered(204), RetryAt(NOW + 4.0, 4.0), DeadLetter("gave up"), Gone()]
    ),
    scheduled=st.booleans(),
    number=st.integers(1, 10),
    status=st.none() | st.integers(100, 599),
    error=st.none() | st.text(max_size=30),
    excerpt=st.text(max_size=50),
)
def test_every_outcome_gives_ops_record_lua_can_read(
    outcome: Outcome,
    scheduled: bool,
    number: int,
    status: int | None,
    error: str | None,
    excerpt: str,
) -> None:
    record = AttemptRecord(number, NOW, 0.1, AttemptResult(status, error), excerpt)
    ops = split_ops(record_ops(delivery(scheduled), outcome, record, DEAD))
    assert ops[0][0] == "attempt"
    assert json.loads(str(ops[0][4]))["response"] == excerpt
    for op in ops:
        if op[0] == "dead":
            fields = dead_fields(op)
            assert {"event_id", "endpoint_id", "attempts", "last_status", "last_error"} <= set(
                fields
            )


# --- payload at rest -------------------------------------------------------------------

ALNUM = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_"
events = st.builds(
    lambda event_type, event_id, vendor, timestamp, data: Event(
        id=event_id,
        type=event_type,
        vendor=vendor,
        timestamp=timestamp,
        body=render_body(event_type, event_id, timestamp, data),
    ),
    st.text(ALNUM + ".-", min_size=1, max_size=30),
    st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=40),
    st.text(ALNUM + ".:-", min_size=1, max_size=30),
    st.just("2024-05-01T10:34:56.500Z"),
    st.dictionaries(st.text(max_size=8), st.text(max_size=20) | st.integers(), max_size=4),
)


@settings(max_examples=60, deadline=None)
@given(
    event=events, endpoint_id=st.text(ALNUM, min_size=1, max_size=20), attempts=st.integers(0, 50)
)
def test_payload_round_trip(event: Event, endpoint_id: str, attempts: int) -> None:
    original = Delivery(event, endpoint_id, 0, entry=EntryRef("s", "1-0"), scheduled=False)

    back = Delivery.from_payload(original.to_payload(attempts))

    assert back == Delivery(event, endpoint_id, attempts, entry=None, scheduled=True)
    assert back.member == f"{endpoint_id}:{event.id}"
    assert back.member.split(":", 1) == [endpoint_id, event.id]
