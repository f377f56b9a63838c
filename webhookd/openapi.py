"""The admin API's OpenAPI description, served on ``/openapi.json``.

Built per process from the event catalog, so ``events`` lists exactly the patterns the
API accepts. Every status the server gives is documented: 400 (a body, parameter or
setting it refuses), 401 (no, wrong or expired bearer token), 403 (a portal token asking
for what only the operator may do), 404 (no such endpoint, event, vendor or key, or
another vendor's), 503 (Redis unavailable). A method a path does not serve answers 405
with ``Allow``.
Strings the server checks beyond JSON Schema's reach carry a format of their own:
``webhook-url`` (an ``https://`` URL the endpoint rules accept; ``http://`` too when
``delivery.require_https`` is false), ``pem-certificate`` and ``pem-private-key``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from webhookd import __version__
from webhookd.events import VENDOR_ID
from webhookd.history import OUTCOMES
from webhookd.options import HEADER_NAME, HEADER_VALUE, RESERVED_HEADERS, RESERVED_PREFIXES

_SPECIAL = frozenset(".^$*+?()[]{}|\\")


def _any_case_alternatives(names: Iterable[str], prefixes: Iterable[str]) -> str:
    """A pattern matching these names exactly, or starting with these prefixes, in any
    case (JSON Schema patterns have no case-insensitive flag)."""

    def any_case(text: str) -> str:
        return "".join(
            f"[{c.lower()}{c.upper()}]" if c.isalpha() else f"\\{c}" if c in _SPECIAL else c
            for c in text
        )

    exact = [f"{any_case(name)}$" for name in sorted(names)]
    return "^(" + "|".join([*exact, *(any_case(prefix) for prefix in prefixes)]) + ")"


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
        "propertyNames": {
            "pattern": f"^{HEADER_NAME.pattern}$",
            "not": {"pattern": _any_case_alternatives(RESERVED_HEADERS, RESERVED_PREFIXES)},
        },
        "additionalProperties": {"type": "string", "pattern": f"^{HEADER_VALUE.pattern}$"},
        "maxProperties": 20,
        "description": "extra headers sent with every delivery; hop-by-hop, framing and "
        "signature headers (X-Signature, X-Timestamp, X-Event-*, webhook-*, Content-Type, "
        "User-Agent, Host) are refused",
    },
}

MAX_ROTATION_GRACE_S = 30 * 24 * 3600.0
"""The longest a rotated secret keeps signing: 30 days."""

_B64 = "[A-Za-z0-9+/]"
SECRET_PATTERN = (
    f"^whsec_(?:(?:{_B64}{{4}}){{8,21}}|(?:{_B64}{{4}}){{8,20}}(?:{_B64}{{2}}==|{_B64}{{3}}=)"
    f"|(?:{_B64}{{4}}){{21}}{_B64}{{2}}==)$"
)
"""``whsec_`` + base64 of 24-64 bytes, padded."""

_NULLABLE_PEM = {"type": ["string", "null"]}
_ENDPOINT = {
    "type": "object",
    "properties": {
        "id": {"type": "string"},
        "vendor": {"type": "string"},
        "url": {"type": "string"},
        "events": {"type": "array", "items": {"type": "string"}},
        "enabled": {"type": "boolean"},
        "disabled_reason": {"type": ["string", "null"]},
        "created_at": {"type": "string", "format": "date-time"},
        "secret": {
            "type": ["string", "null"],
            "description": "present only when the endpoint is made, its secret rotated or "
            "revealed; null while locked",
        },
        "signing": {"enum": ["hmac", "ed25519"], "description": "ed25519 endpoints also get v1a"},
        "public_key": {"type": ["string", "null"], "description": "whpk_ key verifying v1a"},
        "ca_cert": {**_NULLABLE_PEM, "description": "PEM CA trusted instead of the system's"},
        "client_cert": {**_NULLABLE_PEM, "description": "PEM client certificate"},
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
    "required": ["id", "vendor", "url", "events", "enabled", "signing"],
}
_ERROR = {
    "type": "object",
    "properties": {"error": {"type": "string"}, "message": {"type": "string"}},
    "required": ["error", "message"],
}
_ERROR_REF = {"$ref": "#/components/schemas/Error"}
_ENDPOINT_REF = {"$ref": "#/components/schemas/Endpoint"}
_ID = [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}]
_LINKS = {
    "ShowEndpoint": {"operationId": "showEndpoint", "parameters": {"id": "$response.body#/id"}},
    "ChangeEndpoint": {"operationId": "changeEndpoint", "parameters": {"id": "$response.body#/id"}},
    "RotateSecret": {"operationId": "rotateSecret", "parameters": {"id": "$response.body#/id"}},
    "RevealSecret": {"operationId": "revealSecret", "parameters": {"id": "$response.body#/id"}},
    "RemoveEndpoint": {"operationId": "removeEndpoint", "parameters": {"id": "$response.body#/id"}},
    "TestEndpoint": {"operationId": "testEndpoint", "parameters": {"id": "$response.body#/id"}},
}
_DEAD_ID = {
    "type": "string",
    "pattern": "^[0-9]{1,19}-[0-9]{1,19}$",
    "description": "a dead letter's id (its entry id in stream.dead)",
}
_DEAD_FILTERS = {
    "endpoint_id": {"type": "string", "minLength": 1, "description": "only this endpoint's"},
    "vendor": {"type": "string", "minLength": 1, "description": "only this vendor's"},
}
_DEAD_FILTER_PARAMETERS = [
    {"name": name, "in": "query", "schema": schema} for name, schema in _DEAD_FILTERS.items()
]
_DEAD_IDS = {"type": "array", "items": _DEAD_ID, "minItems": 1, "maxItems": 1000}
_DEAD_LETTER = {
    "type": "object",
    "properties": {
        "id": {"type": "string"},
        "event_id": {"type": "string"},
        "endpoint_id": {"type": "string"},
        "attempts": {"type": "string"},
        "last_status": {"type": "string"},
        "last_error": {"type": "string"},
        "reason": {"type": "string"},
        "body": {"type": "string", "description": "the event's body, up to 64 KiB"},
        "body_excerpt": {"type": "string", "description": "a bigger body's first 1 KiB"},
        "body_size": {"type": "string", "description": "a bigger body's size in bytes"},
    },
    "required": ["id"],
}
_COUNT = {"type": "integer", "minimum": 0}
_PARTITION = {
    "type": "object",
    "properties": {
        "stream": {"type": "string"},
        "group_exists": {"type": "boolean"},
        "lag": {"type": ["integer", "null"], "minimum": 0},
        **{name: _COUNT for name in ("pending", "retry_backlog", "held", "deferred")},
    },
    "required": ["stream", "lag", "pending", "retry_backlog", "held", "deferred"],
}
_STATUS = {
    "type": "object",
    "properties": {
        "lag": _COUNT,
        "pending": _COUNT,
        "retry_backlog": _COUNT,
        "held": _COUNT,
        "deferred": _COUNT,
        "partitions": {"type": "array", "items": _PARTITION},
        "disabled_endpoints": {
            "type": "object",
            "properties": {
                "count": _COUNT,
                "endpoints": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "id": {"type": "string"},
                            "vendor": {"type": "string"},
                            "reason": {"type": ["string", "null"]},
                        },
                    },
                },
            },
            "required": ["count", "endpoints"],
        },
    },
    "required": [
        "lag",
        "pending",
        "retry_backlog",
        "held",
        "deferred",
        "partitions",
        "disabled_endpoints",
    ],
}
_REDRIVEN = {
    "type": "object",
    "properties": {
        "redriven": _COUNT,
        "skipped": _COUNT,
        "reasons": {
            "type": "object",
            "additionalProperties": {"type": "string"},
            "description": "why letters were skipped, by id (the first 100)",
        },
    },
    "required": ["redriven", "skipped", "reasons"],
}
_TESTED = {
    "type": "object",
    "properties": {
        "endpoint_id": {"type": "string"},
        "event_id": {"type": "string"},
        "url": {"type": "string"},
        "delivered": {"type": "boolean", "description": "the endpoint answered 2xx"},
        "status": {"type": ["integer", "null"]},
        "error": {"type": ["string", "null"]},
        "duration_ms": {"type": "number"},
        "response": {"type": "string", "description": "the response body's first 1,024 characters"},
    },
    "required": ["endpoint_id", "event_id", "delivered", "status", "error", "duration_ms"],
}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _op(
    operation_id: str,
    summary: str,
    ok: str,
    schema: dict[str, Any] | None,
    *,
    finds: bool = False,
    links: dict[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """An authenticated operation; ``finds``: it can answer 404."""
    success: dict[str, Any] = (
        _json(schema, summary) if schema is not None else {"description": summary}
    )
    if links:
        success["links"] = links
    responses = {ok: success}
    responses["400"] = _json(_ERROR_REF, "the body or a parameter is not acceptable")
    responses["401"] = _json(_ERROR_REF, "missing, wrong or expired bearer token")
    responses["403"] = _json(_ERROR_REF, "a portal token may not do this (only the admin token)")
    if finds:
        responses["404"] = _json(
            _ERROR_REF, "no such thing, or another vendor's (to a portal token)"
        )
    responses["503"] = _json(_ERROR_REF, "Redis is unavailable; try again")
    return {
        "operationId": operation_id,
        "summary": summary,
        "security": [{"bearer": []}],
        "responses": responses,
        **extra,
    }


_LIMIT = {"name": "limit", "in": "query",
          "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}}  # fmt: skip
CURSOR_PATTERN = r"^[0-9]{1,20}-[0-9]{1,20}_[0-9]{1,5}$"


def _body(schema: dict[str, Any], *, required: bool = True) -> dict[str, Any]:
    return {"required": required, "content": {"application/json": {"schema": schema}}}


def _dead_list() -> dict[str, Any]:
    """``GET /v1/dead``: pages of letters, the next page's cursor in a header."""
    listed = _op(
        "listDead",
        "Dead letters, newest first. A filtered page reads at most 1,000 letters (or limit, "
        "if more) and may hold fewer than limit, even none, with a cursor to go on from",
        "200",
        {"type": "array", "items": {"$ref": "#/components/schemas/DeadLetter"}},
        parameters=[
            {
                "name": "limit",
                "in": "query",
                "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100},
            },
            {
                "name": "cursor",
                "in": "query",
                "schema": _DEAD_ID,
                "description": "X-Next-Cursor of the page before",
            },
            *_DEAD_FILTER_PARAMETERS,
        ],
    )
    listed["responses"]["200"]["headers"] = {
        "X-Next-Cursor": {
            "description": "cursor of the next page; absent on the last page",
            "schema": _DEAD_ID,
        }
    }
    return listed


