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

import math
import re
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import prometheus_client
import structlog

from httpserve import Request, Response
from webhookd import __version__, history
from webhookd.access import Access
from webhookd.catalog import Catalog
from webhookd.clock import EpochClock
from webhookd.deadletters import (
    DeadFilter,
    dead_page,
    purge_letters,
    redrive_letters,
    valid_id,
)
from webhookd.errors import EndpointError, EndpointNotFound, InvalidEventError, StoreError
from webhookd.events import format_timestamp, parse_timestamp
from webhookd.health import Readiness
from webhookd.openapi import MAX_ROTATION_GRACE_S, document
from webhookd.openapi_vendors import add_vendor_paths
from webhookd.options import NO_OPTIONS, OPTION_NAMES, delivery_options
from webhookd.portal_assets import PortalAssets
from webhookd.principals import Principal, Refusal, Scope, listing_vendor, owner_of_new
from webhookd.probe import send_test_event
from webhookd.records import event_deliveries
from webhookd.redrive import recover, replay
from webhookd.registry import Registry, endpoint_tls
from webhookd.sender import Sender
from webhookd.status import status_report
from webhookd.store import Store
from webhookd.vendor_api import VendorApi

log = structlog.get_logger("webhookd.admin")
_NONE: frozenset[str] = frozenset()
_TLS_FIELDS = ("ca_cert", "client_cert", "client_key")
_HISTORY_QUERY = frozenset({"endpoint_id", "vendor", "outcome", "cursor", "limit"})
MAX_STATS_MINUTES = 120  # the per-minute figures are kept for two hours
_FILTERS = frozenset({"endpoint_id", "vendor"})
MAX_DEAD_IDS = 1000  # ids one redrive or purge call may name

Route = Callable[[Request, re.Match[str], Principal], Awaitable[Response]]
_UNAUTHORIZED = "send Authorization: Bearer <admin.token or a portal token>"


