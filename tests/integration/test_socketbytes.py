"""``socketbytes`` on a real socket pair: large writes, the peer's close, a close under
a waiting task."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from socketbytes import SocketBytes, faster


async def test_writes_go_past_full_buffers_and_errors_say_broken_or_closed() -> None:
    left, right = trio.socket.socketpair()
    ours, theirs = SocketBytes(trio.SocketStream(left)), trio.SocketStream(right)
    payload = bytes(range(256)) * 40_000  # ~10 MB: far past both socket buffers
    received = bytearray()

    async def drain() -> None:
        while len(received) < len(payload):
            received.extend(await theirs.receive_some(65536))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(drain)
        await ours.send_all(payload)
    assert received == payload
    await theirs.send_all(b"answer")
    assert await ours.receive_some(100) == b"answer"
    await theirs.aclose()
    assert await ours.receive_some(100) == b""  # the peer's clean close
    with pytest.raises(trio.BrokenResourceError):
        await ours.send_all(b"to nobody")

    left, right = trio.socket.socketpair()
    ours = SocketBytes(trio.SocketStream(left))
    async with trio.open_nursery() as nursery:

        async def close_soon() -> None:
            await trio.testing.wait_all_tasks_blocked()
            await trio.aclose_forcefully(ours)  # as the watchdog ends an exchange

        nursery.start_soon(close_soon)
        with pytest.raises(trio.ClosedResourceError):
            await ours.receive_some(100)  # waiting for an answer that never comes
    right.close()


async def test_only_socket_streams_are_wrapped() -> None:
    left, right = trio.socket.socketpair()
    assert isinstance(faster(trio.SocketStream(left)), SocketBytes)
    memory, _ = trio.testing.memory_stream_pair()
    assert faster(memory) is memory
    left.close()
    right.close()
