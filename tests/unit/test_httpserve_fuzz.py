"""httpserve under mangled, random and arbitrarily split requests: bounded, never a crash."""

from __future__ import annotations

from typing import Literal

import pytest
import trio
import trio.testing
from httpserve_conversation import (
    KEEP_ALIVE,
    LIMITS,
    LINGER_S,
    NAME,
    TICK_S,
    VALID,
    bodiless_head,
    converse,
    responses,
)  # fmt: skip
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st


@pytest.fixture
def virtual_clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0)


INSERTS = [b"\r\n", b" ", b"0", b"HTTP/1.1 ", b"\xff", b"Content-Length: 9\r\n", b"x" * 2000,
           b"\x00", b"Transfer-Encoding: chunked\r\n", b"ffffffffffffffff\r\n",
           b"\r\n "]  # fmt: skip


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A valid request with a few bytes flipped, inserted, dropped or cut off."""
    data = bytearray(draw(st.sampled_from(VALID)))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(data)))
        match draw(st.sampled_from(["replace", "insert", "delete", "truncate"])):
            case "replace" if at < len(data):
                data[at] = draw(st.sampled_from(b"\r\n: \t0-9aF\x00\xff\x7f\x01("))
            case "insert":
                data[at:at] = draw(st.sampled_from(INSERTS))
            case "delete":
                del data[at : at + draw(st.integers(1, 8))]
            case "truncate":
                del data[at:]
    return bytes(data)


requests = st.lists(st.sampled_from(VALID) | mutated() | st.binary(max_size=300), max_size=4)


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
@given(
    sent=requests,
    cuts=st.lists(st.integers(1, 64), max_size=6),
    gap_s=st.sampled_from([0.0, 0.01, 0.7]),
    then=st.sampled_from(["close", "hang"]),
)
async def test_whatever_arrives_the_server_answers_sanely_and_lets_go_in_time(
    virtual_clock: trio.testing.MockClock,
    sent: list[bytes],
    cuts: list[int],
    gap_s: float,
    then: Literal["close", "hang"],
) -> None:
    data = b"".join(sent)
    chunks = []
    for size in cuts:
        chunks.append(data[:size])
        data = data[size:]
    chunks.append(data)
    received, lasted = await converse(
        [c for c in chunks if c], gap_s=gap_s, then=then, answer=bodiless_head
    )
    for status, fields, _ in responses(received):
        assert status in (100, 200, 400, 408, 413, 431, 500, 505), status
        assert status == 100 or fields[b"server"] == NAME.encode()
    # Nobody keeps a connection longer than its idle limit, plus a request's limit
    # for each request begun, plus the time the client itself spent sending.
    bound = LIMITS.keepalive_timeout_s + LIMITS.request_timeout_s + TICK_S + LINGER_S
    assert lasted <= bound * (len(sent) + 1) + gap_s * len(chunks)


def final_answers(received: bytes) -> list[tuple[int, dict[bytes, bytes], bytes]]:
    """The answers but ``100 Continue`` (sent or not depending on where a cut fell)."""
    return [answer for answer in responses(received) if answer[0] != 100]


pipelines = st.lists(st.sampled_from(KEEP_ALIVE), min_size=1, max_size=4)


@settings(max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
@given(sent=pipelines)
async def test_pipelined_requests_split_at_every_byte_boundary_get_the_same_answers(
    virtual_clock: trio.testing.MockClock, sent: list[bytes]
) -> None:
    data = b"".join(sent)
    whole, _ = await converse([data], answer=bodiless_head)
    expected = final_answers(whole)
    assert [status for status, _, _ in expected] == [200] * len(sent)
    for cut in range(1, len(data)):
        received, _ = await converse([data[:cut], data[cut:]], gap_s=0.001, answer=bodiless_head)
        assert final_answers(received) == expected, cut
    one_by_one = [data[at : at + 1] for at in range(len(data))]
    received, _ = await converse(one_by_one, gap_s=0.001, answer=bodiless_head)
    assert final_answers(received) == expected