class AdminApi:
    def __init__(
        self,
        *,
        token: str | None,
        registry: Registry,
        store: Store,
        readiness: Readiness,
        clock: EpochClock,
        sender: Sender | None = None,
        vendors: VendorApi | None = None,
    ) -> None:
        self._access = Access(token=token, registry=registry, store=store, clock=clock)
        self._registry = registry
        self._store = store
        self._readiness = readiness
        self._clock = clock
        self._sender = sender  # for endpoint tests; None: they answer 503
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
        endpoint, event, dead = Scope.ENDPOINT, Scope.EVENT, Scope.DEAD
        own, operator = Scope.OWN, Scope.OPERATOR
        one = r"/(?P<id>[^/]+)"
        self._routes: list[tuple[str, re.Pattern[str], Route, frozenset[str], Scope]] = [
            ("GET", re.compile(r"/v1/endpoints"), self._list_endpoints, frozenset({"vendor"}), own),
            ("POST", re.compile(r"/v1/endpoints"), self._create_endpoint, _NONE, own),
            ("GET", re.compile(r"/v1/endpoints" + one), self._show_endpoint, _NONE, endpoint),
            ("PATCH", re.compile(r"/v1/endpoints" + one), self._patch_endpoint, _NONE, endpoint),
            ("DELETE", re.compile(r"/v1/endpoints" + one), self._delete_endpoint, _NONE, endpoint),
            ("POST", re.compile(r"/v1/endpoints" + one + "/rotate-secret"), self._rotate, _NONE,
             endpoint),
            ("POST", re.compile(r"/v1/endpoints" + one + "/reveal-secret"), self._reveal, _NONE,
             endpoint),
            ("POST", re.compile(r"/v1/endpoints" + one + "/recover"), self._recover, _NONE,
             endpoint),
            ("GET", re.compile(r"/v1/deliveries"), self._deliveries, _HISTORY_QUERY, own),
            ("GET", re.compile(r"/v1/stats"), self._stats, frozenset({"minutes"}), operator),
            ("POST", re.compile(r"/v1/endpoints" + one + "/test"), self._test_endpoint, _NONE,
             endpoint),
            ("GET", re.compile(r"/v1/events" + one), self._show_event, _NONE, event),
            ("POST", re.compile(r"/v1/events" + one + "/replay"), self._replay_event, _NONE,
             event),
            ("GET", re.compile(r"/v1/dead"), self._list_dead,
             frozenset({"limit", "cursor", *_FILTERS}), own),
            ("GET", re.compile(r"/v1/dead" + one), self._show_dead, _NONE, dead),
            ("POST", re.compile(r"/v1/dead/redrive"), self._redrive, _FILTERS, own),
            ("POST", re.compile(r"/v1/dead/purge"), self._purge, _NONE, operator),
            ("GET", re.compile(r"/v1/status"), self._status, _NONE, operator),
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
                principal = self._access.principal(request)
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
                    await self._access.admit(principal, scope, match)
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
        unknown = set(body) - {"vendor", "url", "events", "secret", "signing", *_TLS_FIELDS,
                               *OPTION_NAMES}  # fmt: skip
        if unknown:
            return Response.error(400, "invalid_request", f"unknown fields {sorted(unknown)}")
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

    async def _recover(
        self, request: Request, match: re.Match[str], principal: Principal
    ) -> Response:
        body = _object(request) if request.body else {}
        if isinstance(body, Response):
            return body
        unknown = set(body) - {"since"}
        if unknown:
            return Response.error(400, "invalid_request", f"unknown fields {sorted(unknown)}")
        since = body.get("since")
        since_s = None
        if since is not None:
            try:
                since_s = parse_timestamp(since) if isinstance(since, str) else None
            except InvalidEventError:
                since_s = None
            if since_s is None:
                return Response.error(400, "invalid_request", "since: an RFC 3339 timestamp")
        await self._registry.get(match["id"])  # 404 for an unknown endpoint
        recovered = await recover(self._store, match["id"], self._clock.now_s(),
                                  retention_s=self._store.retention_s, since_s=since_s)  # fmt: skip
        log.info("endpoint.recovered", endpoint_id=match["id"], held=recovered.held,
                 redriven=recovered.redriven)  # fmt: skip
        return Response.json(202, {"recovered": recovered.total, "held": recovered.held,
                                   "redriven": recovered.redriven})  # fmt: skip

    async def _deliveries(
        self, request: Request, match: re.Match[str], principal: Principal
    ) -> Response:
        query = _query(request)
        limit = _limit(query)
        if isinstance(limit, Response):
            return limit
        outcome = query.get("outcome")
        if outcome is not None and outcome not in history.OUTCOMES:
            return Response.error(
                400, "invalid_request", f"outcome: one of {', '.join(history.OUTCOMES)}"
            )
        vendor = listing_vendor(principal, query.get("vendor") or None)
        which = history.Filter(query.get("endpoint_id") or None, vendor, outcome)
        try:
            items, cursor = await history.page(self._store, which, limit=limit,
                                               cursor=query.get("cursor"))  # fmt: skip
        except ValueError as exc:
            return Response.error(400, "invalid_request", f"cursor: {exc}")
        headers = () if cursor is None else (("x-next-cursor", cursor),)
        return Response.json(200, items, headers)

    async def _stats(
        self, request: Request, match: re.Match[str], principal: Principal
    ) -> Response:
        text = _query(request).get("minutes", "60")
        if not (text.isascii() and text.isdigit() and 1 <= int(text) <= MAX_STATS_MINUTES):
            return Response.error(
                400, "invalid_request", f"minutes: a whole number from 1 to {MAX_STATS_MINUTES}"
            )
        last = int(self._clock.now_s() // 60)
        minutes = await self._store.minutes(last - int(text) + 1, last)
        return Response.json(200, [
            {"at": format_timestamp(minute * 60), "delivered": int(delivered),
             "failed": int(failed),
             "latency_ms_avg": round(latency / delivered, 3) if delivered else None}
            for minute, (delivered, failed, latency) in sorted(minutes.items())
        ])  # fmt: skip

    async def _test_endpoint(
        self, request: Request, match: re.Match[str], principal: Principal
    ) -> Response:
        endpoint = await self._registry.get(match["id"])
        if self._sender is None:
            return Response.error(503, "unavailable", "this process sends no deliveries")
        answer = await send_test_event(self._sender, endpoint, self._clock.now_s())
        log.info("admin.endpoint_tested", endpoint_id=endpoint.id, status=answer["status"],
                 error=answer["error"])  # fmt: skip
        return Response.json(200, answer)

    async def _show_event(
        self, request: Request, match: re.Match[str], principal: Principal
    ) -> Response:
        event_id = match["id"]
        found = await event_deliveries(self._store, event_id)
        if found is None:
            return Response.error(404, "not_found", f"no deliveries recorded for {event_id}")
        return Response.json(200, found)

    async def _replay_event(
        self, request: Request, match: re.Match[str], principal: Principal
    ) -> Response:
        event_id = match["id"]
        replayed = await replay(
            self._store, event_id, self._clock.now_s(), self._registry.subscribed
        )
        if replayed is None:
            return Response.error(
                404, "not_found", f"{event_id} is not retained (unknown or trimmed from the stream)"
            )
        return Response.json(202, {"event_id": event_id, "replayed": replayed})

    async def _list_dead(
        self, request: Request, match: re.Match[str], principal: Principal
    ) -> Response:
        """Newest first; the next page's cursor in ``X-Next-Cursor`` (absent on the last)."""
        query = _query(request)
        limit = _limit(query)
        if isinstance(limit, Response):
            return limit
        cursor = query.get("cursor")
        if cursor is not None and not valid_id(cursor):
            return Response.error(400, "invalid_request", "cursor: an X-Next-Cursor value")
        selection = _filter(query)
        if isinstance(selection, Response):
            return selection
        selection = _scoped(selection, principal)
        page = await dead_page(self._store, limit, cursor, selection)
        headers = () if page.next_cursor is None else (("x-next-cursor", page.next_cursor),)
        letters = [{"id": dead_id, **fields} for dead_id, fields in page.letters]
        return Response.json(200, letters, headers)

    async def _show_dead(
        self, request: Request, match: re.Match[str], principal: Principal
    ) -> Response:
        dead_id = match["id"]
        fields = None
        if valid_id(dead_id):
            [(_, fields)] = await self._store.dead_letters_by_id([dead_id])
        if fields is None:
            return Response.error(404, "not_found", f"no dead letter {dead_id}")
        return Response.json(200, {"id": dead_id, **fields})

    async def _redrive(
        self, request: Request, match: re.Match[str], principal: Principal
    ) -> Response:
        """By ``ids`` and/or filters in the body or (filters) the query; all by default."""
        chosen = _dead_selection(request, with_query=True)
        if isinstance(chosen, Response):
            return chosen
        ids, selection, _ = chosen
        if selection is None:
            return Response.json(202, {"redriven": 0, "skipped": 0, "reasons": {}})
        selection = _scoped(selection, principal)
        answer = await redrive_letters(
            self._store, self._clock.now_s(), ids=ids, selection=selection
        )
        log.info("admin.dead_redriven", redriven=answer.redriven, skipped=answer.skipped)
        return Response.json(202, answer.to_json())

    async def _purge(
        self, request: Request, match: re.Match[str], principal: Principal
    ) -> Response:
        """By ``ids`` and/or filters; every letter only with ``{"all": true}``."""
        chosen = _dead_selection(request, with_query=False)
        if isinstance(chosen, Response):
            return chosen
        ids, selection, everything = chosen
        assert selection is not None  # only query and body filters can disagree
        if ids is None and selection.empty and not everything:
            return Response.error(
                400, "invalid_request",
                'say which letters to purge: "ids", "endpoint_id", "vendor", or "all": true',
            )  # fmt: skip
        purged = await purge_letters(self._store, ids=ids, selection=selection,
                                     everything=everything)  # fmt: skip
        log.info("admin.dead_purged", purged=purged)
        return Response.json(200, {"purged": purged})

    async def _status(
        self, request: Request, match: re.Match[str], principal: Principal
    ) -> Response:
        return Response.json(200, await status_report(self._store, self._registry))


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


def _scoped(selection: DeadFilter, principal: Principal) -> DeadFilter:
    """The dead-letter filter narrowed to a vendor's own letters (403 for another's)."""
    return DeadFilter(selection.endpoint_id, listing_vendor(principal, selection.vendor))


def _limit(query: dict[str, str]) -> int | Response:
    """The ``limit`` asked for (100 when none), or the 400 when it is not 1 to 1000."""
    text = query.get("limit", "100")
    if text.isascii() and text.isdigit() and 1 <= int(text) <= 1000:
        return int(text)
    return Response.error(400, "invalid_request", "limit: a whole number from 1 to 1000")


def _filter(values: dict[str, Any]) -> DeadFilter | Response:
    """The dead-letter filter in query parameters or a body: non-empty strings."""
    for name in _FILTERS:
        if name in values and (not isinstance(values[name], str) or values[name] == ""):
            return Response.error(400, "invalid_request", f"{name}: a non-empty string")
    return DeadFilter(values.get("endpoint_id"), values.get("vendor"))


def _dead_selection(
    request: Request, *, with_query: bool
) -> tuple[list[str] | None, DeadFilter | None, bool] | Response:
    """(ids, filter, all) of a redrive or purge body; the filter is None when the query's
    and the body's disagree (nothing can match both)."""
    body = _object(request) if request.body else {}
    if isinstance(body, Response):
        return body
    known = {"ids", *_FILTERS} if with_query else {"ids", "all", *_FILTERS}
    if unknown := set(body) - known:
        return Response.error(400, "invalid_request", f"unknown fields {sorted(unknown)}")
    ids: list[str] | None = body.get("ids")
    if "ids" in body and not (
        isinstance(ids, list)
        and _strings(ids)
        and 1 <= len(ids) <= MAX_DEAD_IDS
        and all(map(valid_id, ids))
    ):
        return Response.error(
            400, "invalid_request", f"ids: 1 to {MAX_DEAD_IDS} dead-letter ids (<ms>-<seq>)"
        )
    everything = body.get("all", False)
    if not isinstance(everything, bool):
        return Response.error(400, "invalid_request", "all: true or false")
    from_body = _filter(body)
    if isinstance(from_body, Response):
        return from_body
    if not with_query:
        return ids, from_body, everything
    from_query = _filter(dict(_query(request)))
    if isinstance(from_query, Response):
        return from_query
    endpoint_ids = {f.endpoint_id for f in (from_body, from_query)} - {None}
    vendors = {f.vendor for f in (from_body, from_query)} - {None}
    if len(endpoint_ids) > 1 or len(vendors) > 1:
        return ids, None, everything
    selection = DeadFilter(next(iter(endpoint_ids), None), next(iter(vendors), None))
    return ids, selection, everything


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
