"""Each service names itself in the ``server`` field of its answers, good or refused."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import trio
from conftest import running_daemon

from ratelimiter.config import service_policy, settings_from_mapping
from ratelimiter.service import run
from webhookd.config import Settings


async def server_fields(base_url: str) -> set[str]:
    """The ``server`` fields of an answer, a 404 and a refused (malformed) request."""
    async with httpx.AsyncClient(base_url=base_url) as http:
        answers = [await http.get("/healthz"), await http.get("/no/such/route")]
    names = {answer.headers["server"] for answer in answers}
    port = int(base_url.rsplit(":", 1)[1])
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n")
        refused = b""
        while data := await stream.receive_some():
            refused += data
    assert refused.startswith(b"HTTP/1.1 400 ")
    names |= {line[len(b"server: ") :].decode() for line in refused.split(b"\r\n")
              if line.startswith(b"server: ")}  # fmt: skip
    return names


async def test_the_admin_api_answers_as_webhookd(make_settings: Callable[..., Settings]) -> None:
    with trio.fail_after(20):
        async with running_daemon(make_settings()) as daemon:
            assert await server_fields(f"http://127.0.0.1:{daemon.admin_port}") == {"webhookd"}


async def test_the_limiter_service_answers_as_ratelimiter() -> None:
    # memory://: the embedded default would keep its data in the working directory
    settings = settings_from_mapping(
        {"service": {"listen": "127.0.0.1:0"}, "redis": {"url": "memory://"}}
    )
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(run, settings, service_policy(settings))
            assert await server_fields(f"http://127.0.0.1:{port}") == {"ratelimiter"}
            nursery.cancel_scope.cancel()
