"""The service on its store and its listeners: what ``ratelimiter serve`` runs.

``open_service`` opens the limiter and the key store on ``redis.url`` (or on the
embedded Redis of ``redis.data_dir``, started here when no other process runs it);
``run`` serves ``Service.handle`` through ``httpserve`` until cancelled.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import replace
from functools import partial

import structlog
import trio

from httpserve import Limits, serve_listeners
from ratelimiter.async_limiter import AsyncLimiter, coredis_client
from ratelimiter.backend import split_url
from ratelimiter.config import Settings
from ratelimiter.embedded import embedded_url
from ratelimiter.keys import KeyStore
from ratelimiter.policy import Policy
from ratelimiter.service.routes import Service
from ratelimiter.wire_backend import WireBackend
from rediswire import Wire

log = structlog.get_logger("ratelimiter.service")

SERVER_LIMITS = Limits(max_header_bytes=16 * 1024, max_body_bytes=64 * 1024)


@contextlib.asynccontextmanager
async def open_service(settings: Settings, policy: Policy) -> AsyncIterator[Service]:
    """The service on its store: ``redis.url``, else the embedded Redis on ``redis.data_dir``
    (started here when no other process runs it, and stopped on exit)."""
    if settings.redis_url is None:
        with contextlib.ExitStack() as stack:
            url = await trio.to_thread.run_sync(
                stack.enter_context, embedded_url(None, settings.data_dir)
            )
            try:
                async with open_service(replace(settings, redis_url=url), policy) as service:
                    yield service
            finally:
                with trio.CancelScope(shield=True):
                    await trio.to_thread.run_sync(stack.close)
        return
    url, half_s = settings.redis_url, settings.service.redis_timeout_s / 2
    if split_url(url)[0] == "memory":
        async with AsyncLimiter.from_url(url, plans=policy, prefix=settings.key_prefix) as limiter:
            yield Service(settings.service, limiter)
        return
    # Decisions and key look-ups go over the wire; the rest (readiness) through coredis.
    async with coredis_client(url) as client, Wire.from_url(url) as wire:
        backend = WireBackend(wire, prefix=settings.key_prefix, timeout_s=half_s)
        async with AsyncLimiter(backend, plans=policy) as limiter:
            keys = KeyStore(client, prefix=settings.key_prefix,
                            cache_ttl_s=settings.service.key_cache_ttl_s,
                            timeout_s=half_s, wire=wire)  # fmt: skip
            yield Service(settings.service, limiter, keys=keys, redis=client)


async def run(
    settings: Settings,
    policy: Policy,
    listeners: list[trio.SocketListener] | None = None,
    *,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve until cancelled, on ``listeners`` or else ``service.listen``; ``task_status``
    gets the bound port."""
    if listeners is None:
        host, port = settings.service.address
        listeners = await trio.open_tcp_listeners(port, host=host)
    async with open_service(settings, policy) as service, trio.open_nursery() as nursery:
        serving = partial(serve_listeners, service.handle, listeners,
                          server_name="ratelimiter", limits=SERVER_LIMITS)  # fmt: skip
        port = await nursery.start(serving)
        store = {None: "embedded redis", "memory://": "memory"}.get(settings.redis_url, "redis")
        log.info("ratelimiter.listening", listen=settings.service.listen, port=port,
                 store=store)  # fmt: skip
        task_status.started(port)