def document(event_patterns: Iterable[str]) -> dict[str, Any]:
    """The description, with ``events`` limited to these catalogued patterns."""
    pattern = {"enum": sorted(set(event_patterns))}
    tls = {
        "ca_cert": {"type": "string", "format": "pem-certificate"},
        "client_cert": {"type": "string", "format": "pem-certificate"},
        "client_key": {
            "type": "string",
            "format": "pem-private-key",
            "description": "unencrypted; stored encrypted",
        },
    }
    both = {"client_cert": ["client_key"], "client_key": ["client_cert"]}
    changes = {
        "url": {"type": "string", "format": "webhook-url", "maxLength": 2048},
        "events": {"type": "array", "items": pattern, "minItems": 1},
        **tls,
        **_OPTIONS,
    }
    new_endpoint = {
        "type": "object",
        "properties": {
            "vendor": {
                "type": "string",
                "pattern": f"^{VENDOR_ID.pattern}$",
                "description": "required with the admin token; a portal token makes "
                "endpoints only for its own vendor, which it may leave out",
            },
            **changes,
            "secret": {"type": "string", "pattern": SECRET_PATTERN},
            "signing": {"enum": ["hmac", "ed25519"]},
        },
        "required": ["vendor", "url"],
        "additionalProperties": False,
        "dependentRequired": both,
    }
    patch = {
        "type": "object",
        "properties": {**changes, "enabled": {"type": "boolean"}},
        "additionalProperties": False,
        "dependentRequired": both,
    }
    recovery = {
        "type": "object",
        "properties": {"since": {"type": "string", "format": "rfc3339"}},
        "additionalProperties": False,
    }
    grace = {
        "type": "object",
        "properties": {
            "grace": {
                "type": "number",
                "minimum": 0,
                "maximum": MAX_ROTATION_GRACE_S,
                "description": "seconds the old secret keeps signing; default "
                "delivery.rotation_grace; at most 30 days",
            }
        },
        "additionalProperties": False,
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "webhookd admin API",
            "version": __version__,
            "description": "A method a path does not serve answers 405 with an Allow header.",
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {"Endpoint": _ENDPOINT, "Error": _ERROR, "DeadLetter": _DEAD_LETTER},
        },
        "paths": {
            "/v1/endpoints": {
                "get": _op(
                    "listEndpoints", "List endpoints (without secrets)", "200",
                    {"type": "array", "items": _ENDPOINT_REF},
                    parameters=[{"name": "vendor", "in": "query",
                                 "schema": {"type": "string", "minLength": 1}}],
                ),
                "post": _op(
                    "addEndpoint", "Register an endpoint; the answer holds its secret", "201",
                    _ENDPOINT_REF, links=_LINKS, requestBody=_body(new_endpoint),
                ),
            },
            "/v1/endpoints/{id}": {
                "get": _op("showEndpoint", "Show an endpoint (without its secret)", "200",
                           _ENDPOINT_REF, finds=True, parameters=_ID),
                "patch": _op(
                    "changeEndpoint", "Change url, events, enabled or TLS", "200", _ENDPOINT_REF,
                    finds=True, parameters=_ID, requestBody=_body(patch),
                ),
                "delete": _op("removeEndpoint", "Remove an endpoint", "204", None, finds=True,
                              parameters=_ID),
            },
            "/v1/endpoints/{id}/rotate-secret": {
                "post": _op(
                    "rotateSecret",
                    "New secret (and ed25519 key); the old ones sign too for the grace period",
                    "200", _ENDPOINT_REF, finds=True, parameters=_ID,
                    requestBody=_body(grace, required=False),
                ),
            },
            "/v1/endpoints/{id}/reveal-secret": {
                "post": _op(
                    "revealSecret", "The endpoint with its current secret; the reveal is logged",
                    "200", _ENDPOINT_REF, finds=True, parameters=_ID,
                ),
            },
            "/v1/endpoints/{id}/recover": {
                "post": _op(
                    "recoverEndpoint",
                    "Deliver what was held while the endpoint was disabled (within "
                    "stream.retention); with since, also redrive its dead letters since then",
                    "202", {"type": "object", "properties": {
                        "recovered": {"type": "integer"}, "held": {"type": "integer"},
                        "redriven": {"type": "integer"}}},
                    finds=True, parameters=_ID, requestBody=_body(recovery, required=False),
                ),
            },
            "/v1/deliveries": {
                "get": _op(
                    "listDeliveries",
                    "Delivery history, newest first: one entry per attempt, held or untried "
                    "dead delivery; the next page's cursor is in X-Next-Cursor",
                    "200", {"type": "array", "items": {"type": "object"}},
                    parameters=[
                        {"name": "endpoint_id", "in": "query", "schema": {"type": "string"}},
                        {"name": "vendor", "in": "query", "schema": {"type": "string"}},
                        {"name": "outcome", "in": "query", "schema": {"enum": list(OUTCOMES)}},
                        {"name": "cursor", "in": "query",
                         "schema": {"type": "string", "pattern": CURSOR_PATTERN}},
                        _LIMIT,
                    ],
                ),
            },
            "/v1/stats": {
                "get": _op(
                    "deliveryStats",
                    "Deliveries, failed attempts and mean attempt latency per minute, oldest "
                    "first",
                    "200", {"type": "array", "items": {"type": "object"}},
                    parameters=[{"name": "minutes", "in": "query", "schema": {
                        "type": "integer", "minimum": 1, "maximum": 120, "default": 60}}],
                ),
            },
            "/v1/events/{id}": {
                "get": _op("showEvent", "An event's deliveries, each with every attempt", "200",
                           {"type": "object"}, finds=True, parameters=_ID),
            },
            "/v1/events/{id}/replay": {
                "post": _op("replayEvent", "Deliver an event again to its endpoints", "202",
                            {"type": "object"}, finds=True, parameters=_ID),
            },
            "/v1/endpoints/{id}/test": {
                "post": _op(
                    "testEndpoint",
                    "Send one signed webhook.test event straight to the endpoint (not through "
                    "the stream, not recorded); the answer says what it answered",
                    "200", _TESTED, finds=True, parameters=_ID,
                ),
            },
            "/v1/dead": {
                "get": _dead_list(),
            },
            "/v1/dead/{id}": {
                "get": _op("showDead", "One dead letter", "200", _DEAD_LETTER, finds=True,
                           parameters=_ID),
            },
            "/v1/dead/redrive": {
                "post": _op(
                    "redriveDead",
                    "Deliver dead letters again with a fresh schedule: those in ids that the "
                    "filters (body or query) take; with neither, all. Letters that cannot be "
                    "sent again stay and are counted as skipped, with the reason",
                    "202", _REDRIVEN, parameters=_DEAD_FILTER_PARAMETERS,
                    requestBody=_body({"type": "object", "properties": {
                        "ids": _DEAD_IDS, **_DEAD_FILTERS}, "additionalProperties": False},
                        required=False),
                ),
            },
            "/v1/dead/purge": {
                "post": _op(
                    "purgeDead",
                    "Delete dead letters: those in ids and/or those the filters take; every "
                    'one only with {"all": true}',
                    "200", {"type": "object", "properties": {"purged": _COUNT},
                            "required": ["purged"]},
                    requestBody=_body({
                        "type": "object",
                        "properties": {"ids": _DEAD_IDS, **_DEAD_FILTERS,
                                       "all": {"type": "boolean"}},
                        "additionalProperties": False,
                        "anyOf": [{"required": ["ids"]}, {"required": ["endpoint_id"]},
                                  {"required": ["vendor"]},
                                  {"required": ["all"], "properties": {"all": {"const": True}}}],
                    }),
                ),
            },
            "/v1/status": {
                "get": _op(
                    "status",
                    "Per partition: consumer lag, pending entries, retry backlog, held and "
                    "deferred deliveries; their totals; the endpoints disabled now",
                    "200", _STATUS,
                ),
            },
            "/metrics": {
                "get": {
                    "operationId": "metrics",
                    "summary": "Prometheus metrics",
                    "responses": {"200": {"description": "text exposition format"}},
                }
            },
            "/healthz": {
                "get": {
                    "operationId": "health",
                    "summary": "Liveness",
                    "responses": {"200": {"description": "ok"}},
                }
            },
            "/readyz": {
                "get": {
                    "operationId": "readiness",
                    "summary": "Readiness (Redis reachable, no loop failing)",
                    "responses": {
                        "200": {"description": "ready"},
                        "503": {"description": "Redis unreachable or a loop failing"},
                    },
                }
            },
        },
    }  # fmt: skip
