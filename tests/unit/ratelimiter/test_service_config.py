"""The service's config contract: defaults, file, environment, and errors naming the key."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest

from ratelimiter.config import (
    KEYS,
    ServiceSettings,
    Settings,
    load_settings,
    service_policy,
    settings_from_mapping,
)
from ratelimiter.errors import ConfigError

SHIPPED = Path(__file__).resolve().parents[3] / "config" / "ratelimiter.toml"

DEFAULTS = Settings(
    redis_url=None,
    key_prefix="rl",
    service=ServiceSettings(
        listen="127.0.0.1:8081",
        default_plan="basic",
        deny_status=429,
        failure_mode="open",
        redis_timeout_s=0.25,
        key_cache_ttl_s=5.0,
        trust_key_header=False,
    ),
    plans_file=None,
    routes={},
    log_level="info",
    data_dir=Path(".ratelimiter"),
)


def test_the_defaults_are_the_contract() -> None:
    assert settings_from_mapping({}) == DEFAULTS
    assert DEFAULTS.service.address == ("127.0.0.1", 8081)


def test_the_shipped_file_documents_every_key_with_its_default() -> None:
    assert load_settings(SHIPPED, environ={}) == DEFAULTS
    text = SHIPPED.read_text()
    for key in KEYS:
        assert f"[{key.section}]" in text
        assert f"{key.name} = " in text, f"{key.dotted} is not documented in {SHIPPED.name}"
    assert "[routes]" in text


def test_every_key_has_its_environment_variable() -> None:
    names = [key.env_var for key in KEYS]
    assert names == [f"RATELIMITER_{k.section.upper()}_{k.name.upper()}" for k in KEYS]
    assert "RATELIMITER_SERVICE_DENY_STATUS" in names and len(set(names)) == len(KEYS)


def test_file_values_and_environment_overrides(tmp_path: Path) -> None:
    path = tmp_path / "ratelimiter.toml"
    path.write_text(
        '[redis]\nurl = "redis://localhost:6379/1"\n'
        '[service]\nlisten = "[::1]:9000"\ndeny_status = 403\nfailure_mode = "closed"\n'
        '[routes]\n"get /api/v2/orders?x=1" = "10/s"\n'
    )
    environ = {
        "RATELIMITER_SERVICE_REDIS_TIMEOUT": "0.5",
        "RATELIMITER_REDIS_URL": "",  # empty unsets
        "RATELIMITER_KEYS_CACHE_TTL": "0",
        "RATELIMITER_SERVICE_TRUST_KEY_HEADER": "true",
        "RATELIMITER_REDIS_DATA_DIR": "/var/lib/ratelimiter",
        "RATELIMITER_CONFIG": "ignored: not a setting",
        "PATH": "/usr/bin",
    }
    settings = load_settings(path, environ=environ)
    assert settings.redis_url is None
    assert settings.service.address == ("::1", 9000)
    assert (settings.service.deny_status, settings.service.failure_mode) == (403, "closed")
    assert (settings.service.redis_timeout_s, settings.service.key_cache_ttl_s) == (0.5, 0.0)
    assert settings.service.trust_key_header is True
    assert settings.data_dir == Path("/var/lib/ratelimiter")
    assert dict(settings.routes) == {"GET /api/v2/orders": "10/s"}
    assert load_settings(path, environ={"RATELIMITER_REDIS_URL": "memory://"}).redis_url == (
        "memory://"
    )


@pytest.mark.parametrize(
    ("data", "named"),
    [
        ({"service": {"listen": "8081"}}, "service.listen"),
        ({"service": {"listen": "[not-ipv6]:8081"}}, "service.listen"),
        ({"service": {"deny_status": 200}}, "service.deny_status"),
        ({"service": {"deny_status": True}}, "service.deny_status"),
        ({"service": {"failure_mode": "sometimes"}}, "service.failure_mode"),
        ({"service": {"redis_timeout": 0}}, "service.redis_timeout"),
        ({"service": {"redis_timeout": "1"}}, "service.redis_timeout"),
        ({"service": {"deny_stauts": 429}}, "service.deny_stauts: unknown key"),
        ({"keys": {"cache_ttl": -1}}, "keys.cache_ttl"),
        ({"redis": {"url": "localhost:6379"}}, "redis.url"),
        ({"redis": {"url": "http://localhost:6379"}}, "redis.url"),
        ({"redis": {"url": "mysql://localhost"}}, "redis.url"),
        ({"service": {"trust_key_header": "yes"}}, "service.trust_key_header"),
        ({"plans": {"file": 3}}, "plans.file"),
        ({"log": {"level": "loud"}}, "log.level"),
        ({"servce": {}}, "servce: unknown section"),
        ({"routes": {"GET /x": "50/week"}}, 'routes."GET /x"'),
        ({"routes": {"GET /x": 50}}, 'routes."GET /x"'),
        ({"routes": {"/x": "50/m"}}, 'routes."/x"'),
    ],
)
def test_bad_values_and_unknown_keys_are_named(data: dict[str, Any], named: str) -> None:
    with pytest.raises(ConfigError) as caught:
        settings_from_mapping(data)
    assert str(caught.value).startswith(named)


def test_every_problem_is_reported_at_once_and_environment_variables_are_named() -> None:
    environ = {"RATELIMITER_SERVICE_DENY_STATUS": "often", "RATELIMITER_SERVICE_COLOUR": "red"}
    with pytest.raises(ConfigError) as caught:
        settings_from_mapping({"service": {"failure_mode": "x"}}, environ)
    lines = str(caught.value).splitlines()
    assert len(lines) == 3
    assert any("(from RATELIMITER_SERVICE_DENY_STATUS)" in line for line in lines)
    assert any(line.startswith("service.colour: unknown key") for line in lines)


def test_a_missing_or_broken_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings(tmp_path / "missing.toml", environ={})
    broken = tmp_path / "broken.toml"
    broken.write_text("[service\n")
    with pytest.raises(ConfigError, match="is not valid TOML"):
        load_settings(broken, environ={})


def test_the_policy_adds_routes_and_requires_the_default_plan(tmp_path: Path) -> None:
    settings = settings_from_mapping({"routes": {"POST /api/v2/orders": "100/m"}})
    policy = service_policy(settings)
    assert set(policy.plans) == {"basic", "growth", "enterprise"}
    route_limit = policy.route_limit("POST /api/v2/orders?dry_run=1")
    assert route_limit is not None and route_limit.amount == 100
    assert policy.route_limit("GET /api/v2/products") is not None  # from the plans file
    with pytest.raises(ConfigError, match=r"service\.default_plan: unknown plan 'gold'"):
        service_policy(settings_from_mapping({"service": {"default_plan": "gold"}}))
    plans = tmp_path / "plans.toml"
    plans.write_text('[plans.solo]\nlimits = ["5/m"]\n')
    own = settings_from_mapping(
        {"plans": {"file": str(plans)}, "service": {"default_plan": "solo"}}
    )
    assert set(service_policy(own).plans) == {"solo"}
    assert tomllib.loads(SHIPPED.read_text())["service"]["default_plan"] == "basic"
