"""The service's settings: built-in defaults, then the TOML file, then the environment.

``config/ratelimiter.toml`` documents every key. ``RATELIMITER_<SECTION>_<KEY>``
(``RATELIMITER_REDIS_URL``, ``RATELIMITER_SERVICE_DENY_STATUS``, ...) overrides a
key of the file. ``KEYS`` lists every key once; ``configtable``, the engine webhookd
shares, reads it: unknown keys and bad values are collected into one ``ConfigError``,
a line per problem, each starting with the dotted key; the CLI exits with status 2.
The ``[routes]`` table maps ``"METHOD /path"`` to a limit expression and is read from
the file only.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from configtable import ConfigFileError, Key, KeyTable, Kind, read_toml, split_listen
from configtable.kinds import BOOL, LOG_LEVEL, choice, fit, integer, listen_address, number
from ratelimiter.errors import ConfigError, InvalidLimit
from ratelimiter.limit import parse_limit
from ratelimiter.policy import Policy, load_policy, normalize_route

ENV_PREFIX = "RATELIMITER_"
DEFAULT_PATH = Path("config/ratelimiter.toml")


@dataclass(frozen=True, slots=True)
class ServiceSettings:
    """How the service answers: only the request handler and the listener get it."""

    listen: str
    default_plan: str
    deny_status: int
    failure_mode: str  # "open" or "closed"
    redis_timeout_s: float
    key_cache_ttl_s: float
    trust_key_header: bool = False  # raw-key mode: X-RateLimit-Key from a trusted gateway

    @property
    def address(self) -> tuple[str, int]:
        """``listen`` as (host, port), an IPv6 host without its brackets."""
        return split_listen(self.listen)


@dataclass(frozen=True, slots=True)
class Settings:
    redis_url: str | None  # None: the embedded redis-server on data_dir; memory:// the process
    key_prefix: str
    service: ServiceSettings
    plans_file: Path | None  # None: the shipped config/plans.toml
    routes: Mapping[str, str]
    log_level: str
    data_dir: Path = Path(".ratelimiter")


def _name(value: Any) -> str:
    """Text with something other than spaces in it."""
    return str(fit(value, isinstance(value, str) and value.strip() != ""))


_SCHEMES = ("redis", "rediss", "unix", "redis+cluster", "rediss+cluster", "memory")


def _redis_url(value: Any) -> str | None:
    url = None if value in ("", None) else _name(value)
    if url is not None:
        fit(url, "://" in url and url.partition("://")[0] in _SCHEMES)
    return url


_NAME = Kind("a non-empty string", _name)
_REDIS_URL = Kind(
    "a redis://, rediss://, unix://, redis+cluster:// or memory:// URL "
    "(empty means unset: the embedded redis-server)",
    _redis_url,
)

# fmt: off
KEYS = KeyTable(ENV_PREFIX, [
    Key("redis", "url", "redis_url", _REDIS_URL, None,
        "Redis of the counters, API keys and vendors' plans; unset: an embedded redis-server"),
    Key("redis", "data_dir", "data_dir", Kind("a directory", lambda v: Path(_name(v))),
        Path(".ratelimiter"), "where the embedded redis-server keeps its data and socket"),
    Key("redis", "key_prefix", "key_prefix", _NAME, "rl", "prefix of every Redis key written"),
    Key("service", "listen", "listen",
        listen_address("host:port such as 127.0.0.1:8081 ([::1]:8081 for IPv6)"),
        "127.0.0.1:8081", "address of /v1/check, /v1/auth and the operational routes"),
    Key("service", "default_plan", "default_plan", Kind("a plan name", _name), "basic",
        "plan of a hit that names none"),
    Key("service", "deny_status", "deny_status",
        integer(400, 599, "an HTTP status from 400 to 599"), 429,
        "status of a refusal on /v1/auth"),
    Key("service", "trust_key_header", "trust_key_header", BOOL, False,
        "raw-key mode: count a request without an API key under X-RateLimit-Key"),
    Key("service", "failure_mode", "failure_mode",
        choice('"open" or "closed"', "open", "closed"), "open",
        "what a request gets when Redis fails: allowed (open) or 503 (closed)"),
    Key("service", "redis_timeout", "redis_timeout_s",
        number("seconds, above 0", lambda n: n > 0), 0.25,
        "seconds a request may spend on Redis"),
    Key("keys", "cache_ttl", "key_cache_ttl_s", number("seconds, 0 or more", lambda n: n >= 0),
        5.0, "seconds an API-key look-up is cached in each process"),
    Key("plans", "file", "plans_file",
        Kind("a path (empty means the shipped plans)",
             lambda v: None if v in ("", None) else Path(_name(v))),
        None, "the plans file; unset: the shipped config/plans.toml"),
    Key("log", "level", "log_level", LOG_LEVEL, "info", "least severe log level written"),
], free_sections=["routes"])
# fmt: on


def load_settings(path: Path | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Read ``path`` (default ``config/ratelimiter.toml`` when it exists) and the environment.

    A path given explicitly must exist; the default one may be missing.
    """
    env = os.environ if environ is None else environ
    if path is None:
        path = DEFAULT_PATH if DEFAULT_PATH.exists() else None
    data: dict[str, Any] = {}
    if path is not None:
        try:
            data = read_toml(path, "config file")
        except ConfigFileError as error:
            raise ConfigError(str(error)) from None
    return settings_from_mapping(data, env, source=path)


def settings_from_mapping(
    data: Mapping[str, Any], environ: Mapping[str, str] | None = None, source: Path | None = None
) -> Settings:
    """Settings from parsed TOML and environment overrides; every problem in one error."""
    reading = KEYS.read(data, environ or {}, source)
    note = f" (in {source})" if source is not None else ""
    routes = _routes(data.get("routes", {}), note, reading.problems)
    if reading.problems:
        raise ConfigError("\n".join(reading.problems))
    values = {key.attribute: reading.values[key.dotted] for key in KEYS}
    service = {key.attribute: values.pop(key.attribute) for key in KEYS
               if key.section in ("service", "keys")}  # fmt: skip
    return Settings(**values, service=ServiceSettings(**service), routes=MappingProxyType(routes))


def _routes(table: Any, note: str, problems: list[str]) -> dict[str, str]:
    if not isinstance(table, Mapping):
        return {}
    routes: dict[str, str] = {}
    for route, expression in table.items():
        key = f'routes."{route}"'
        if re.fullmatch(r"[A-Za-z]+ /\S*", route) is None:
            problems.append(f'{key}: expected a route such as "GET /api/v2/products"{note}')
            continue
        if not isinstance(expression, str):
            problems.append(f'{key}: expected a limit expression such as "1000/m"{note}')
            continue
        try:
            parse_limit(expression)
        except InvalidLimit as error:
            problems.append(f"{key}: {error}{note}")
            continue
        routes[normalize_route(route)] = expression
    return routes


def service_policy(settings: Settings) -> Policy:
    """The plans file with the service's routes added; the default plan must be in it."""
    policy = load_policy(settings.plans_file).with_routes(settings.routes)
    if settings.service.default_plan not in policy.plans:
        known = ", ".join(sorted(policy.plans)) or "none"
        raise ConfigError(
            f"service.default_plan: unknown plan {settings.service.default_plan!r} "
            f"(known plans: {known})"
        )
    return policy
