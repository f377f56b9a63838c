"""The admin HTTP API: endpoints, delivery records, dead letters, metrics and health.

Served on ``admin.listen`` by ``httpserve``, the small server the limiter service uses too.
Every ``/v1`` route needs ``Authorization: Bearer <admin.token>`` (the operator) or a
vendor portal token (``portal_tokens``), which sees only its vendor's data: each route
declares its ``Scope`` and ``principals`` decides. With no admin token configured every
``/v1`` call answers 401. ``/metrics``, ``/healthz``, ``/readyz`` and ``/portal/`` are open.
Secrets are shown when an endpoint is made or its secret rotated, and on an explicit
``reveal-secret``, which is logged with the endpoint id; listings never hold them.
"""

from __future__ import annotations

import hmac
import math
import re
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import prometheus_client
import structlog

from httpserve import Request, Response
from webhookd import __version__
from webhookd.catalog import Catalog
from webhookd.clock import EpochClock
from webhookd.errors import EndpointError, EndpointNotFound, StoreError
from webhookd.health import Readiness
from webhookd.openapi import MAX_ROTATION_GRACE_S, document
from webhookd.openapi_vendors import add_vendor_paths
from webhookd.options import NO_OPTIONS, OPTION_NAMES, delivery_options
from webhookd.owners import dead_letter_owner, endpoint_owner, event_owner
from webhookd.portal_assets import PortalAssets
from webhookd.portal_tokens import InvalidPortalToken, is_portal_token, verify
from webhookd.principals import (
    OPERATOR,
    Principal,
    Refusal,
    Scope,
    admit,
    listing_vendor,
    owner_of_new,
)
from webhookd.redrive import dead_letters, redrive, replay
from webhookd.registry import Registry, endpoint_tls
from webhookd.store import Store
from webhookd.vendor_api import VendorApi

log = structlog.get_logger("webhookd.admin")
_NONE: frozenset[str] = frozenset()
_TLS_FIELDS = ("ca_cert", "client_cert", "client_key")

Route = Callable[[Request, re.Match[str], Principal], Awaitable[Response]]
_UNAUTHORIZED = "send Authorization: Bearer <admin.token or a portal token>"
_WHAT = {Scope.ENDPOINT: "endpoint", Scope.EVENT: "event", Scope.DEAD: "dead letter",
         Scope.VENDOR: "vendor"}  # fmt: skip


