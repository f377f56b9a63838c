"""The limiter service: ``POST /v1/check``, ``GET /v1/auth`` and the operational routes.

A request becomes a hit (key, plan, route, ad-hoc limits, cost), the hit a decision
of the ``AsyncLimiter``, the decision an answer carrying its header fields. Concurrent
requests share Redis round trips: each one is a task of the HTTP server and the
limiter's coalescer sends the checks of all of them that are waiting as one script
call (see ``batcher.py``).

A request spends at most ``service.redis_timeout`` on Redis. The limiter bounds each
round trip by half of it and a check waits for at most two (the one in flight, then its
own), so a decision needs no cancel scope of its own; an API-key look-up has no bound
of its own, so it and the decision that follows run under one scope of the timeout.
When Redis fails or does not answer in time, ``service.failure_mode`` decides: ``open``
allows the request, ``closed`` answers 503; both say so in ``X-RateLimit-Failure-Mode``
and in the ``ratelimiter_decisions_total`` metric, and carry the header fields of the
limits the hit was checked against.

``/v1/auth`` takes the credential from an ``mk_live_`` bearer token: an API key, looked
up, counted under its vendor (``vendors.quota_key``) against the vendor's plan, and
against the key's own plan too when it has one. Only with ``service.trust_key_header``
(raw-key mode, for a gateway that sets the header itself) does a request without an API
key count under its ``X-RateLimit-Key``. Anything else, a made-up token included,
answers 401 with a ``WWW-Authenticate`` challenge: no credential gets a quota of its
own by being presented. Keys named by callers (``/v1/check``, ``X-RateLimit-Key``) are
counted under ``raw:<key>``, a namespace no API key or vendor quota lives in.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from functools import partial
from typing import Any, NamedTuple

import prometheus_client
import structlog
import trio

from httpserve import Limits, Request, Response, serve_listeners
from ratelimiter.async_limiter import AsyncLimiter
from ratelimiter.async_redis import AsyncRedisBackend, AsyncRedisClient
from ratelimiter.config import ServiceSettings, Settings
from ratelimiter.decision import Decision, decide
from ratelimiter.embedded import embedded_url
from ratelimiter.errors import BackendError, InvalidLimit, InvalidRequest
from ratelimiter.keys import KEY_PREFIX, Credential, KeyStore, id_of, key_limits
from ratelimiter.limit import Limit, parse_limit
from ratelimiter.metrics import DECISIONS, LATENCY, REDIS_ERRORS
from ratelimiter.openapi import (
    LIMIT_PATTERN,
    MAX_COST,
    MAX_KEY_CHARS,
    MAX_LIMITS,
    MAX_ROUTE_CHARS,
    openapi_document,
)
from ratelimiter.policy import Policy
from ratelimiter.vendors import quota_key

log = structlog.get_logger("ratelimiter.service")

RAW_NAMESPACE = "raw:"
FAILURE_HEADER = "X-RateLimit-Failure-Mode"
_CHECK_FIELDS = ("key", "plan", "route", "limits", "cost")
_OPERATIONAL = ("/metrics", "/healthz", "/openapi.json")
Headers = tuple[tuple[str, str], ...]


class Hit(NamedTuple):
    key: str
    plan: str | None
    route: str | None
    limits: tuple[str | Limit, ...]
    cost: int


class BadRequest(Exception):
    """A request that cannot be evaluated; answered 400 naming ``field``."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field

    def response(self) -> Response:
        body = {"error": "invalid_request", "field": self.field, "message": str(self)}
        return Response.json(400, body)


class Unauthorized(Exception):
    """No credential the service accepts; answered 401 with a ``Bearer`` challenge.

    ``invalid`` is true when a credential was sent and is no good (RFC 6750's
    ``invalid_token``), false when none was.
    """

    def __init__(self, message: str, *, invalid: bool) -> None:
        super().__init__(message)
        self.invalid = invalid

    def response(self) -> Response:
        return _unauthorized(str(self), invalid=self.invalid)


