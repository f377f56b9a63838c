"""The admin HTTP API: endpoints, delivery records, dead letters, metrics and health.

Served on ``admin.listen`` by ``httpserve``, the small server the limiter service uses too.
Every ``/v1`` route needs ``Authorization: Bearer <admin.token>``; with no token
configured they all answer 401. ``/metrics``, ``/healthz`` and ``/readyz`` are open.
"""

from __future__ import annotations

import hmac
import math
import re
from collections.abc import Awaitable, Callable
from typing import Any

import prometheus_client
import structlog

from httpserve import Request, Response
from webhookd import __version__
from webhookd.clock import EpochClock
from webhookd.errors import EndpointError, EndpointNotFound, StoreError
from webhookd.health import Readiness
from webhookd.openapi import OPENAPI
from webhookd.options import NO_OPTIONS, OPTION_NAMES, delivery_options
from webhookd.redrive import redrive, replay
from webhookd.registry import Registry, endpoint_tls
from webhookd.store import Store

log = structlog.get_logger("webhookd.admin")

Route = Callable[[Request, re.Match[str]], Awaitable[Response]]


class AdminApi:
    def __init__(
        self,
        *,
        token: str | None,
        registry: Registry,
        store: Store,
        readiness: Readiness,
        clock: EpochClock,
    ) -> None:
        self._token = token.encode() if token else None
        self._registry = registry
        self._store = store
        self._readiness = readiness
        self._clock = clock
        self._routes: list[tuple[str, re.Pattern[str], Route]] = [
            ("GET", re.compile(r"/v1/endpoints"), self._list_endpoints),
            ("POST", re.compile(r"/v1/endpoints"), self._create_endpoint),
            ("GET", re.compile(r"/v1/endpoints/(?P<id>[^/]+)"), self._show_endpoint),
            ("PATCH", re.compile(r"/v1/endpoints/(?P<id>[^/]+)"), self._patch_endpoint),
            ("DELETE", re.compile(r"/v1/endpoints/(?P<id>[^/]+)"), self._delete_endpoint),
            ("POST", re.compile(r"/v1/endpoints/(?P<id>[^/]+)/rotate-secret"), self._rotate),
            ("GET", re.compile(r"/v1/events/(?P<id>[^/]+)"), self._show_event),
            ("POST", re.compile(r"/v1/events/(?P<id>[^/]+)/replay"), self._replay_event),
            ("GET", re.compile(r"/v1/dead"), self._list_dead),
            ("POST", re.compile(r"/v1/dead/redrive"), self._redrive),
        ]

    async def handle(self, request: Request) -> Response:
        path = request.path
        if request.method == "GET" and path == "/healthz":
            return Response.json(200, {"status": "ok", "version": __version__})
        if request.method == "GET" and path == "/readyz":
            return await self._ready()
        if request.method == "GET" and path == "/metrics":
            return Response(200, prometheus_client.generate_latest(),
                            content_type=prometheus_client.CONTENT_TYPE_LATEST)  # fmt: skip
        if request.method == "GET" and path == "/openapi.json":
            return Response.json(200, OPENAPI)
        allowed_methods = set()
        for method, pattern, route in self._routes:
            match = pattern.fullmatch(path)
            if match is None:
                continue
            allowed_methods.add(method)
            if method == request.method:
                if not self._authorized(request):
                    return Response.error(
                        401, "unauthorized", "send Authorization: Bearer <admin.token>",
                        (("www-authenticate", 'Bearer realm="webhookd"'),),
                    )  # fmt: skip
                try:
                    return await route(request, match)
                except EndpointNotFound as exc:
                    return Response.error(404, "not_found", str(exc))
                except EndpointError as exc:
                    return Response.error(400, "invalid_endpoint", str(exc))
                except StoreError as exc:
                    log.warning("admin.redis_error", path=path, error=str(exc))
                    return Response.error(503, "unavailable", "Redis is unavailable; try again")
        if allowed_methods:
            allow = ", ".join(sorted(allowed_methods))
            return Response.error(405, "method_not_allowed", f"use {allow}", (("allow", allow),))
        return Response.error(404, "not_found", f"no route for {path}")

    def _authorized(self, request: Request) -> bool:
        if self._token is None:
            return False
        scheme, _, offered = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer":
            return False
        return hmac.compare_digest(offered.strip().encode("utf-8", "replace"), self._token)

    async def _ready(self) -> Response:
        """Ready when Redis answers and no loop is failing to read or record."""
        try:
            await self._store.ping()
        except StoreError as exc:
            return Response.json(503, {"status": "unavailable", "redis": str(exc)})
        problems = self._readiness.problems
        if problems:
            return Response.json(503, {"status": "unavailable", "failing": problems})
        return Response.json(200, {"status": "ready"})

    async def _list_endpoints(self, request: Request, match: re.Match[str]) -> Response:
        vendor = request.query.get("vendor")
        endpoints = await self._registry.all()
        return Response.json(
            200, [e.public() for e in endpoints if vendor is None or e.vendor == vendor]
        )

    async def _create_endpoint(self, request: Request, match: re.Match[str]) -> Response:
        body = _object(request)
        if isinstance(body, Response):
            return body
        vendor, url = body.get("vendor"), body.get("url")
        if not isinstance(vendor, str) or not isinstance(url, str):
            return Response.error(400, "invalid_request", "vendor and url are required strings")
        events = body.get("events", "*")
        secret, signing = body.get("secret"), body.get("signing", "hmac")
        pems = [body.get(name) for name in ("ca_cert", "client_cert", "client_key")]
        if not isinstance(events, str | list) or not all(
            isinstance(v, str | None) for v in (secret, signing, *pems)
        ):
            return Response.error(
                400, "invalid_request",
                "events: a list; secret, signing, ca_cert, client_cert, client_key: strings",
            )  # fmt: skip
        endpoint = await self._registry.add(
            vendor, url, events, secret, now_s=self._clock.now_s(), signing=signing,
            tls=endpoint_tls(*pems), options=delivery_options(body, NO_OPTIONS),
        )  # fmt: skip
        return Response.json(201, endpoint.public())

    async def _show_endpoint(self, request: Request, match: re.Match[str]) -> Response:
        return Response.json(200, (await self._registry.get(match["id"])).public())

    async def _patch_endpoint(self, request: Request, match: re.Match[str]) -> Response:
        body = _object(request)
        if isinstance(body, Response):
            return body
        unknown = set(body) - {"url", "events", "enabled", "ca_cert", "client_cert", "client_key",
                               *OPTION_NAMES}  # fmt: skip
        if unknown:
            return Response.error(400, "invalid_request", f"cannot change {sorted(unknown)}")
        endpoint = await self._registry.update(match["id"], body)
        return Response.json(200, endpoint.public())

    async def _delete_endpoint(self, request: Request, match: re.Match[str]) -> Response:
        await self._registry.remove(match["id"])
        return Response(204)

    async def _rotate(self, request: Request, match: re.Match[str]) -> Response:
        body = _object(request) if request.body else {}
        if isinstance(body, Response):
            return body
        grace = body.get("grace")
        if grace is not None and (
            isinstance(grace, bool)
            or not isinstance(grace, int | float)
            or not (math.isfinite(grace) and grace >= 0)
        ):
            return Response.error(400, "invalid_request", "grace: seconds, a number >= 0")
        endpoint = await self._registry.rotate_secret(
            match["id"], now_s=self._clock.now_s(), grace_s=grace
        )
        return Response.json(200, endpoint.public())

    async def _show_event(self, request: Request, match: re.Match[str]) -> Response:
        event_id = match["id"]
        found = await self._store.event_record(event_id)
        if found is None:
            return Response.error(404, "not_found", f"no deliveries recorded for {event_id}")
        _, states, attempts = found
        deliveries = [
            {**state, "attempt_log": [a for a in attempts if a["endpoint_id"] == endpoint_id]}
            for endpoint_id, state in sorted(states.items())
        ]
        return Response.json(200, {"event_id": event_id, "deliveries": deliveries})

    async def _replay_event(self, request: Request, match: re.Match[str]) -> Response:
        event_id = match["id"]
        replayed = await replay(self._store, event_id, self._clock.now_s())
        if replayed is None:
            return Response.error(
                404, "not_found", f"{event_id} is not retained (unknown or trimmed from the stream)"
            )
        return Response.json(202, {"event_id": event_id, "replayed": replayed})

    async def _list_dead(self, request: Request, match: re.Match[str]) -> Response:
        try:
            limit = min(1000, max(1, int(request.query.get("limit", "100"))))
        except ValueError:
            return Response.error(400, "invalid_request", "limit must be a whole number")
        letters = await self._store.dead_letters(limit)
        return Response.json(200, [{"id": dead_id, **fields} for dead_id, fields in letters])

    async def _redrive(self, request: Request, match: re.Match[str]) -> Response:
        endpoint_id = request.query.get("endpoint_id")
        count = await redrive(self._store, self._clock.now_s(), endpoint_id=endpoint_id)
        return Response.json(202, {"redriven": count})


def _object(request: Request) -> dict[str, Any] | Response:
    try:
        body = request.json()
    except ValueError as exc:
        return Response.error(400, "invalid_json", f"body is not JSON: {exc}")
    if not isinstance(body, dict):
        return Response.error(400, "invalid_json", "body must be a JSON object")
    return body
