"""Requests as typed values: a ``/v1/check`` body or ``/v1/auth`` headers in, a ``Hit``
out, or an exception naming what is wrong with them.

Pure: nothing here waits, reads a clock or touches Redis. ``RequestRules`` holds what
parsing needs to know of the running service (its plans, its default plan, whether it
trusts ``X-RateLimit-Key``). ``BadRequest`` names the field at fault (answered 400);
``Unauthorized`` is a request with no credential the service accepts (answered 401).

Keys named by callers (``/v1/check``'s ``key``, ``X-RateLimit-Key``) are counted under
``raw:<key>``, a namespace no API key or vendor quota lives in. An ``mk_live_`` bearer
token is an API key, to be looked up; its hit carries the placeholder key
``API_KEY_PENDING`` (never counted) until the look-up gives the vendor: then it is
counted under the vendor (``vendors.quota_key``) against the vendor's plan, and against
the key's own plan too when it has one.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from httpserve import Request
from ratelimiter.errors import InvalidLimit
from ratelimiter.keys import KEY_PREFIX, Credential, key_limits
from ratelimiter.limit import Limit, parse_limit
from ratelimiter.openapi import LIMIT_PATTERN, MAX_COST, MAX_KEY_CHARS, MAX_LIMITS, MAX_ROUTE_CHARS
from ratelimiter.policy import Plan
from ratelimiter.vendors import quota_key

RAW_NAMESPACE = "raw:"
API_KEY_PENDING = "apikey:"  # the key of an API key's hit before its look-up
CHECK_FIELDS = ("key", "plan", "route", "limits", "cost")
_LIMIT = re.compile(LIMIT_PATTERN)


class Hit(NamedTuple):
    """What one request asks the limiter: ``limiter.hit(key, *limits, plan, route, cost)``."""

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


class Unauthorized(Exception):
    """No credential the service accepts; answered 401 with a ``Bearer`` challenge.

    ``invalid`` is true when a credential was sent and is no good (RFC 6750's
    ``invalid_token``), false when none was.
    """

    def __init__(self, message: str, *, invalid: bool) -> None:
        super().__init__(message)
        self.invalid = invalid


@dataclass(frozen=True, slots=True)
class RequestRules:
    """What parsing a request needs to know of the service."""

    plans: Mapping[str, Plan]
    default_plan: str
    trust_key_header: bool = False  # raw-key mode: X-RateLimit-Key from a trusted gateway

    def check_hit(self, body: Any) -> Hit:
        """The hit a ``/v1/check`` body asks for; ``BadRequest`` names the bad field."""
        if not isinstance(body, dict):
            raise BadRequest("body", 'expected a JSON object such as {"key": "vendor:v_1"}')
        for field in body:
            if field not in CHECK_FIELDS:
                raise BadRequest(field, f"unknown field (known: {', '.join(CHECK_FIELDS)})")
        key = _key(body.get("key"), "key")
        plan, route, limits = body.get("plan"), body.get("route"), body.get("limits")
        if plan is not None and not isinstance(plan, str):
            raise BadRequest("plan", "expected a plan name")
        if route is not None and (not isinstance(route, str) or len(route) > MAX_ROUTE_CHARS):
            raise BadRequest(
                "route", f'expected "METHOD /path", {MAX_ROUTE_CHARS} characters at most'
            )
        limits = _limits([] if limits is None else limits)
        if plan is None and not limits:
            plan = self.default_plan
        cost = body.get("cost", 1)
        if type(cost) is float and cost.is_integer():  # JSON Schema's integers include 2.0
            cost = int(cost)
        if type(cost) is not int or not 1 <= cost <= MAX_COST:
            raise BadRequest("cost", f"expected a whole number from 1 to {MAX_COST}")
        plan = self.known_plan(plan, "plan")
        return Hit(RAW_NAMESPACE + key, plan, route, tuple(limits), cost)

    def auth_hit(self, request: Request) -> tuple[Hit, str | None]:
        """The hit a ``/v1/auth`` request asks for, and its API key if it brings one.

        ``Unauthorized`` when it brings neither an API key nor, in raw-key mode, an
        ``X-RateLimit-Key``.
        """
        headers = request.headers
        scheme, _, token = headers.get("authorization", "").strip().partition(" ")
        token = token.strip() if scheme.lower() == "bearer" else ""
        route = _route(request)
        plan = self.default_plan
        raw = None
        if self.trust_key_header:  # checked even when an API key then wins
            if headers.get("x-ratelimit-plan"):
                plan = self.known_plan(headers["x-ratelimit-plan"], "X-RateLimit-Plan") or plan
            if headers.get("x-ratelimit-key"):
                raw = _key(headers["x-ratelimit-key"], "X-RateLimit-Key")
        if token.startswith(KEY_PREFIX):
            return Hit(API_KEY_PENDING, self.default_plan, route, (), 1), token
        if raw is not None:
            return Hit(RAW_NAMESPACE + raw, plan, route, (), 1), None
        if scheme:
            raise Unauthorized("not an API key: send Authorization: Bearer mk_live_...",
                               invalid=True)  # fmt: skip
        raise Unauthorized("no API key: send Authorization: Bearer mk_live_...", invalid=False)

    def vendor_hit(self, hit: Hit, credential: Credential) -> Hit:
        """An API key's hit once looked up: counted under its vendor, on the vendor's plan
        (else the default plan), and on the key's own plan when it has one; a plan the
        plans file lost is left out."""
        plan = credential.vendor_plan
        if plan not in self.plans:
            plan = self.default_plan
        record = credential.key
        own: tuple[Limit, ...] = ()
        if record.plan is not None and record.plan in self.plans:
            own = key_limits(self.plans[record.plan], record.id)
        return Hit(quota_key(record.vendor), plan, hit.route, own, hit.cost)

    def known_plan(self, plan: str | None, field: str) -> str | None:
        """``plan`` if the service has it (or None); ``BadRequest`` naming ``field`` if not."""
        if plan is not None and plan not in self.plans:
            known = ", ".join(sorted(self.plans))
            raise BadRequest(field, f"unknown plan {plan!r} (known plans: {known})")
        return plan


def json_body(request: Request) -> Any:
    """The request's body as JSON; ``BadRequest`` when it is not."""
    try:
        return request.json()
    except (ValueError, RecursionError) as error:  # RecursionError: "[[[[..." nested deep
        raise BadRequest("body", f"not valid JSON: {error}") from None


def _route(request: Request) -> str | None:
    """The original request's route: from nginx's or Traefik's headers, or from the path
    under ``/v1/auth/`` (Envoy's ``path_prefix``)."""
    headers = request.headers
    method = headers.get("x-original-method") or headers.get("x-forwarded-method")
    uri = headers.get("x-original-uri") or headers.get("x-forwarded-uri")
    if method and uri:
        return f"{method} {uri}"
    if request.path != "/v1/auth":
        return f"{request.method} {request.path.removeprefix('/v1/auth')}"
    return None


def _limits(limits: Any) -> list[str]:
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
    return limits


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
