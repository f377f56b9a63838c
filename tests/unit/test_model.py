"""The delivery core's values: request headers, the writes of each outcome, payloads at rest."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from webhookd import __version__
from webhookd.endpoints import Endpoint, RetiredSecret
from webhookd.events import Event, parse_entry, render_body
from webhookd.keyspace import PartitionKeys, encode_record, state_json
from webhookd.model import (
    AckEntry,
    AddDeadLetter,
    AttemptRecord,
    ClearRetry,
    Delivery,
    EntryRef,
    MarkDeferred,
    RecordAttempt,
    ScheduleRetry,
    Write,
    dead_letter,
    deferral_writes,
    from_dead_letter,
    malformed_writes,
    outcome_writes,
    refusal_writes,
)
from webhookd.retry import AttemptResult, DeadLetter, Delivered, Gone, Outcome, RetryAt
from webhookd.sender import STATIC_HEADERS, request_headers
from webhookd.signing import new_secret
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
STREAM = "webhookd:events"
EVENT = parse_entry(
    "1714559696000-0",
    {b"type": b"order.created", b"vendor": b"v_1", b"data": '{"name":"Café"}'.encode()},
    NOW + 0.25,
)


def endpoint_with(*keys: bytes) -> Endpoint:
    """An endpoint whose current secret is the first key and the rest are retired."""
    retired = tuple(RetiredSecret(new_secret(k), NOW + 3600.0) for k in keys[1:])
    return Endpoint("ep_1", "v_1", "https://example.com/", new_secret(keys[0]), retired=retired)


def all_headers(keys: list[bytes]) -> list[tuple[str, str]]:
    return [*STATIC_HEADERS, *request_headers(EVENT, endpoint_with(*keys), NOW)]


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
    headers = all_headers([KEY])
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
    values = dict(all_headers([KEY, OLD_KEY]))
    x, v1 = contract_signatures([KEY, OLD_KEY], EVENT, NOW)
    assert (values["X-Signature"], values["webhook-signature"]) == (x, v1)
    assert len(values["webhook-signature"].split(" ")) == 2


@pytest.mark.parametrize("key", [KEY, OLD_KEY])
def test_a_receiver_verifies_the_request(key: bytes) -> None:
    headers = dict(all_headers([KEY, OLD_KEY]))
    secret = "whsec_" + base64.b64encode(key).decode()
    payload = verify(EVENT.body, headers, secret, now=NOW)
    assert payload == {
        "event": "order.created",
        "event_id": "evt_1714559696000-0",
        "timestamp": "2024-05-01T10:34:56.250Z",
        "data": {"name": "Café"},
    }


def test_header_names_and_values_are_ascii() -> None:
    for name, value in all_headers([KEY]):
        name.encode("ascii")
        value.encode("ascii")


# --- writes ----------------------------------------------------------------------------

ORIGIN = EntryRef(STREAM, "1714559696000-0")


def delivery(scheduled: bool = False, attempts_made: int = 0) -> Delivery:
    acks = None if scheduled else ORIGIN
    return Delivery(EVENT, "ep_1", ORIGIN, attempts_made, acks=acks, scheduled=scheduled)


def attempt(number: int, status: int | None, error: str | None = None) -> AttemptRecord:
    result = AttemptResult(status=status, error=error)
    return AttemptRecord(number, NOW + 0.5, 0.0123, result, "nope" if status else "")


def check_record(write: Write, state: str, number: int, status: int | None) -> dict[str, object]:
    assert isinstance(write, RecordAttempt)
    assert write.state == state and write.attempt is not None
    recorded = json.loads(state_json(write))
    assert recorded["endpoint_id"] == "ep_1"
    assert (recorded["state"], recorded["attempts"], recorded["last_status"]) == (
        state, number, status)  # fmt: skip
    assert recorded["origin"] == [STREAM, "1714559696000-0"]
    record = json.loads(write.attempt.to_json("ep_1"))
    assert (record["endpoint_id"], record["attempt"], record["status"]) == ("ep_1", number, status)
    assert record["at"] == "2024-05-01T10:34:56.500Z"
    assert record["duration_ms"] == 12.3
    return dict(recorded)


@pytest.mark.parametrize("scheduled", [False, True])
def test_delivered_records_the_attempt_and_clears_a_scheduled_retry(scheduled: bool) -> None:
    writes = outcome_writes(delivery(scheduled), Delivered(200), attempt(1, 200))

    check_record(writes[0], "delivered", 1, 200)
    assert writes[1:] == ([ClearRetry(STREAM, "ep_1:" + EVENT.id)] if scheduled else [])


@pytest.mark.parametrize("scheduled", [False, True])
def test_retry_records_the_attempt_and_schedules_the_delivery(scheduled: bool) -> None:
    outcome = RetryAt(due_s=NOW + 2.5, delay_s=2.0)
    the_delivery = delivery(scheduled, attempts_made=1 if scheduled else 0)
    number = the_delivery.attempts_made + 1

    writes = outcome_writes(the_delivery, outcome, attempt(number, 503))

    state = check_record(writes[0], "scheduled", number, 503)
    assert state["next_attempt_at"] == "2024-05-01T10:34:58.500Z"
    [schedule] = writes[1:]
    assert isinstance(schedule, ScheduleRetry)
    assert schedule.due_s == NOW + 2.5
    back = Delivery.from_payload(schedule.delivery.to_payload(), STREAM)
    assert (back.event, back.endpoint_id, back.attempts_made) == (EVENT, "ep_1", number)
    assert back.scheduled and back.origin == ORIGIN and back.acks is None


@pytest.mark.parametrize("scheduled", [False, True])
def test_dead_letter_writes_the_contract_fields(scheduled: bool) -> None:
    outcome = DeadLetter("gave up after 6 attempts: HTTP 500")

    writes = outcome_writes(delivery(scheduled, 5), outcome, attempt(6, 500))

    check_record(writes[0], "dead", 6, 500)
    assert isinstance(writes[1], AddDeadLetter)
    assert dict(writes[1].fields) == {
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
        "stream": STREAM,
        "entry_id": "1714559696000-0",
    }
    assert writes[2:] == ([ClearRetry(STREAM, "ep_1:" + EVENT.id)] if scheduled else [])


def test_dead_letter_after_a_connection_error_has_an_empty_status() -> None:
    writes = outcome_writes(delivery(True, 5), DeadLetter("x"), attempt(6, None, "timed out"))
    state = check_record(writes[0], "dead", 6, None)
    assert state["last_error"] == "timed out"
    assert isinstance(writes[1], AddDeadLetter)
    fields = dict(writes[1].fields)
    assert (fields["last_status"], fields["last_error"]) == ("", "timed out")


def test_gone_dead_letters_with_the_410_reason() -> None:
    writes = outcome_writes(delivery(), Gone(), attempt(1, 410))

    check_record(writes[0], "gone", 1, 410)
    assert len(writes) == 2 and isinstance(writes[1], AddDeadLetter)
    fields = dict(writes[1].fields)
    assert fields["last_status"] == "410"
    assert "410" in fields["reason"] and "disabled" in fields["reason"]


def test_a_dead_letter_redrives_to_its_partition_as_a_fresh_delivery() -> None:
    letter = dead_letter(delivery(True, 5), attempt(6, 500), "gave up")
    back = from_dead_letter(dict(letter.fields), "elsewhere")
    assert back == Delivery(EVENT, "ep_1", ORIGIN, 0, scheduled=True)
    older = {k: v for k, v in letter.fields if k not in ("stream", "entry_id")}
    assert from_dead_letter(older, "elsewhere") == Delivery(
        EVENT, "ep_1", EntryRef("elsewhere", ""), 0, scheduled=True
    )
    assert from_dead_letter({"reason": "missing field 'type'"}, STREAM) is None


def test_malformed_entry_is_dead_lettered_then_acked() -> None:
    entry = EntryRef("webhookd:events:3", "1-0")
    raw = {"type": "order created", "vendor": "v_1", "data": "{}"}

    writes = malformed_writes(entry, raw, "field 'type' is not valid")

    assert writes == [
        AddDeadLetter((
            ("reason", "field 'type' is not valid"),
            ("source_stream", "webhookd:events:3"),
            ("source_id", "1-0"),
            ("entry", json.dumps(raw, ensure_ascii=False)),
        )),
        AckEntry(entry),
    ]  # fmt: skip


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
def test_every_outcome_encodes_for_record_lua(
    outcome: Outcome,
    scheduled: bool,
    number: int,
    status: int | None,
    error: str | None,
    excerpt: str,
) -> None:
    """Every key the script touches is in KEYS (one hash tag), and ops index only KEYS."""
    record = AttemptRecord(number, NOW, 0.1, AttemptResult(status, error), excerpt)
    writes = outcome_writes(delivery(scheduled), outcome, record)
    partition_writes = [w for w in writes if not isinstance(w, AddDeadLetter)]
    keys, ops = encode_record(PartitionKeys(STREAM), [*partition_writes, AckEntry(ORIGIN)])
    assert all(k == STREAM or k.startswith("{" + STREAM + "}:") for k in keys)
    at = ops.index("a")
    assert keys[int(ops[at + 1]) - 1] == PartitionKeys(STREAM).event(EVENT.id)
    assert json.loads(str(ops[at + 5]))["response"] == excerpt
    assert ops[-2:] == ["k", ORIGIN.entry_id]


# --- deferred: waiting without an attempt ----------------------------------------------

REASON = "over the vendor's webhook rate (5/minute)"


@pytest.mark.parametrize("scheduled", [False, True])
def test_a_deferral_records_the_reason_and_uses_no_attempt(scheduled: bool) -> None:
    waiting = delivery(scheduled, attempts_made=2)
    writes = deferral_writes(waiting, NOW + 30, REASON)
    record, schedule, mark = writes
    assert isinstance(record, RecordAttempt) and record.attempt is None
    state = json.loads(state_json(record))
    assert (state["state"], state["attempts"], state["reason"]) == ("deferred", 2, REASON)
    assert state["next_attempt_at"] == "2024-05-01T10:35:26.000Z"
    assert isinstance(schedule, ScheduleRetry) and schedule.due_s == NOW + 30
    assert schedule.delivery.attempts_made == 2 and schedule.delivery.deferred
    back = Delivery.from_payload(schedule.delivery.to_payload(), STREAM)
    assert back.deferred and back.attempts_made == 2
    assert mark == MarkDeferred(schedule.delivery, True)
    keys, ops = encode_record(PartitionKeys(STREAM), writes)
    assert "d" in ops and keys[int(ops[ops.index("d") + 1]) - 1] == PartitionKeys(STREAM).deferred(
        "v_1"
    )


def test_a_deferred_delivery_stops_counting_as_deferred_once_attempted() -> None:
    waited = Delivery.from_payload(
        deferral_writes(delivery(), NOW, REASON)[1].delivery.to_payload(), STREAM
    )
    writes = outcome_writes(waited, RetryAt(NOW + 1, 1.0), attempt(1, 500))
    assert writes[-1] == MarkDeferred(waited, False)
    retry = next(w for w in writes if isinstance(w, ScheduleRetry))
    assert not retry.delivery.deferred and retry.delivery.attempts_made == 1
    _, ops = encode_record(PartitionKeys(STREAM), writes)
    assert "u" in ops and "d" not in ops


def test_an_undeferred_delivery_marks_nothing() -> None:
    writes = outcome_writes(delivery(True), Delivered(200), attempt(1, 200))
    assert not any(isinstance(w, MarkDeferred) for w in writes)


def test_a_refusal_dead_letters_untried_with_the_reason() -> None:
    waited = replace(delivery(True), deferred=True)
    record, letter, clear, mark = refusal_writes(waited, "over the daily webhook quota")
    assert isinstance(record, RecordAttempt) and record.state == "dead" and record.attempt is None
    assert isinstance(letter, AddDeadLetter)
    fields = dict(letter.fields)
    assert (fields["reason"], fields["attempts"], fields["last_status"]) == (
        "over the daily webhook quota",
        "0",
        "",
    )
    assert clear == ClearRetry(STREAM, waited.member)
    assert mark == MarkDeferred(waited, False)


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
    origin = EntryRef("s", "1-0")
    original = Delivery(event, endpoint_id, origin, attempts, acks=origin, scheduled=False)

    back = Delivery.from_payload(original.to_payload(), "s")

    assert back == Delivery(event, endpoint_id, origin, attempts, acks=None, scheduled=True)
    assert back.member == f"{endpoint_id}:{event.id}"
    assert back.member.split(":", 1) == [endpoint_id, event.id]
