"""The OpenAPI 3.1 description of the limiter service, served on ``/openapi.json``."""

from __future__ import annotations

from typing import Any

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


def _json(schema: dict[str, Any], description: str, headers: dict[str, Any]) -> dict[str, Any]:
    return {
        "description": description,
        "headers": headers,
        "content": {"application/json": {"schema": schema}},
    }


_AUTH_PARAMETERS = [
    {"name": name, "in": "header", "required": False, "schema": {"type": "string"},
     "description": description}
    for name, description in [
        ("Authorization", "Bearer mk_live_... (an API key) or any bearer token"),
        ("X-RateLimit-Key", "the key to limit, when no mk_live_ bearer key is sent"),
        ("X-RateLimit-Plan", "plan of X-RateLimit-Key (default: service.default_plan)"),
        ("X-Original-Method", "method of the original request (nginx)"),
        ("X-Original-URI", "URI of the original request (nginx)"),
        ("X-Forwarded-Method", "method of the original request (Traefik)"),
        ("X-Forwarded-Uri", "URI of the original request (Traefik)"),
    ]
]  # fmt: skip
_AUTH = {
    "summary": "Forward-auth for gateways; /v1/auth/<path> takes the route from the path",
    "parameters": _AUTH_PARAMETERS,
    "responses": {
        "200": _json(_DECISION, "allowed", _RATE_HEADERS),
        "400": _json(_ERROR, "no key, or an unknown plan", {}),
        "401": _json(_ERROR, "unknown or revoked API key", {}),
        "429": _json(_ERROR, "refused (or service.deny_status)", _REFUSAL_HEADERS),
        "503": _json(_ERROR, "Redis failed and failure_mode is closed", _REFUSAL_HEADERS),
    },
}

OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "ratelimiter", "version": "1"},
    "paths": {
        "/v1/check": {
            "post": {
                "summary": "Count a hit and answer with the decision",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["key"],
                                "additionalProperties": False,
                                "properties": {
                                    "key": {"type": "string"},
                                    "plan": {"type": "string"},
                                    "route": {
                                        "type": "string",
                                        "examples": ["GET /api/v2/products"],
                                    },
                                    "limits": {
                                        "type": "array",
                                        "items": {"type": "string"},
                                        "examples": [["50/m", "10000/day"]],
                                    },
                                    "cost": {"type": "integer", "minimum": 1, "default": 1},
                                },
                            }
                        }
                    },
                },
                "responses": {
                    "200": _json(_DECISION, "the decision, allowed or not", _REFUSAL_HEADERS),
                    "400": _json(_ERROR, "a bad field, named in `field`", {}),
                    "503": _json(_ERROR, "Redis failed and failure_mode is closed", {}),
                },
            }
        },
        "/v1/auth": {"get": _AUTH},
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
                    "200": {"description": "serving"},
                    "503": {"description": "Redis unavailable and failure_mode is closed"},
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
