"""rediswire's pure parts: requests as RESP, cluster slots, and the URL forms."""

from __future__ import annotations

import hiredis
import pytest
from coredis._utils import hash_slot
from hypothesis import given
from hypothesis import strategies as st

from rediswire import Arg, encode, key_slot
from rediswire._resp import as_bytes
from rediswire._urls import Location, Target, parse_url

args = st.one_of(
    st.binary(max_size=64),
    st.text(max_size=32),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False),
)
commands = st.lists(st.lists(args, min_size=1, max_size=8), max_size=6)


def rendered(arg: Arg) -> bytes:
    """What an argument must look like on the wire, written out independently."""
    if isinstance(arg, bytes):
        return arg
    if isinstance(arg, str):
        return arg.encode("utf-8")
    if isinstance(arg, int):
        return b"%d" % arg
    return repr(arg).encode()


def test_a_command_is_an_array_of_bulk_strings() -> None:
    assert encode([("SET", b"k\r\n", 12, -1.5)]) == (
        b"*4\r\n$3\r\nSET\r\n$3\r\nk\r\n\r\n$2\r\n12\r\n$4\r\n-1.5\r\n"
    )


def test_commands_follow_one_another_in_one_request() -> None:
    assert (
        encode([["PING"], ("GET", "é")])
        == b"*1\r\n$4\r\nPING\r\n*2\r\n$3\r\nGET\r\n$2\r\n\xc3\xa9\r\n"
    )
    assert encode([]) == b""


def test_floats_keep_every_digit() -> None:
    assert encode([(0.1, 1 / 3, 1e100, float("inf"))]) == (
        b"*4\r\n$3\r\n0.1\r\n$18\r\n0.3333333333333333\r\n$6\r\n1e+100\r\n$3\r\ninf\r\n"
    )


@pytest.mark.parametrize("arg", [True, None, bytearray(b"x"), ["a"]])
def test_an_argument_of_another_type_is_refused(arg: object) -> None:
    with pytest.raises(TypeError):
        encode([("SET", "k", arg)])  # type: ignore[list-item]
    with pytest.raises(TypeError):
        as_bytes(arg)  # type: ignore[arg-type]


@given(commands)
def test_redis_reads_back_every_argument_as_sent(batch: list[list[Arg]]) -> None:
    reader = hiredis.Reader()
    reader.feed(encode(batch))
    parsed = [reader.gets() for _ in batch]
    assert parsed == [[rendered(arg) for arg in command] for command in batch]
    assert reader.gets() is False


@given(args)
def test_a_route_is_rendered_as_its_argument(arg: Arg) -> None:
    assert as_bytes(arg) == rendered(arg)


@pytest.mark.parametrize(
    ("key", "slot"),
    [
        (b"foo", 12182),
        (b"bar", 5061),
        (b"", 0),
        (b"{user1000}.following", 3443),
        (b"{user1000}.followers", 3443),
        (b"foo{}{bar}", 8363),  # an empty tag: the whole key
        (b"foo{{bar}}zap", 4015),  # the tag is "{bar"
        (b"foo{bar}{zap}", 5061),  # the first tag: "bar"
    ],
)
def test_a_key_hashes_to_its_slot_or_its_tags(key: bytes, slot: int) -> None:
    assert key_slot(key) == slot


@given(st.binary(max_size=40))
def test_slots_agree_with_coredis(key: bytes) -> None:
    assert key_slot(key) == hash_slot(key)


def test_a_tcp_url_names_its_node_login_and_database() -> None:
    assert parse_url("rediss://al%40ice:p%3Ass@Cache.local:6380/3") == Target(
        locations=(Location("cache.local", 6380),),
        tls=True,
        username="al@ice",
        password="p:ss",
        db=3,
    )
    assert parse_url("redis://:secret@10.0.0.1") == Target(
        locations=(Location("10.0.0.1"),), password="secret"
    )


def test_a_unix_url_names_its_socket() -> None:
    target = parse_url("unix:///run/redis/redis.sock?db=2")
    assert target.locations == (Location("", 0, unix_path="/run/redis/redis.sock"),)
    assert target.db == 2
    assert target.locations[0].name == "/run/redis/redis.sock"


def test_a_cluster_url_names_every_startup_node() -> None:
    target = parse_url("rediss+cluster://u:p@10.0.0.1:7000,h2,h3:7002/0")
    assert target.locations == (
        Location("10.0.0.1", 7000),
        Location("h2", 6379),
        Location("h3", 7002),
    )
    assert (target.cluster, target.tls, target.username, target.password, target.db) == (
        True,
        True,
        "u",
        "p",
        0,
    )


def test_a_new_connection_logs_in_only_as_asked() -> None:
    assert parse_url("redis://h:1").login() == []
    assert parse_url("redis://h:1/0").login() == []
    assert parse_url("redis://:pw@h:1/4").login() == [("AUTH", "pw"), ("SELECT", 4)]
    assert parse_url("redis://u:pw@h:1").login() == [("AUTH", "u", "pw")]


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("memory://", "unsupported Redis URL scheme 'memory'"),
        ("http://u:hunter2@h:1", "unsupported Redis URL scheme 'http'"),
        ("redis://u:hunter2@h:1/x", "database must be a number"),
        ("unix://", "needs the socket's path"),
    ],
)
def test_a_bad_url_is_refused_without_quoting_it(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as caught:
        parse_url(url)
    assert "hunter2" not in str(caught.value)
