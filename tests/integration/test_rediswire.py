"""rediswire against real Redis: the session's server, servers of its own where a test
changes the server's login or listens elsewhere (unix socket, TLS), and the session's
three-master cluster."""

from __future__ import annotations

import contextlib
import functools
import socket
import ssl
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
import trustme
from conftest import until

from rediswire import ReplyError, Script, Wire, WireUnavailable, key_slot
from rediswire._urls import Location
from webhookd.embedded import find_redis_server, free_port, running_redis


@pytest.fixture
async def wire(redis_url: str) -> AsyncIterator[Wire]:
    async with Wire.from_url(redis_url) as wire:
        yield wire


def with_db(url: str, db: int) -> str:
    assert url.endswith("/0")
    return f"{url.removesuffix('/0')}/{db}"


async def info_field(wire: Wire, section: str, field: str) -> int:
    info: Any = await wire.call("INFO", section)
    for line in info.decode().splitlines():
        name, _, value = line.partition(":")
        if name == field:
            return int(value)
    raise AssertionError(f"INFO {section} has no {field}")


async def test_each_kind_of_reply(wire: Wire, key_prefix: str) -> None:
    key = f"{key_prefix}:k"
    assert await wire.call("SET", key, "v") == b"OK"
    assert await wire.call("GET", key) == b"v"
    assert await wire.call("GET", f"{key_prefix}:none") is None
    assert await wire.call("INCRBYFLOAT", f"{key_prefix}:f", 0.5) == b"0.5"
    assert await wire.call("RPUSH", f"{key_prefix}:l", 1, 2.5, b"\x00\r\n\xff") == 3
    assert await wire.call("LRANGE", f"{key_prefix}:l", 0, -1) == [b"1", b"2.5", b"\x00\r\n\xff"]
    assert await wire.call("LRANGE", f"{key_prefix}:none", 0, -1) == []
    entry = await wire.call("XADD", f"{key_prefix}:s", "*", "type", "order.created")
    assert await wire.call("XRANGE", f"{key_prefix}:s", "-", "+") == [
        [entry, [b"type", b"order.created"]]
    ]
    big = bytes(range(256)) * 4096  # a megabyte: many reads for one reply
    assert await wire.call("SET", key, big) == b"OK"
    assert await wire.call("GET", key) == big


async def test_a_pipeline_answers_every_command_in_order(wire: Wire, key_prefix: str) -> None:
    key = f"{key_prefix}:k"
    replies = await wire.pipeline(
        [("SET", key, 7), ("INCR", key), ("GET", key), ("MGET", key, f"{key_prefix}:none")]
    )
    assert replies == [b"OK", 8, b"8", [b"8", None]]
    counts = await wire.pipeline([("INCR", f"{key_prefix}:n")] * 2000)
    assert counts == list(range(1, 2001))
    assert await wire.pipeline([]) == []


async def test_an_error_reply_is_raised_or_returned_and_the_connection_goes_on(
    redis_url: str, key_prefix: str
) -> None:
    key, counter = f"{key_prefix}:k", f"{key_prefix}:n"
    async with Wire.from_url(redis_url, max_idle=1) as wire:
        connection = await wire.call("CLIENT", "ID")
        await wire.call("SET", key, "a string")
        with pytest.raises(ReplyError, match=r"^WRONGTYPE Operation against a key"):
            await wire.call("LPUSH", key, 1)
        replies = await wire.pipeline(
            [("INCR", counter), ("LPUSH", key, 1), ("INCR", counter), ("NO-SUCH-COMMAND",)]
        )
        assert replies[0::2] == [1, 2]
        assert isinstance(replies[1], ReplyError)
        assert str(replies[1]).startswith("WRONGTYPE")
        assert isinstance(replies[3], ReplyError)
        assert str(replies[3]).startswith("ERR unknown command")
        assert await wire.call("CLIENT", "ID") == connection


