"""The vendor routes' part of the admin API's description (``webhookd.vendor_api``).

Added to the description only where the routes are served; API keys' ``plan`` is limited
to the plans file's plans.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from webhookd.events import VENDOR_ID
from webhookd.openapi import _body, _op

_VENDOR_PARAM = {"name": "vendor", "in": "path", "required": True,
                 "schema": {"type": "string", "pattern": f"^{VENDOR_ID.pattern}$"}}  # fmt: skip
_KEY = {
    "type": "object",
    "properties": {
        "id": {"type": "string"},
        "vendor": {"type": "string"},
        "plan": {
            "type": ["string", "null"],
            "description": "the key's own plan; null: its vendor's",
        },
        "created": {"type": "integer", "description": "unix seconds"},
        "revoked": {"type": ["integer", "null"], "description": "unix seconds; null: active"},
        "key": {"type": "string", "description": "mk_live_…: only in the answer that makes it"},
    },
    "required": ["id", "vendor", "plan", "created", "revoked"],
}
_USAGE = {
    "type": ["object", "null"],
    "properties": {name: {"type": "integer"} for name in ("amount", "used", "remaining", "reset")},
}
_VENDOR = {
    "type": "object",
    "properties": {
        "vendor": {"type": "string"},
        "plan": {"type": ["string", "null"]},
        "own_plan": {"type": ["string", "null"]},
        "webhooks": {
            "type": "object",
            "properties": {"daily_quota": _USAGE, "rate": _USAGE},
            "description": "webhooks against quotas.default_plan or the vendor's plan, and "
            "quotas.vendor_rate; null: no such limit",
        },
        "api_calls": {"type": "array", "items": _USAGE, "description": "per limit of the plan"},
        "burst_headroom": {"type": ["integer", "null"], "description": "calls left this minute"},
    },
    "required": ["vendor", "plan", "webhooks", "api_calls", "burst_headroom"],
}
_CATALOG = {
    "type": "array",
    "items": {
        "type": "object",
        "properties": {
            "type": {"type": "string"},
            "description": {"type": "string"},
            "example": {"type": "object", "description": "a delivery body of this type"},
        },
        "required": ["type", "description", "example"],
    },
}
_KEY_LINKS = {
    "RevokeKey": {
        "operationId": "revokeApiKey",
        "parameters": {"vendor": "$response.body#/vendor", "key_id": "$response.body#/id"},
    },
}


def _paths(plans: Iterable[str]) -> dict[str, Any]:
    """The vendor routes: usage, API keys (a key made is shown once), the catalog."""
    new_key = {
        "type": "object",
        "properties": {"plan": {"enum": [*sorted(set(plans)), None],
                                "description": "a plan of the key's own (both apply)"}},
        "additionalProperties": False,
    }  # fmt: skip
    key_id = {"name": "key_id", "in": "path", "required": True, "schema": {"type": "string"}}
    return {
        "/v1/catalog": {
            "get": _op("catalog", "Event types, each with an example delivery body", "200",
                       _CATALOG),
        },
        "/v1/vendors": {
            "get": _op(
                "listVendors", "Vendors known from endpoints, plans and API keys (operator)",
                "200", {"type": "array", "items": {"type": "object"}},
            ),
        },
        "/v1/vendors/{vendor}": {
            "get": _op("showVendor", "A vendor's plan and today's usage", "200", _VENDOR,
                       finds=True, parameters=[_VENDOR_PARAM]),
        },
        "/v1/vendors/{vendor}/keys": {
            "get": _op("listApiKeys", "A vendor's API keys (never the keys themselves)", "200",
                       {"type": "array", "items": {"$ref": "#/components/schemas/ApiKey"}},
                       finds=True, parameters=[_VENDOR_PARAM]),
            "post": _op("createApiKey", "A new API key; the answer is the only time it is shown",
                        "201", {"$ref": "#/components/schemas/ApiKey"}, finds=True,
                        parameters=[_VENDOR_PARAM], links=_KEY_LINKS,
                        requestBody=_body(new_key, required=False)),
        },
        "/v1/vendors/{vendor}/keys/{key_id}": {
            "delete": _op("revokeApiKey", "Revoke an API key", "200",
                          {"$ref": "#/components/schemas/ApiKey"}, finds=True,
                          parameters=[_VENDOR_PARAM, key_id]),
        },
    }  # fmt: skip


def add_vendor_paths(description: dict[str, Any], plans: Iterable[str]) -> dict[str, Any]:
    """``description`` with the vendor routes and the ApiKey schema added."""
    description["components"]["schemas"]["ApiKey"] = _KEY
    description["paths"] = {**description["paths"], **_paths(plans)}
    return description
