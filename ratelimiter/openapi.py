"""The OpenAPI 3.1 description of the limiter service, served on ``/openapi.json``.

It is the truth about what the service accepts: the bounds below are the ones the
service enforces, and the description of a running service names its plans, its
refusal status and whether it trusts ``X-RateLimit-Key`` (raw-key mode). A request
valid by this description is never refused as bad, and one invalid by it always is;
tests/integration/ratelimiter/test_service_openapi.py checks that with schemathesis.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

MAX_KEY_CHARS = 512
MAX_ROUTE_CHARS = 2048
MAX_LIMITS = 16
"""Ad-hoc limits in one ``/v1/check``: a bound on the work one request asks of Redis."""
MAX_COST = 1_000_000_000
LIMIT_PATTERN = "^[1-9][0-9]{0,7}/(s|m|h|d|second|minute|hour|day)$"
"""A limit expression as the service takes it: no spaces, at most 99,999,999 units."""

_RATE_HEADERS: dict[str, Any] = {
    name: {"description": description, "schema": {"type": kind}}
    for name, description, kind in [
        ("X-RateLimit-Limit", "amount of the binding limit", "integer"),
        ("X-RateLimit-Remaining", "units left in the binding limit", "integer"),
        ("X-RateLimit-Reset", "unix seconds when the binding limit is full again", "integer"),
        ("RateLimit-Policy", "every limit of the hit, binding one first (IETF draft)", "string"),
        ("RateLimit", "the binding limit's remaining units and window (IETF draft)", "string"),
        ("X-RateLimit-Failure-Mode", "present when Redis failed: open or closed", "string"),
    ]
}
_REFUSAL_HEADERS = {
    **_RATE_HEADERS,
    "Retry-After": {"description": "seconds to wait", "schema": {"type": "integer"}},
}
_CHALLENGE = {
    "WWW-Authenticate": {
        "description": 'Bearer realm="ratelimiter", with error="invalid_token" when a '
        "credential was sent",
        "required": True,
        "schema": {"type": "string"},
    }
}
_DECISION = {
    "type": "object",
    "required": ["allowed", "limit", "remaining", "reset", "retry_after", "policy"],
    "properties": {
        "allowed": {"type": "boolean"},
        "limit": {"type": "integer"},
        "remaining": {"type": "integer"},
        "reset": {"type": "integer", "description": "unix seconds"},
        "retry_after": {"type": "number", "description": "seconds; 0 when allowed"},
        "policy": {"type": ["string", "null"], "description": "name of the binding limit"},
        "failure_mode": {"type": "string", "description": "'open' when Redis failed"},
    },
}
_ERROR = {
    "type": "object",
    "required": ["error", "message"],
    "properties": {
        "error": {"type": "string"},
        "message": {"type": "string"},
        "field": {"type": "string", "description": "the bad field (400 only)"},
        "retry_after": {"type": "integer", "description": "seconds (refusals only)"},
    },
}
_HEALTH = {
    "type": "object",
    "required": ["status", "store"],
    "properties": {
        "status": {"enum": ["ok", "degraded"]},
        "store": {"type": "string"},
        "failure_mode": {"enum": ["open", "closed"]},
    },
}
_AUTH_METHODS = ("get", "post", "put", "patch", "delete", "head", "options")
"""Envoy's ext_authz sends the original request's method, so every method is served."""


def _json(schema: dict[str, Any], description: str, headers: dict[str, Any]) -> dict[str, Any]:
    return {
        "description": description,
        "headers": headers,
        "content": {"application/json": {"schema": schema}},
    }


def _header(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "header", "required": False, "schema": schema,
            "description": description}  # fmt: skip


def _check(plans: Sequence[str]) -> dict[str, Any]:
    body = {
        "type": "object",
        "required": ["key"],
        "additionalProperties": False,
        "properties": {
            "key": {"type": "string", "minLength": 1, "maxLength": MAX_KEY_CHARS},
            "plan": {
                "enum": [*plans, None],
                "description": "default (absent or null): service.default_plan, unless limits "
                "are given",
            },
            "route": {
                "type": ["string", "null"],
                "maxLength": MAX_ROUTE_CHARS,
                "examples": ["GET /api/v2/products"],
            },
            "limits": {
                "type": ["array", "null"],
                "maxItems": MAX_LIMITS,
                "items": {"type": "string", "pattern": LIMIT_PATTERN},
                "examples": [["50/m", "10000/day"]],
            },
            "cost": {"type": "integer", "minimum": 1, "maximum": MAX_COST, "default": 1},
        },
    }
    return {
        "summary": "Count a hit and answer with the decision",
        "requestBody": {"required": True, "content": {"application/json": {"schema": body}}},
        "responses": {
            "200": _json(_DECISION, "the decision, allowed or not", _REFUSAL_HEADERS),
            "400": _json(_ERROR, "a bad field, named in `field`", {}),
            "405": {"description": "a method other than POST"},
            "503": _json(_ERROR, "Redis failed and failure_mode is closed", _REFUSAL_HEADERS),
        },
    }


def _auth(plans: Sequence[str], deny_status: int, trust_key_header: bool) -> dict[str, Any]:
    parameters = [
        _header("X-Original-Method", "method of the original request (nginx)",
                {"type": "string"}),
        _header("X-Original-URI", "URI of the original request (nginx)", {"type": "string"}),
        _header("X-Forwarded-Method", "method of the original request (Traefik)",
                {"type": "string"}),
        _header("X-Forwarded-Uri", "URI of the original request (Traefik)",
                {"type": "string"}),
    ]  # fmt: skip
    security: list[dict[str, list[str]]] = [{"apiKey": []}]
    responses = {
        "200": _json(_DECISION, "allowed", _RATE_HEADERS),
        "401": _json(_ERROR, "no API key, or an unknown, revoked or made-up one", _CHALLENGE),
        str(deny_status): _json(_ERROR, "refused (service.deny_status)", _REFUSAL_HEADERS),
        "503": _json(_ERROR, "Redis failed and failure_mode is closed", _REFUSAL_HEADERS),
    }
    if trust_key_header:
        # Not a security scheme: the gateway is trusted, so no value of it is invalid;
        # an API key or this header will do, hence the empty alternative.
        security.append({})
        key = "raw-key mode: the key to limit when no API key is sent, set by a trusted gateway"
        parameters.append(
            _header("X-RateLimit-Key", key, {"type": "string", "maxLength": MAX_KEY_CHARS})
        )
        parameters.append(
            _header(
                "X-RateLimit-Plan",
                "plan of X-RateLimit-Key (empty or absent: service.default_plan)",
                {"enum": [*plans, ""]},
            )
        )
        responses["400"] = _json(_ERROR, "a bad X-RateLimit-Key or X-RateLimit-Plan", {})
    return {
        "summary": "Forward-auth for gateways; /v1/auth/<path> takes the route from the path",
        "parameters": parameters,
        "security": security,
        "responses": responses,
    }


def openapi_document(
    plans: Sequence[str], *, deny_status: int = 429, trust_key_header: bool = False
) -> dict[str, Any]:
    """The description of a service with these plans and settings."""
    schemes = {
        "apiKey": {"type": "http", "scheme": "bearer", "description": "mk_live_... API key"},
    }
    auth = _auth(plans, deny_status, trust_key_header)
    return {
        "openapi": "3.1.0",
        "info": {"title": "ratelimiter", "version": "1"},
        "components": {"securitySchemes": schemes},
        "paths": {
            "/v1/check": {"post": _check(plans)},
            "/v1/auth": dict.fromkeys(_AUTH_METHODS, auth),
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics",
                    "responses": {"200": {"description": "text exposition format"}},
                }
            },
            "/healthz": {
                "get": {
                    "summary": "Liveness, and whether Redis answers",
                    "responses": {
                        "200": _json(_HEALTH, "serving", {}),
                        "503": _json(_HEALTH, "Redis unavailable, failure_mode closed", {}),
                    },
                }
            },
            "/openapi.json": {
                "get": {
                    "summary": "This document",
                    "responses": {"200": {"description": "OpenAPI 3.1"}},
                }
            },
        },
    }