async def test_evalsha_loads_a_script_the_server_does_not_know(wire: Wire, key_prefix: str) -> None:
    key = f"{key_prefix}:k"
    script = Script("return {KEYS[1], ARGV[1], redis.call('INCR', KEYS[1])}")
    await wire.call("SCRIPT", "FLUSH")
    assert await wire.evalsha(script, [key], ["a"]) == [key.encode(), b"a", 1]
    assert await wire.call("SCRIPT", "EXISTS", script.sha) == [1]
    assert await wire.evalsha(script, [key], [2.5]) == [key.encode(), b"2.5", 2]
    await wire.call("SCRIPT", "FLUSH")
    assert await wire.evalsha(script, [key], [b"b"]) == [key.encode(), b"b", 3]
    assert await wire.evalsha(Script("return 1"), [], []) == 1


async def test_evalsha_each_sends_its_calls_in_one_round_trip(
    wire: Wire, key_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = Script("return redis.call('INCRBY', KEYS[1], ARGV[1])")
    calls = [([f"{key_prefix}:{n}"], [n]) for n in range(1, 6)]
    await wire.call("SCRIPT", "FLUSH")
    exchanges = 0
    exchange = wire._exchange

    async def counted(*args: Any) -> Any:
        nonlocal exchanges
        exchanges += 1
        return await exchange(*args)

    monkeypatch.setattr(wire, "_exchange", counted)
    assert await wire.evalsha_each(script, calls) == [1, 2, 3, 4, 5]
    assert exchanges == 2  # refused, then SCRIPT LOAD and the calls again
    assert await wire.evalsha_each(script, calls) == [2, 4, 6, 8, 10]
    assert exchanges == 3
    refusing = Script("return redis.error_reply('BUSY not now')")
    with pytest.raises(ReplyError, match=r"^BUSY not now"):
        await wire.evalsha_each(refusing, calls)
    assert await wire.evalsha_each(script, []) == []


async def test_evalsha_raises_what_the_script_or_its_loading_answers(
    wire: Wire, key_prefix: str
) -> None:
    refusing = Script("return redis.error_reply('BUSY not now')")
    with pytest.raises(ReplyError, match=r"^BUSY not now"):
        await wire.evalsha(refusing, [f"{key_prefix}:k"], [])
    with pytest.raises(ReplyError, match="Error compiling script"):
        await wire.evalsha(Script("this is not Lua"), [f"{key_prefix}:k"], [])


async def test_many_tasks_share_the_wire_and_keep_at_most_max_idle(
    redis_url: str, key_prefix: str, wire: Wire
) -> None:
    key = f"{key_prefix}:n"
    connected = await info_field(wire, "clients", "connected_clients")
    async with Wire.from_url(redis_url, max_idle=4) as shared:
        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                for _ in range(200):
                    nursery.start_soon(shared.call, "INCR", key)
            assert await wire.call("GET", key) == b"200"
            await until(
                lambda: info_field(wire, "clients", "connected_clients"), equals=connected + 4
            )


async def test_a_blocked_read_holds_only_its_own_connection(wire: Wire, key_prefix: str) -> None:
    stream, counter = f"{key_prefix}:s", f"{key_prefix}:n"
    await wire.call("XGROUP", "CREATE", stream, "g", "$", "MKSTREAM")
    read: list[Any] = []

    async def read_blocking() -> None:
        read.append(
            await wire.call(
                "XREADGROUP", "GROUP", "g", "c", "COUNT", 10, "BLOCK", 5000, "STREAMS", stream, ">"
            )
        )

    blocked = await info_field(wire, "clients", "blocked_clients")
    with trio.fail_after(4):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(read_blocking)
            await until(lambda: info_field(wire, "clients", "blocked_clients"), equals=blocked + 1)
            for n in range(1, 51):
                assert await wire.call("INCR", counter) == n
            assert read == []
            entry = await wire.call("XADD", stream, "*", "type", "order.created")
    assert read == [[[stream.encode(), [[entry, [b"type", b"order.created"]]]]]]


async def test_a_cancelled_exchange_closes_its_connection(redis_url: str, key_prefix: str) -> None:
    async with Wire.from_url(redis_url, max_idle=1) as wire:
        first: Any = await wire.call("CLIENT", "ID")
        with trio.move_on_after(0.2) as waiting:
            await wire.call("XREAD", "BLOCK", 10_000, "STREAMS", f"{key_prefix}:s", "$")
        assert waiting.cancelled_caught
        second = await wire.call("CLIENT", "ID")
        assert second != first
        assert await wire.call("PING") == b"PONG"
        await until(lambda: wire.call("CLIENT", "LIST", "ID", first), equals=b"")


async def test_a_connection_lost_mid_exchange_is_unavailable_then_replaced(
    redis_url: str, wire: Wire
) -> None:
    address = redis_url.removeprefix("redis://").removesuffix("/0")
    async with Wire.from_url(redis_url, max_idle=1) as victim:
        killed: Any = await victim.call("CLIENT", "ID")
        assert await wire.call("CLIENT", "KILL", "ID", killed) == 1
        with pytest.raises(WireUnavailable, match=f"^Redis at {address} unavailable: "):
            await victim.call("PING")
        assert await victim.call("PING") == b"PONG"


async def test_an_unreachable_redis_is_unavailable_by_name(tmp_path: Path) -> None:
    port = free_port()
    async with Wire.from_url(f"redis://127.0.0.1:{port}/0") as wire:
        with pytest.raises(WireUnavailable, match=f"^Redis at 127.0.0.1:{port} unavailable: "):
            await wire.call("PING")
    path = tmp_path / "nobody.sock"
    async with Wire.from_url(f"unix://{path}") as wire:
        with pytest.raises(WireUnavailable, match=f"^Redis at {path} unavailable: "):
            await wire.pipeline([("PING",)])


async def test_a_closed_wire_refuses_calls(redis_url: str) -> None:
    wire = Wire.from_url(redis_url)
    assert await wire.call("PING") == b"PONG"
    await wire.aclose()
    with pytest.raises(WireUnavailable, match="closed"):
        await wire.call("PING")


async def test_the_url_selects_the_database(redis_url: str, key_prefix: str) -> None:
    key = f"{key_prefix}:k"
    async with Wire.from_url(with_db(redis_url, 3)) as db3, Wire.from_url(redis_url) as db0:
        assert await db3.call("SET", key, "in 3") == b"OK"
        assert await db0.call("GET", key) is None
        assert await db3.call("GET", key) == b"in 3"
        assert await db3.call("DEL", key) == 1


async def test_a_password_or_a_user_logs_in(tmp_path: Path) -> None:
    with running_redis(tmp_path, persistent=False) as server:
        address = server.url.removeprefix("redis://").removesuffix("/0")
        async with Wire.from_url(server.url) as admin:
            await admin.call("ACL", "SETUSER", "alice", "on", ">wonder land", "~*", "+@all")
            await admin.call("CONFIG", "SET", "requirepass", "s3cret")
        async with Wire.from_url(f"redis://:s3cret@{address}/5") as wire:
            assert await wire.call("ACL", "WHOAMI") == b"default"
            info: Any = await wire.call("CLIENT", "INFO")
            assert b" db=5 " in info
        async with Wire.from_url(f"redis://alice:wonder%20land@{address}") as wire:
            assert await wire.call("ACL", "WHOAMI") == b"alice"
        async with Wire.from_url(f"redis://alice:wrong@{address}") as wire:
            with pytest.raises(
                WireUnavailable, match=f"^Redis at {address} unavailable: WRONGPASS"
            ):
                await wire.call("PING")
        async with Wire.from_url(f"redis://{address}") as wire:
            with pytest.raises(ReplyError, match=r"^NOAUTH"):
                await wire.call("PING")


async def test_a_unix_socket_with_its_database(tmp_path: Path, key_prefix: str) -> None:
    with running_redis(tmp_path, persistent=False, unix_socket=True) as server:
        assert server.url.startswith("unix://")
        async with Wire.from_url(f"{server.url}?db=2") as wire:
            assert await wire.call("SET", key_prefix, "here") == b"OK"
            info: Any = await wire.call("CLIENT", "INFO")
            assert b" db=2 " in info
        async with Wire.from_url(server.url) as wire:
            assert await wire.call("GET", key_prefix) is None


@contextlib.contextmanager
def running_tls_redis(data_dir: Path, ca: trustme.CA) -> Iterator[str]:
    """A redis-server speaking only TLS, with a certificate for 127.0.0.1 from ``ca``."""
    identity = ca.issue_cert("127.0.0.1")
    identity.cert_chain_pems[0].write_to_path(str(data_dir / "cert.pem"))
    identity.private_key_pem.write_to_path(str(data_dir / "key.pem"))
    port = free_port()
    args = [
        find_redis_server(), "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
        "--tls-cert-file", str(data_dir / "cert.pem"), "--tls-key-file", str(data_dir / "key.pem"),
        "--tls-auth-clients", "no", "--dir", str(data_dir), "--save", "", "--appendonly", "no",
    ]  # fmt: skip
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
        yield f"rediss://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(timeout=10)


async def test_tls_with_the_servers_ca(tmp_path: Path) -> None:
    ca = trustme.CA()
    with running_tls_redis(tmp_path, ca) as url:
        trusting = ssl.create_default_context()
        ca.configure_trust(trusting)
        async with Wire.from_url(url, ssl_context=trusting) as wire:
            assert await wire.call("ECHO", b"over tls") == b"over tls"
        async with Wire.from_url(url) as wire:  # the default context knows no such CA
            with pytest.raises(WireUnavailable, match="CERTIFICATE_VERIFY_FAILED"):
                await wire.call("PING")


# The cluster


def cluster_ports(url: str) -> list[int]:
    return [int(node.rsplit(":", 1)[1]) for node in url.split("://")[1].split(",")]


@contextlib.asynccontextmanager
async def node_wires(cluster_url: str) -> AsyncIterator[dict[int, Wire]]:
    """A plain wire to each master, by port, for looking behind the cluster wire."""
    async with contextlib.AsyncExitStack() as stack:
        yield {
            port: await stack.enter_async_context(Wire.from_url(f"redis://127.0.0.1:{port}"))
            for port in cluster_ports(cluster_url)
        }


async def slot_owners(node: Wire) -> dict[int, int]:
    """The port of the master of each slot, as one node sees it."""
    ranges: Any = await node.call("CLUSTER", "SLOTS")
    return {slot: entry[2][1] for entry in ranges for slot in range(entry[0], entry[1] + 1)}


async def owner_of(node: Wire, slot: int) -> int:
    return (await slot_owners(node))[slot]


async def test_keys_in_every_slot_land_on_their_masters(
    redis_cluster_url: str, key_prefix: str
) -> None:
    keys = [f"{key_prefix}:{n}" for n in range(300)]
    async with Wire.from_url(redis_cluster_url) as wire, node_wires(redis_cluster_url) as nodes:
        for key in keys:
            assert await wire.call("SET", key, key, route=key) == b"OK"
        owners = await slot_owners(nodes[cluster_ports(redis_cluster_url)[0]])
        for key in keys[:20]:
            assert await wire.call("CLUSTER", "KEYSLOT", key) == key_slot(key.encode())
        for key in keys:
            owner = owners[key_slot(key.encode())]
            assert await nodes[owner].call("GET", key) == key.encode()
        assert {owners[key_slot(key.encode())] for key in keys} == set(nodes)
        assert await wire.pipeline([("GET", key) for key in keys[:1]], route=keys[0]) == [
            keys[0].encode()
        ]


async def test_a_cluster_pipeline_goes_to_its_routes_master(
    redis_cluster_url: str, key_prefix: str
) -> None:
    tagged = [f"{{{key_prefix}}}:{name}" for name in "abc"]
    async with Wire.from_url(redis_cluster_url) as wire:
        replies = await wire.pipeline(
            [("SET", tagged[0], 1), ("INCR", tagged[1]), ("MGET", *tagged)], route=key_prefix
        )
        assert replies == [b"OK", 1, [b"1", b"1", None]]


async def test_many_tasks_load_the_slot_map_once(redis_cluster_url: str, key_prefix: str) -> None:
    async with Wire.from_url(redis_cluster_url) as wire:
        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                for n in range(200):
                    key = f"{key_prefix}:{n % 20}"
                    nursery.start_soon(functools.partial(wire.call, "INCR", key, route=key))
        keys = [f"{key_prefix}:{n}" for n in range(20)]
        assert [await wire.call("GET", key, route=key) for key in keys] == [b"10"] * 20
        assert wire._generation == 1


async def test_evalsha_across_slots(redis_cluster_url: str, key_prefix: str) -> None:
    script = Script("return redis.call('INCRBY', KEYS[1], ARGV[1])")
    async with Wire.from_url(redis_cluster_url) as wire, node_wires(redis_cluster_url) as nodes:
        for node in nodes.values():
            await node.call("SCRIPT", "FLUSH")
        for n in range(60):
            key = f"{key_prefix}:{n}"
            assert await wire.evalsha(script, [key], [n]) == n
        for node in nodes.values():
            assert await node.call("SCRIPT", "EXISTS", script.sha) == [1]


async def test_evalsha_each_on_a_cluster_calls_each_slots_master(
    redis_cluster_url: str, key_prefix: str
) -> None:
    script = Script("return redis.call('INCRBY', KEYS[1], ARGV[1])")
    calls = [([f"{key_prefix}:{n}"], [n]) for n in range(30)]
    assert len({key_slot(keys[0].encode()) for keys, _ in calls}) > 1
    async with Wire.from_url(redis_cluster_url) as wire:
        assert await wire.evalsha_each(script, calls) == list(range(30))


async def test_a_wrong_slot_map_is_corrected(redis_cluster_url: str, key_prefix: str) -> None:
    key = f"{key_prefix}:k"
    slot = key_slot(key.encode())
    async with Wire.from_url(redis_cluster_url) as wire:
        assert await wire.call("SET", key, "v", route=key) == b"OK"
        owner = wire._slots[slot]
        wire._slots[slot] = next(node for node in wire._slots if node is not owner)
        assert await wire.call("GET", key, route=key) == b"v"
        assert wire._slots[slot] is owner
        assert wire._generation == 2
        wire._slots[slot] = wire._node(Location("127.0.0.1", free_port()))
        with pytest.raises(WireUnavailable):
            await wire.call("GET", key, route=key)
        assert await wire.call("GET", key, route=key) == b"v"
        assert wire._slots[slot] is owner


async def test_a_slot_being_moved_is_followed(redis_cluster_url: str, key_prefix: str) -> None:
    """A real migration: ASK while the slot is migrating, MOVED once it has moved."""
    key = f"{key_prefix}:moving"
    slot = key_slot(key.encode())
    async with Wire.from_url(redis_cluster_url) as wire, node_wires(redis_cluster_url) as nodes:
        ids: dict[int, Any] = {
            port: await node.call("CLUSTER", "MYID") for port, node in nodes.items()
        }
        assert await wire.call("EXISTS", key, route=key) == 0  # loads the map
        source = (await slot_owners(nodes[next(iter(nodes))]))[slot]
        target = next(port for port in nodes if port != source)

        async def assign(owner: int) -> None:
            for port in sorted(nodes, key=lambda port: port != owner):
                await nodes[port].call("CLUSTER", "SETSLOT", slot, "NODE", ids[owner])
            for node in nodes.values():
                await until(functools.partial(owner_of, node, slot), equals=owner, interval_s=0.05)

        await nodes[target].call("CLUSTER", "SETSLOT", slot, "IMPORTING", ids[source])
        await nodes[source].call("CLUSTER", "SETSLOT", slot, "MIGRATING", ids[target])
        try:
            with pytest.raises(ReplyError, match=f"^ASK {slot} "):
                await nodes[source].call("GET", key)
            assert await wire.call("SET", key, "moved", route=key) == b"OK"  # ASK
            assert await wire.pipeline([("GET", key), ("STRLEN", key)], route=key) == [b"moved", 5]
            assert wire._slots[slot].location.port == source
            await assign(target)
            generation = wire._generation
            assert await wire.call("GET", key, route=key) == b"moved"  # MOVED
            assert wire._slots[slot].location.port == target
            assert wire._generation == generation + 1
            assert await wire.call("DEL", key, route=key) == 1
        finally:
            with contextlib.suppress(ReplyError, WireUnavailable):
                await wire.call("DEL", key, route=key)
            await nodes[source].call("CLUSTER", "SETSLOT", slot, "STABLE")
            await nodes[target].call("CLUSTER", "SETSLOT", slot, "STABLE")
            with trio.fail_after(10):
                await assign(source)


async def test_an_unreachable_cluster_is_unavailable_by_its_nodes() -> None:
    ports = [free_port(), free_port()]
    url = "redis+cluster://" + ",".join(f"127.0.0.1:{port}" for port in ports)
    async with Wire.from_url(url) as wire:
        with pytest.raises(WireUnavailable) as caught:
            await wire.call("PING")
    for port in ports:
        assert f"Redis at 127.0.0.1:{port} unavailable" in str(caught.value)
