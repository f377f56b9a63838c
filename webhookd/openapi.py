"""The admin API's OpenAPI description, served on ``/openapi.json``."""

from __future__ import annotations

from typing import Any

from webhookd import __version__

_OPTIONS: dict[str, Any] = {
    "retry_schedule": {
        "type": ["array", "null"],
        "items": {"type": "number", "exclusiveMinimum": 0, "maximum": 604800},
        "maxItems": 50,
        "description": "seconds before each retry; null: retry.schedule",
    },
    "timeout": {
        "type": ["number", "null"],
        "exclusiveMinimum": 0,
        "maximum": 300,
        "description": "seconds per attempt; null: delivery.timeout",
    },
    "concurrency": {
        "type": ["integer", "null"],
        "minimum": 1,
        "maximum": 1024,
        "description": "most requests in flight; null: delivery.endpoint_concurrency",
    },
    "headers": {
        "type": ["object", "null"],
        "additionalProperties": {"type": "string", "maxLength": 1024},
        "maxProperties": 20,
        "description": "extra headers sent with every delivery; hop-by-hop, framing and "
        "signature headers (X-Signature, X-Timestamp, X-Event-*, webhook-*, Content-Type, "
        "User-Agent, Host) are refused",
    },
}
_ENDPOINT = {
    "type": "object",
    "properties": {
        "id": {"type": "string"},
        "vendor": {"type": "string"},
        "url": {"type": "string", "format": "uri"},
        "events": {"type": "array", "items": {"type": "string"}},
        "enabled": {"type": "boolean"},
        "disabled_reason": {"type": ["string", "null"]},
        "created_at": {"type": "string", "format": "date-time"},
        "secret": {
            "type": ["string", "null"],
            "description": "whsec_ + base64 of 24-64 bytes; null while locked",
        },
        "signing": {"enum": ["hmac", "ed25519"], "description": "ed25519 endpoints also get v1a"},
        "public_key": {"type": ["string", "null"], "description": "whpk_ key verifying v1a"},
        "ca_cert": {"type": ["string", "null"], "description": "PEM CA trusted instead"},
        "client_cert": {"type": ["string", "null"], "description": "PEM client certificate"},
        "locked": {
            "type": "string",
            "description": "present when this process's master key cannot open the secrets",
        },
        **_OPTIONS,
        "paused_until": {
            "type": ["string", "null"],
            "format": "date-time",
            "description": "a 429 or 503 with Retry-After paused deliveries until then",
        },
    },
    "required": ["id", "vendor", "url", "events", "enabled", "secret", "signing"],
}
_ERROR = {
    "type": "object",
    "properties": {"error": {"type": "string"}, "message": {"type": "string"}},
    "required": ["error", "message"],
}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _op(summary: str, ok: str, schema: dict[str, Any], **extra: Any) -> dict[str, Any]:
    responses = {
        ok: _json(schema, summary),
        "401": _json({"$ref": "#/components/schemas/Error"}, "missing or wrong bearer token"),
    }
    return {"summary": summary, "security": [{"bearer": []}], "responses": responses, **extra}


_ID = [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}]
_REF = {"$ref": "#/components/schemas/Endpoint"}
_BODY = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "properties": {
                    "vendor": {"type": "string"},
                    "url": {"type": "string"},
                    "events": {"type": "array", "items": {"type": "string"}},
                    "secret": {"type": "string"},
                    "signing": {"enum": ["hmac", "ed25519"]},
                    "enabled": {"type": "boolean"},
                    "ca_cert": {"type": "string"},
                    "client_cert": {"type": "string"},
                    "client_key": {"type": "string", "description": "stored encrypted"},
                    **_OPTIONS,
                },
            }
        }
    },
}

OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "webhookd admin API", "version": __version__},
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        "schemas": {"Endpoint": _ENDPOINT, "Error": _ERROR},
    },
    "paths": {
        "/v1/endpoints": {
            "get": _op("List endpoints", "200", {"type": "array", "items": _REF}),
            "post": _op("Register an endpoint", "201", _REF, requestBody=_BODY),
        },
        "/v1/endpoints/{id}": {
            "get": _op("Show an endpoint", "200", _REF, parameters=_ID),
            "patch": _op(
                "Change url, events, enabled, TLS or delivery options (null: the global one)",
                "200",
                _REF,
                parameters=_ID,
                requestBody=_BODY,
            ),
            "delete": _op("Remove an endpoint", "204", {}, parameters=_ID),
        },
        "/v1/endpoints/{id}/rotate-secret": {
            "post": _op(
                "New secret (and ed25519 key); the old ones sign too for the grace period",
                "200",
                _REF,
                parameters=_ID,
                requestBody={
                    "required": False,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "properties": {
                                    "grace": {
                                        "type": "number",
                                        "minimum": 0,
                                        "description": "seconds; default delivery.rotation_grace",
                                    }
                                },
                            }
                        }
                    },
                },
            ),
        },
        "/v1/events/{id}": {
            "get": _op(
                "An event's deliveries, each with every attempt",
                "200",
                {"type": "object"},
                parameters=_ID,
            ),
        },
        "/v1/events/{id}/replay": {
            "post": _op(
                "Deliver an event again to its endpoints", "202", {"type": "object"}, parameters=_ID
            ),
        },
        "/v1/dead": {"get": _op("Dead letters, oldest first", "200", {"type": "array"})},
        "/v1/dead/redrive": {
            "post": _op(
                "Deliver dead letters again with a fresh schedule", "202", {"type": "object"}
            ),
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics",
                "responses": {"200": {"description": "text exposition format"}},
            }
        },
        "/healthz": {"get": {"summary": "Liveness", "responses": {"200": {"description": "ok"}}}},
        "/readyz": {
            "get": {
                "summary": "Readiness (Redis reachable)",
                "responses": {
                    "200": {"description": "ready"},
                    "503": {"description": "Redis unreachable"},
                },
            }
        },
    },
}