class Service:
    """The request handler; ``handle`` is what the HTTP server calls."""

    def __init__(
        self,
        settings: ServiceSettings,
        limiter: AsyncLimiter,
        *,
        keys: KeyStore | None = None,
        redis: AsyncRedisClient | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._settings = settings
        self._limiter = limiter
        self._keys = keys
        self._redis = redis
        self._clock = clock
        self._timeout_s = settings.redis_timeout_s
        self._store_ok = True
        self._counters: dict[tuple[str, str | None], Any] = {}
        self._latency = {endpoint: LATENCY.labels(endpoint) for endpoint in ("check", "auth")}
        document = openapi_document(sorted(limiter.policy.plans), deny_status=settings.deny_status,
                                    trust_key_header=settings.trust_key_header)  # fmt: skip
        self._openapi = Response.json(200, document)

    async def handle(self, request: Request) -> Response:
        path = request.path
        try:
            if path == "/v1/auth" or path.startswith("/v1/auth/"):
                return await self._auth(request)
            if path == "/v1/check":
                if request.method != "POST":
                    allow = (("allow", "POST"),)
                    return Response.error(405, "method_not_allowed", "use POST", allow)
                return await self._check(request)
        except BadRequest as bad:
            return bad.response()
        except Unauthorized as refused:
            self._count("unauthorized", None)
            return refused.response()
        if path in _OPERATIONAL and request.method not in ("GET", "HEAD"):
            return Response.error(405, "method_not_allowed", "use GET", (("allow", "GET"),))
        if path == "/metrics":
            return Response(200, prometheus_client.generate_latest(),
                            content_type=prometheus_client.CONTENT_TYPE_LATEST)  # fmt: skip
        if path == "/healthz":
            return await self._health()
        if path == "/openapi.json":
            return self._openapi
        return Response.error(404, "not_found", f"no route for {path}")

    async def _check(self, request: Request) -> Response:
        started = time.perf_counter()
        hit = self.check_hit(_json(request))
        decision = await self._decide(hit)
        if decision is None:
            response = self._failure(hit, body=True)
        else:
            self._count("allowed" if decision.allowed else "refused", hit.plan)
            response = Response.json(200, decision.as_dict(), _headers(decision))
        self._latency["check"].observe(time.perf_counter() - started)
        return response

    async def _auth(self, request: Request) -> Response:
        started = time.perf_counter()
        hit, api_key = self.auth_hit(request)
        if api_key is None:
            decision = await self._decide(hit)
        else:
            hit, decision, refusal = await self._decide_for_key(hit, api_key)
            if refusal is not None:
                return refusal
        if decision is None:
            response = self._failure(hit, body=False)
        elif decision.allowed:
            self._count("allowed", hit.plan)
            response = Response.json(200, decision.as_dict(), _headers(decision))
        else:
            self._count("refused", hit.plan)
            deny = self._settings.deny_status
            response = Response.json(deny, decision.error_body(), _headers(decision))
        self._latency["auth"].observe(time.perf_counter() - started)
        return response

    async def _decide_for_key(
        self, hit: Hit, api_key: str
    ) -> tuple[Hit, Decision | None, Response | None]:
        """The hit of the key's vendor and its decision, or the 401 for a key that is no good.

        The look-up gives up after half of ``service.redis_timeout`` (and then answers
        from its cache when it can: a key known to be no good stays refused while Redis
        hangs), the decision after the rest; both go under one scope of the timeout.
        """
        operation = "key_lookup"
        with trio.move_on_after(self._timeout_s):
            try:
                record = None if self._keys is None else await self._keys.lookup(api_key)
            except BackendError as error:
                self._store_failed(operation, str(error))
                return hit, None, None
            if record is None or record.key.revoked is not None:
                self._count("unauthorized", None)
                if record is not None:
                    return hit, None, _unauthorized(f"API key {record.key.id} was revoked")
                unknown = f"unknown API key {id_of(api_key)}"
                if self._keys is None:
                    unknown += " (API keys live in Redis, and redis.url is memory://)"
                return hit, None, _unauthorized(unknown)
            hit = self._key_hit(hit, record)
            operation = "decide"
            return hit, await self._decide(hit), None
        self._store_failed(operation, f"no answer within {self._timeout_s} s")
        return hit, None, None

    def _key_hit(self, hit: Hit, credential: Credential) -> Hit:
        """Counted under the vendor, on the vendor's plan (else the default plan), and on
        the key's own plan when it has one; a plan the plans file lost is left out."""
        plans = self._limiter.policy.plans
        plan = credential.vendor_plan
        if plan not in plans:
            plan = self._settings.default_plan
        record = credential.key
        own: tuple[Limit, ...] = ()
        if record.plan is not None and record.plan in plans:
            own = key_limits(plans[record.plan], record.id)
        return hit._replace(key=quota_key(record.vendor), plan=plan, limits=own)

    def check_hit(self, body: Any) -> Hit:
        """The hit a ``/v1/check`` body asks for; ``BadRequest`` names the bad field."""
        if not isinstance(body, dict):
            raise BadRequest("body", 'expected a JSON object such as {"key": "vendor:v_1"}')
        for field in body:
            if field not in _CHECK_FIELDS:
                raise BadRequest(field, f"unknown field (known: {', '.join(_CHECK_FIELDS)})")
        key = _key(body.get("key"), "key")
        plan, route, limits = body.get("plan"), body.get("route"), body.get("limits")
        if plan is not None and not isinstance(plan, str):
            raise BadRequest("plan", "expected a plan name")
        if route is not None and (not isinstance(route, str) or len(route) > MAX_ROUTE_CHARS):
            raise BadRequest(
                "route", f'expected "METHOD /path", {MAX_ROUTE_CHARS} characters at most'
            )
        if limits is None:
            limits = []
        if not isinstance(limits, list) or not all(isinstance(x, str) for x in limits):
            raise BadRequest("limits", 'expected a list of limit expressions such as ["50/m"]')
        if len(limits) > MAX_LIMITS:
            raise BadRequest("limits", f"at most {MAX_LIMITS} limits per request")
        for expression in limits:
            if _LIMIT.fullmatch(expression) is None:
                raise BadRequest("limits", f"bad limit expression {expression!r}: expected "
                                 "<N>/<unit>, N from 1 to 99999999, unit one of s, m, h, d, "
                                 "second, minute, hour, day")  # fmt: skip
            try:
                parse_limit(expression)
            except InvalidLimit as error:
                raise BadRequest("limits", str(error)) from None
        if plan is None and not limits:
            plan = self._settings.default_plan
        cost = body.get("cost", 1)
        if type(cost) is float and cost.is_integer():  # JSON Schema's integers include 2.0
            cost = int(cost)
        if type(cost) is not int or not 1 <= cost <= MAX_COST:
            raise BadRequest("cost", f"expected a whole number from 1 to {MAX_COST}")
        plan = self._known_plan(plan, "plan")
        return Hit(RAW_NAMESPACE + key, plan, route, tuple(limits), cost)

    def auth_hit(self, request: Request) -> tuple[Hit, str | None]:
        """The hit a ``/v1/auth`` request asks for, and its API key if it brings one.

        ``Unauthorized`` when it brings neither an API key nor, in raw-key mode, an
        ``X-RateLimit-Key``.
        """
        headers = request.headers
        scheme, _, token = headers.get("authorization", "").strip().partition(" ")
        token = token.strip() if scheme.lower() == "bearer" else ""
        method = headers.get("x-original-method") or headers.get("x-forwarded-method")
        uri = headers.get("x-original-uri") or headers.get("x-forwarded-uri")
        route = None
        if method and uri:
            route = f"{method} {uri}"
        elif request.path != "/v1/auth":  # Envoy's path_prefix: /v1/auth/<original path>
            route = f"{request.method} {request.path.removeprefix('/v1/auth')}"
        plan = self._settings.default_plan
        raw = None
        if self._settings.trust_key_header:  # checked even when an API key then wins
            if headers.get("x-ratelimit-plan"):
                plan = self._known_plan(headers["x-ratelimit-plan"], "X-RateLimit-Plan") or plan
            if headers.get("x-ratelimit-key"):
                raw = _key(headers["x-ratelimit-key"], "X-RateLimit-Key")
        if token.startswith(KEY_PREFIX):
            return Hit(f"apikey:{id_of(token)}", self._settings.default_plan, route, (), 1), token
        if raw is not None:
            return Hit(RAW_NAMESPACE + raw, plan, route, (), 1), None
        if scheme:
            raise Unauthorized("not an API key: send Authorization: Bearer mk_live_...",
                               invalid=True)  # fmt: skip
        raise Unauthorized("no API key: send Authorization: Bearer mk_live_...", invalid=False)

    def _known_plan(self, plan: str | None, field: str) -> str | None:
        if plan is not None and plan not in self._limiter.policy.plans:
            known = ", ".join(sorted(self._limiter.policy.plans))
            raise BadRequest(field, f"unknown plan {plan!r} (known plans: {known})")
        return plan

    async def _decide(self, hit: Hit) -> Decision | None:
        """The limiter's decision, or None when Redis failed or did not answer in time.

        No cancel scope here: the limiter bounds each round trip by half of
        ``service.redis_timeout``, and a hit waits for at most two of them.
        """
        try:
            decision = await self._limiter.hit(
                hit.key, *hit.limits, plan=hit.plan, route=hit.route, cost=hit.cost
            )
        except BackendError as error:
            self._store_failed("decide", str(error))
            return None
        except InvalidRequest as error:  # validated before; kept from becoming a 500
            raise BadRequest("body", str(error)) from None
        if not self._store_ok:
            self._store_ok = True
            log.info("ratelimiter.redis_recovered")
        return decision

    def _store_failed(self, operation: str, reason: str) -> None:
        REDIS_ERRORS.labels(operation).inc()
        if self._store_ok:  # logged when it starts failing, not once per request
            self._store_ok = False
            log.warning("ratelimiter.redis_failed", operation=operation, reason=reason,
                        failure_mode=self._settings.failure_mode)  # fmt: skip

    def _failure(self, hit: Hit, *, body: bool) -> Response:
        """The answer when no decision could be taken: ``failure_mode`` decides."""
        allow = self._settings.failure_mode == "open"
        self._count("failed_open" if allow else "failed_closed", hit.plan)
        limits = self._limiter.policy.limits_for(hit.limits, hit.plan, hit.route)
        now_ms = round(self._clock() * 1000)
        states = [(limit.amount if allow else 0, now_ms, 0 if allow else 1000) for limit in limits]
        decision = decide(limits, states, allow, now_ms)
        headers = (*_headers(decision), (FAILURE_HEADER, self._settings.failure_mode))
        if not allow:
            message = "the rate limiter's store is unavailable; failure_mode is closed"
            return Response.error(503, "unavailable", message, headers)
        answer = {**decision.as_dict(), "failure_mode": "open"} if body else decision.as_dict()
        return Response.json(200, answer, headers)

    async def _health(self) -> Response:
        if self._redis is None:
            return Response.json(200, {"status": "ok", "store": "memory"})
        with trio.move_on_after(self._timeout_s):
            try:
                await self._redis.ping()
            except Exception as error:  # any failure of the store is "unavailable"
                REDIS_ERRORS.labels("ping").inc()
                log.debug("ratelimiter.ping_failed", reason=str(error))
            else:
                return Response.json(200, {"status": "ok", "store": "redis"})
        status = 200 if self._settings.failure_mode == "open" else 503
        return Response.json(status, {"status": "degraded", "store": "redis unavailable",
                                      "failure_mode": self._settings.failure_mode})  # fmt: skip

    def _count(self, outcome: str, plan: str | None) -> None:
        counter = self._counters.get((outcome, plan))
        if counter is None:  # labels() costs more than the count itself: looked up once
            counter = self._counters[(outcome, plan)] = DECISIONS.labels(outcome, plan or "none")
        counter.inc()


def _json(request: Request) -> Any:
    try:
        return request.json()
    except (ValueError, RecursionError) as error:  # RecursionError: "[[[[..." nested deep
        raise BadRequest("body", f"not valid JSON: {error}") from None


_LIMIT = re.compile(LIMIT_PATTERN)


def _key(value: Any, field: str) -> str:
    if not isinstance(value, str) or not value:
        raise BadRequest(field, "required: a non-empty string")
    if len(value) > MAX_KEY_CHARS:
        raise BadRequest(field, f"longer than {MAX_KEY_CHARS} characters")
    try:  # a lone surrogate ("\ud800" in JSON) cannot name a Redis key
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise BadRequest(field, "not valid Unicode text") from None
    return value


def _headers(decision: Decision) -> Headers:
    return tuple(decision.headers().items())


def _unauthorized(message: str, *, invalid: bool = True) -> Response:
    """401 with the RFC 6750 challenge; ``invalid_token`` when a credential was sent."""
    challenge = 'Bearer realm="ratelimiter"'
    if invalid:
        challenge += ', error="invalid_token"'
    error = "invalid_api_key" if invalid else "missing_api_key"
    return Response.error(401, error, message, (("www-authenticate", challenge),))


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
    timeout_s = settings.service.redis_timeout_s
    async with AsyncLimiter.from_url(
        settings.redis_url,
        plans=policy,
        prefix=settings.key_prefix,
        timeout_s=timeout_s / 2,
    ) as limiter:
        backend = limiter.backend
        client = backend.client if isinstance(backend, AsyncRedisBackend) else None
        keys = None
        if client is not None:
            ttl_s = settings.service.key_cache_ttl_s
            keys = KeyStore(client, prefix=settings.key_prefix, cache_ttl_s=ttl_s,
                            timeout_s=timeout_s / 2)  # fmt: skip
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
