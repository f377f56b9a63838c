"""The service's settings: built-in defaults, then the TOML file, then the environment.

``config/ratelimiter.toml`` documents every key. ``RATELIMITER_<SECTION>_<KEY>``
(``RATELIMITER_REDIS_URL``, ``RATELIMITER_SERVICE_DENY_STATUS``, ...) overrides a
key of the file. Unknown keys and bad values are collected into one ``ConfigError``,
a line per problem, each starting with the dotted key; the CLI exits with status 2.
The ``[routes]`` table maps ``"METHOD /path"`` to a limit expression and is read from
the file only.
"""

from __future__ import annotations

import math
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

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
        return _split_listen(self.listen)


@dataclass(frozen=True, slots=True)
class Settings:
    redis_url: str | None  # None: the embedded redis-server on data_dir; memory:// the process
    key_prefix: str
    service: ServiceSettings
    plans_file: Path | None  # None: the shipped config/plans.toml
    routes: Mapping[str, str]
    log_level: str
    data_dir: Path = Path(".ratelimiter")


@dataclass(frozen=True, slots=True)
class _Key:
    parse: Callable[[Any], Any]  # a TOML value -> the setting; ValueError on a misfit
    from_env: Callable[[str], Any]  # environment text -> a TOML-shaped value
    expected: str
    default: Any


_LISTEN = re.compile(r"(?:\[(?P<ipv6>[^\]]+)\]|(?P<host>[^\s:\[\]]+)):(?P<port>[0-9]{1,5})")


def _split_listen(listen: str) -> tuple[str, int]:
    match = _LISTEN.fullmatch(listen)
    if match is None or int(match["port"]) > 65535:
        raise ValueError(listen)
    return match["ipv6"] or match["host"], int(match["port"])


def _fit(value: Any, ok: bool) -> Any:
    if not ok:
        raise ValueError(value)
    return value


def _text(value: Any) -> str:
    return str(_fit(value, isinstance(value, str) and value.strip() != ""))


def _optional_text(value: Any) -> str | None:
    return None if value in ("", None) else _text(value)


def _number(accept: Callable[[float], bool]) -> Callable[[Any], float]:
    def parse(value: Any) -> float:
        _fit(value, isinstance(value, int | float) and not isinstance(value, bool))
        return float(_fit(value, math.isfinite(value) and accept(value)))

    return parse


def _status(value: Any) -> int:
    ok = type(value) is int and 400 <= value <= 599
    return int(_fit(value, ok))


def _choice(*words: str) -> Callable[[Any], str]:
    return lambda value: str(_fit(value, value in words))


_SCHEMES = ("redis", "rediss", "unix", "redis+cluster", "rediss+cluster", "memory")


def _redis_url(value: Any) -> str | None:
    url = _optional_text(value)
    if url is not None:
        _fit(url, "://" in url and url.partition("://")[0] in _SCHEMES)
    return url


def _flag(value: Any) -> bool:
    return bool(_fit(value, isinstance(value, bool)))


def _flag_text(text: str) -> bool | str:
    words = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
    return words.get(text.strip().lower(), text)


def _int_text(text: str) -> int:
    return int(_fit(text, re.fullmatch(r"\s*[0-9]+\s*", text) is not None))


# fmt: off
KEYS: dict[str, _Key] = {
    "redis.url": _Key(_redis_url, str, "a redis://, rediss://, unix://, redis+cluster:// or "
                      "memory:// URL (empty means unset: the embedded redis-server)", None),
    "redis.data_dir": _Key(lambda v: Path(_text(v)), str, "a directory", Path(".ratelimiter")),
    "redis.key_prefix": _Key(_text, str, "a non-empty string", "rl"),
    "service.listen": _Key(lambda v: _fit(v, bool(_split_listen(_text(v)))), str,
                           "host:port such as 127.0.0.1:8081 ([::1]:8081 for IPv6)",
                           "127.0.0.1:8081"),
    "service.default_plan": _Key(_text, str, "a plan name", "basic"),
    "service.deny_status": _Key(_status, _int_text, "an HTTP status from 400 to 599", 429),
    "service.trust_key_header": _Key(_flag, _flag_text, "true or false", False),
    "service.failure_mode": _Key(_choice("open", "closed"), str, '"open" or "closed"', "open"),
    "service.redis_timeout": _Key(_number(lambda n: n > 0), float, "seconds, above 0", 0.25),
    "keys.cache_ttl": _Key(_number(lambda n: n >= 0), float, "seconds, 0 or more", 5.0),
    "plans.file": _Key(lambda v: None if v in ("", None) else Path(_text(v)), str,
                       "a path (empty means the shipped plans)", None),
    "log.level": _Key(_choice("debug", "info", "warning", "error"), str,
                      "one of debug, info, warning, error", "info"),
}
# fmt: on
_SECTIONS = {dotted.split(".")[0] for dotted in KEYS} | {"routes"}


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
            with path.open("rb") as file:
                data = tomllib.load(file)
        except OSError as error:
            raise ConfigError(f"{path}: cannot read config file: {error.strerror}") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
            raise ConfigError(f"{path}: invalid TOML: {error}") from None
    return settings_from_mapping(data, env, source=path)


def settings_from_mapping(
    data: Mapping[str, Any], environ: Mapping[str, str] | None = None, source: Path | None = None
) -> Settings:
    """Settings from parsed TOML and environment overrides; every problem in one error."""
    note = f" (in {source})" if source is not None else ""
    problems: list[str] = []
    values = {dotted: key.default for dotted, key in KEYS.items()}
    raw: list[tuple[str, Any, str, bool]] = []  # key, value, where it came from, is env text
    for section, table in data.items():
        if section not in _SECTIONS:
            problems.append(f"{section}: unknown section{note}")
        elif not isinstance(table, Mapping):
            problems.append(f"{section}: expected a table{note}")
        elif section != "routes":
            raw.extend((f"{section}.{name}", value, note, False) for name, value in table.items())
    for var, text in sorted((environ or {}).items()):
        section, _, name = var.removeprefix(ENV_PREFIX).lower().partition("_")
        if var.startswith(ENV_PREFIX) and section in _SECTIONS - {"routes"}:
            raw.append((f"{section}.{name}", text, f" (from {var})", True))
    for dotted, value, where, is_text in raw:  # the file first, so the environment wins
        key = KEYS.get(dotted)
        if key is None:
            problems.append(f"{dotted}: unknown key{where}")
            continue
        try:
            values[dotted] = key.parse(key.from_env(value) if is_text and value else value)
        except (ValueError, TypeError):
            problems.append(f"{dotted}: expected {key.expected}, got {value!r}{where}")
    routes = _routes(data.get("routes", {}), note, problems)
    if problems:
        raise ConfigError("\n".join(problems))
    return Settings(
        redis_url=values["redis.url"],
        key_prefix=values["redis.key_prefix"],
        service=ServiceSettings(
            listen=values["service.listen"],
            default_plan=values["service.default_plan"],
            deny_status=values["service.deny_status"],
            failure_mode=values["service.failure_mode"],
            redis_timeout_s=values["service.redis_timeout"],
            key_cache_ttl_s=values["keys.cache_ttl"],
            trust_key_header=values["service.trust_key_header"],
        ),
        plans_file=values["plans.file"],
        routes=MappingProxyType(routes),
        log_level=values["log.level"],
        data_dir=values["redis.data_dir"],
    )


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