class AdminApi:
    def __init__(
        self,
        *,
        token: str | None,
        registry: Registry,
        store: Store,
        readiness: Readiness,
        clock: EpochClock,
        vendors: VendorApi | None = None,
    ) -> None:
        self._token = token.encode() if token else None
        self._token_text = token or ""
        self._registry = registry
        self._store = store
        self._readiness = readiness
        self._clock = clock
        self._openapi = document(accepted_patterns(registry.catalog))
        if vendors is not None:
            self._openapi = add_vendor_paths(self._openapi, vendors.plan_names)
        self._open: dict[str, Callable[[], Awaitable[Response]]] = {
            "/healthz": self._health,
            "/readyz": self._ready,
            "/metrics": self._metrics,
            "/openapi.json": self._description,
        }
        # method, path, handler, the query parameters it takes (others answer 400), whose
        endpoint, event, own = Scope.ENDPOINT, Scope.EVENT, Scope.OWN
        self._routes: list[tuple[str, re.Pattern[str], Route, frozenset[str], Scope]] = [
            ("GET", re.compile(r"/v1/endpoints"), self._list_endpoints, frozenset({"vendor"}),
             own),
            ("POST", re.compile(r"/v1/endpoints"), self._create_endpoint, _NONE, own),
            ("GET", re.compile(r"/v1/endpoints/(?P<id>[^/]+)"), self._show_endpoint, _NONE,
             endpoint),
            ("PATCH", re.compile(r"/v1/endpoints/(?P<id>[^/]+)"), self._patch_endpoint, _NONE,
             endpoint),
            ("DELETE", re.compile(r"/v1/endpoints/(?P<id>[^/]+)"), self._delete_endpoint, _NONE,
             endpoint),
            ("POST", re.compile(r"/v1/endpoints/(?P<id>[^/]+)/rotate-secret"), self._rotate, _NONE,
             endpoint),
            ("POST", re.compile(r"/v1/endpoints/(?P<id>[^/]+)/reveal-secret"), self._reveal, _NONE,
             endpoint),
            ("GET", re.compile(r"/v1/events/(?P<id>[^/]+)"), self._show_event, _NONE, event),
            ("POST", re.compile(r"/v1/events/(?P<id>[^/]+)/replay"), self._replay_event, _NONE,
             event),
            ("GET", re.compile(r"/v1/dead"), self._list_dead, frozenset({"limit"}), own),
            ("POST", re.compile(r"/v1/dead/redrive"), self._redrive, frozenset({"endpoint_id"}),
             own),
            *(vendors.routes() if vendors is not None else ()),
        ]  # fmt: skip
        self._portal = PortalAssets()

    async def handle(self, request: Request) -> Response:
        path = request.path
        if path == "/portal" or path.startswith("/portal/"):
            return self._portal.answer(request.method, path)
        open_route = self._open.get(path)
        if open_route is not None:
            if request.method in ("GET", "HEAD"):
                return await open_route()
            return Response.error(405, "method_not_allowed", "use GET", (("allow", "GET"),))
        allowed_methods = set()
        for method, pattern, route, queries, scope in self._routes:
            match = pattern.fullmatch(path)
            if match is None:
                continue
            allowed_methods.add(method)
            if method == request.method:
                principal = self._principal(request)
                if principal is None:
                    return Response.error(
                        401, "unauthorized", _UNAUTHORIZED,
                        (("www-authenticate", 'Bearer realm="webhookd"'),),
                    )  # fmt: skip
                unknown = set(_query(request)) - queries
                if unknown:
                    return Response.error(
                        400, "invalid_request", f"unknown query parameters {sorted(unknown)}"
                    )
                try:
                    await self._admit(principal, scope, match)
                    return await route(request, match, principal)
                except Refusal as refusal:
                    return Response.error(refusal.status, refusal.error, refusal.message)
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

    def scopes(self) -> list[tuple[str, re.Pattern[str], Scope]]:
        """Each route's method, path pattern and scope: what the authorization tests walk."""
        return [(method, pattern, scope) for method, pattern, _, _, scope in self._routes]

    def _principal(self, request: Request) -> Principal | None:
        """The operator for the admin token, a vendor for a valid portal token, else None."""
        if self._token is None:
            return None
        scheme, _, offered = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer":
            return None
        offered = offered.strip()
        if is_portal_token(offered):
            try:
                claims = verify(offered, admin_token=self._token_text, now_s=self._clock.now_s())
            except InvalidPortalToken as exc:
                log.info("admin.portal_token_refused", reason=str(exc))
                return None
            return Principal(claims.vendor)
        if hmac.compare_digest(offered.encode("utf-8", "replace"), self._token):
            return OPERATOR
        return None

    async def _admit(self, principal: Principal, scope: Scope, match: re.Match[str]) -> None:
        """Refusal unless ``principal`` may use what the path names (looked up for vendors
        only: the operator may use everything)."""
        if principal.is_operator or scope in (Scope.OWN, Scope.OPERATOR):
            admit(principal, scope, None)
            return
        names = match.groupdict()
        owner: str | None = None
        if scope is Scope.ENDPOINT:
            owner = await endpoint_owner(self._registry, names["id"])
        elif scope is Scope.EVENT:
            owner = await event_owner(self._store, self._registry, names["id"])
        elif scope is Scope.DEAD:
            owner = await dead_letter_owner(self._store, names["id"])
        elif scope is Scope.VENDOR:
            owner = names["vendor"]
        admit(principal, scope, owner, f"{_WHAT[scope]} {next(iter(names.values()), '')}")

    async def _health(self) -> Response:
        return Response.json(200, {"status": "ok", "version": __version__})

    async def _metrics(self) -> Response:
        return Response(200, prometheus_client.generate_latest(),
                        content_type=prometheus_client.CONTENT_TYPE_LATEST)  # fmt: skip

    async def _description(self) -> Response:
        return Response.json(200, self._openapi)

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

    async def _list_endpoints(
        self, request: Request, match: re.Match[str], principal: Principal
    ) -> Response:
        vendor = _query(request).get("vendor")
        if vendor == "":
            return Response.error(400, "invalid_request", "vendor: a vendor id, not empty")
        vendor = listing_vendor(principal, vendor)
        endpoints = await self._registry.all()
        return Response.json(
            200, [e.public() for e in endpoints if vendor is None or e.vendor == vendor]
        )

    async def _create_endpoint(
        self, request: Request, match: re.Match[str], principal: Principal
    ) -> Response:
        body = _object(request)
        if isinstance(body, Response):
            return body
        vendor, url = body.get("vendor"), body.get("url")
        if vendor is None or isinstance(vendor, str):
            vendor = owner_of_new(principal, vendor)
        if not isinstance(vendor, str) or not isinstance(url, str):
            return Response.error(400, "invalid_request", "vendor and url are required strings")
        events = body.get("events", ["*"])
        secret, signing = body.get("secret"), body.get("signing", "hmac")
        pems = [body.get(name) for name in _TLS_FIELDS]
        if not _strings(events) or not all(
            isinstance(body[name], str)
            for name in ("secret", "signing", *_TLS_FIELDS)
            if name in body
        ):
            return Response.error(
                400, "invalid_request",
                "events: a list of strings; secret, signing, ca_cert, client_cert, client_key: "
                "strings",
            )  # fmt: skip
        endpoint = await self._registry.add(
            vendor, url, events, secret, now_s=self._clock.now_s(), signing=signing,
            tls=endpoint_tls(*pems), options=delivery_options(body, NO_OPTIONS),
        )  # fmt: skip
        return Response.json(201, endpoint.public(secret=True))

    async def _show_endpoint(
        self, request: Request, match: re.Match[str], principal: Principal
    ) -> Response:
        return Response.json(200, (await self._registry.get(match["id"])).public())

    async def _patch_endpoint(
        self, request: Request, match: re.Match[str], principal: Principal
    ) -> Response:
        body = _object(request)
        if isinstance(body, Response):
            return body
        unknown = set(body) - {"url", "events", "enabled", "ca_cert", "client_cert", "client_key",
                               *OPTION_NAMES}  # fmt: skip
        if unknown:
            return Response.error(400, "invalid_request", f"cannot change {sorted(unknown)}")
        if "events" in body and not _strings(body["events"]):
            return Response.error(400, "invalid_request", "events: a list of strings")
        if not all(isinstance(body[name], str) for name in _TLS_FIELDS if name in body):
            return Response.error(
                400, "invalid_request", "ca_cert, client_cert, client_key: PEM strings ('' clears)"
            )
        endpoint = await self._registry.update(match["id"], body)
        return Response.json(200, endpoint.public())

    async def _delete_endpoint(
        self, request: Request, match: re.Match[str], principal: Principal
    ) -> Response:
        await self._registry.remove(match["id"])
        return Response(204)

    async def _rotate(
        self, request: Request, match: re.Match[str], principal: Principal
    ) -> Response:
        body = _object(request) if request.body else {}
        if isinstance(body, Response):
            return body
        if unknown := set(body) - {"grace"}:
            return Response.error(400, "invalid_request", f"unknown fields {sorted(unknown)}")
        grace = body.get("grace")
        if grace is not None and (
            isinstance(grace, bool)
            or not isinstance(grace, int | float)
            or not (math.isfinite(grace) and 0 <= grace <= MAX_ROTATION_GRACE_S)
        ):
            return Response.error(
                400, "invalid_request", f"grace: seconds, from 0 to {MAX_ROTATION_GRACE_S:.0f}"
            )
        endpoint = await self._registry.rotate_secret(
            match["id"], now_s=self._clock.now_s(), grace_s=grace
        )
        return Response.json(200, endpoint.public(secret=True))

    async def _reveal(
        self, request: Request, match: re.Match[str], principal: Principal
    ) -> Response:
        endpoint = await self._registry.get(match["id"])
        log.warning("admin.secret_revealed", endpoint_id=endpoint.id, vendor=endpoint.vendor,
                    by=principal.vendor or "operator")  # fmt: skip
        return Response.json(200, endpoint.public(secret=True))

    async def _show_event(
        self, request: Request, match: re.Match[str], principal: Principal
    ) -> Response:
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

    async def _replay_event(
        self, request: Request, match: re.Match[str], principal: Principal
    ) -> Response:
        event_id = match["id"]
        replayed = await replay(self._store, event_id, self._clock.now_s())
        if replayed is None:
            return Response.error(
                404, "not_found", f"{event_id} is not retained (unknown or trimmed from the stream)"
            )
        return Response.json(202, {"event_id": event_id, "replayed": replayed})

    async def _list_dead(
        self, request: Request, match: re.Match[str], principal: Principal
    ) -> Response:
        try:
            limit = int(_query(request).get("limit", "100"))
        except ValueError:
            limit = 0
        if not 1 <= limit <= 1000:
            return Response.error(400, "invalid_request", "limit: a whole number from 1 to 1000")
        letters = await dead_letters(self._store, limit, vendor=listing_vendor(principal, None))
        return Response.json(200, [{"id": dead_id, **fields} for dead_id, fields in letters])

    async def _redrive(
        self, request: Request, match: re.Match[str], principal: Principal
    ) -> Response:
        endpoint_id = _query(request).get("endpoint_id")
        if endpoint_id == "":
            return Response.error(400, "invalid_request", "endpoint_id: an endpoint id, not empty")
        vendor = listing_vendor(principal, None)
        if vendor is not None and endpoint_id is not None:
            owner = await endpoint_owner(self._registry, endpoint_id)
            admit(principal, Scope.ENDPOINT, owner, f"endpoint {endpoint_id}")
        count = await redrive(
            self._store, self._clock.now_s(), endpoint_id=endpoint_id, vendor=vendor
        )
        return Response.json(202, {"redriven": count})


def _object(request: Request) -> dict[str, Any] | Response:
    try:
        body = request.json()
    except ValueError as exc:
        return Response.error(400, "invalid_json", f"body is not JSON: {exc}")
    except RecursionError:
        return Response.error(400, "invalid_json", "body is nested too deeply")
    if not isinstance(body, dict):
        return Response.error(400, "invalid_json", "body must be a JSON object")
    return body


def _query(request: Request) -> dict[str, str]:
    """The query parameters, also those with an empty value (``request.query`` drops them):
    ``?limit=`` is a bad limit, not the default one."""
    return dict(parse_qsl(urlsplit(request.target).query, keep_blank_values=True))


def _strings(value: Any) -> bool:
    """A JSON list of strings: what ``events`` takes."""
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def accepted_patterns(catalog: Catalog) -> list[str]:
    """Every subscription pattern the catalog accepts: ``*``, each type, each ``prefix.*``."""
    patterns = {"*", *catalog.types}
    for event_type in catalog.types:
        parts = event_type.split(".")
        patterns.update(".".join(parts[:n]) + ".*" for n in range(1, len(parts)))
    return sorted(patterns)
