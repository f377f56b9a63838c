"""Plans and routes: which limits a hit is checked against, loaded from ``plans.toml``.

The plans file::

    [plans.basic]
    limits = ["10000/day", "50/minute"]   # applied on hit(..., plan="basic")
    webhooks_per_day = 100                # a figure other code reads; never applied here
    exact = false                         # optional: sliding log instead of the counter

    [routes]
    "GET /api/v2/products" = "1000/m"     # or { limit = "1000/m", exact = true }

A hit's limits are its ad-hoc limits, then its plan's, then its route's, with duplicates
(same counter) dropped. An unknown route adds no limit; an unknown plan is an error.

Routes are matched and counted in a normal form (``normalize_route``), so that no
spelling of a path that an upstream server may take for the same one escapes its
limit: the query and fragment are dropped, every percent-encoding is decoded (once),
empty and ``.`` segments are dropped and ``..`` removes the segment before it (RFC 3986
5.2.4), a segment's ``;parameters`` are dropped (Tomcat and Spring ignore them), and
the path is lower-cased. Paths are case-sensitive (RFC 3986 6.2.2.1), but many servers
route them without regard to case; two routes that differ only in case share a limit,
which errs on the side of limiting.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from configtable import ConfigFileError, read_toml
from ratelimiter.errors import ConfigError, InvalidLimit, UnknownPlan
from ratelimiter.limit import Limit, as_limit, parse_limit

_PLAN_KEYS = {"limits", "webhooks_per_day", "exact"}
_ROUTE_KEYS = {"limit", "exact"}


def default_plans_path() -> Path:
    """The shipped ``config/plans.toml`` (the project is installed editable)."""
    import ratelimiter

    return Path(ratelimiter.__file__).resolve().parent.parent / "config" / "plans.toml"


@dataclass(frozen=True, slots=True)
class Plan:
    """A named set of limits, plus figures (``webhooks_per_day``) that other code reads."""

    name: str
    limits: tuple[Limit, ...]
    webhooks_per_day: int | None = None


@dataclass(frozen=True, slots=True)
class Policy:
    """Plans by name and route limits by ``"METHOD /path"``."""

    plans: Mapping[str, Plan] = field(default_factory=lambda: MappingProxyType({}))
    routes: Mapping[str, Limit] = field(default_factory=lambda: MappingProxyType({}))

    def plan(self, name: str) -> Plan:
        try:
            return self.plans[name]
        except KeyError:
            known = ", ".join(sorted(self.plans)) or "none"
            raise UnknownPlan(f"unknown plan {name!r} (known plans: {known})") from None

    def route_limit(self, route: str) -> Limit | None:
        return self.routes.get(normalize_route(route))

    def with_routes(self, routes: Mapping[str, str | Limit]) -> Policy:
        """This policy with ``routes`` added (replacing routes of the same name)."""
        merged = dict(self.routes)
        for route, limit in routes.items():
            name = normalize_route(route)
            merged[name] = _route_limit(name, as_limit(limit))
        return Policy(self.plans, MappingProxyType(merged))

    def limits_for(
        self, adhoc: tuple[str | Limit, ...], plan: str | None, route: str | None
    ) -> tuple[Limit, ...]:
        """Every limit a hit is checked against, each counter once."""
        limits = [as_limit(limit) for limit in adhoc]
        if plan is not None:
            limits.extend(self.plan(plan).limits)
        if route is not None:
            route_limit = self.route_limit(route)
            if route_limit is not None:
                limits.append(route_limit)
        unique: dict[tuple[str, bool], Limit] = {}
        for limit in limits:
            unique.setdefault((limit.storage_id, limit.exact), limit)
        return tuple(unique.values())


def normalize_route(route: str) -> str:
    """``"get /API/v2//%6frders/?page=2"`` -> ``"GET /api/v2/orders"`` (module docstring)."""
    method, _, path = route.strip().partition(" ")
    path = path.strip().split("?", 1)[0].split("#", 1)[0]
    return f"{method.upper()} {normalize_path(path)}" if path else method.upper()


def normalize_path(path: str) -> str:
    """A request path in the form route limits are matched in: ``"/a/b"``, or ``"/"``."""
    segments: list[str] = []
    for segment in urllib.parse.unquote(path, errors="replace").lower().split("/"):
        segment = segment.split(";", 1)[0]
        if segment == "..":
            if segments:
                segments.pop()
        elif segment not in ("", "."):
            segments.append(segment)
    return "/" + "/".join(segments)


def load_policy(path: str | Path | None = None) -> Policy:
    """Read a plans file (default: the shipped one); errors name the file and the key."""
    path = default_plans_path() if path is None else Path(path)
    try:
        document = read_toml(path, "plans file")
    except ConfigFileError as error:
        raise ConfigError(str(error)) from None
    unknown = set(document) - {"plans", "routes"}
    if unknown:
        raise ConfigError(f"{path}: unknown key {sorted(unknown)[0]!r}")
    plans = {
        name: _plan(path, name, table)
        for name, table in _table(path, "plans", document.get("plans", {})).items()
    }
    routes = {
        normalize_route(route): _route(path, route, value)
        for route, value in _table(path, "routes", document.get("routes", {})).items()
    }
    return Policy(MappingProxyType(plans), MappingProxyType(routes))


def _plan(path: Path, name: str, table: Any) -> Plan:
    key = f"plans.{name}"
    table = _table(path, key, table)
    _reject_unknown(path, key, table, _PLAN_KEYS)
    exact = _bool(path, f"{key}.exact", table.get("exact", False))
    expressions = table.get("limits")
    if not isinstance(expressions, list) or not expressions:
        raise ConfigError(f"{path}: {key}.limits must be a non-empty list of limit expressions")
    parsed = [_parse(path, f"{key}.limits", expression) for expression in expressions]
    limits = tuple(
        Limit(limit.amount, limit.window_s, exact, name=f"{name}-{limit.unit}") for limit in parsed
    )
    quota = table.get("webhooks_per_day")
    if quota is not None and (type(quota) is not int or quota < 0):
        raise ConfigError(f"{path}: {key}.webhooks_per_day must be a non-negative integer")
    return Plan(name, limits, quota)


def _route(path: Path, route: str, value: Any) -> Limit:
    key = f'routes."{route}"'
    if isinstance(value, str):
        return _route_limit(normalize_route(route), _parse(path, key, value))
    if not isinstance(value, dict):
        raise ConfigError(
            f"{path}: {key} must be a limit expression such as '50/m' "
            "or a table { limit = '50/m', exact = true }"
        )
    table = value
    _reject_unknown(path, key, table, _ROUTE_KEYS)
    exact = _bool(path, f"{key}.exact", table.get("exact", False))
    limit = _parse(path, f"{key}.limit", table.get("limit"), exact=exact)
    return _route_limit(normalize_route(route), limit)


def _route_limit(route: str, limit: Limit) -> Limit:
    """A route's limit counts hits of that route only, and is named after it."""
    return Limit(limit.amount, limit.window_s, limit.exact, scope=route, name=route)


def _parse(path: Path, key: str, expression: Any, **options: Any) -> Limit:
    if not isinstance(expression, str):
        raise ConfigError(f"{path}: {key} must be a limit expression such as '50/m'")
    try:
        return parse_limit(expression, **options)
    except InvalidLimit as error:
        raise ConfigError(f"{path}: {key}: {error}") from None


def _table(path: Path, key: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"{path}: {key} must be a table")
    return value


def _bool(path: Path, key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{path}: {key} must be true or false")
    return value


def _reject_unknown(path: Path, key: str, table: dict[str, Any], known: set[str]) -> None:
    unknown = set(table) - known
    if unknown:
        raise ConfigError(f"{path}: unknown key {key}.{sorted(unknown)[0]}")
