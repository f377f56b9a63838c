"""The configuration contract: defaults, file, environment, and errors that name the key."""

from __future__ import annotations

import dataclasses
import json
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from webhookd.config import (
    KEYS,
    AdminSettings,
    DeliverySettings,
    EventsSettings,
    HealthSettings,
    LogSettings,
    QuotaSettings,
    RedisSettings,
    RetrySettings,
    SecretsSettings,
    Settings,
    StreamSettings,
    default_config_path,
    load_settings,
    settings_from_mapping,
)
from webhookd.errors import ConfigError

SHIPPED = Path(__file__).resolve().parents[2] / "webhookd.toml"

DEFAULTS = Settings(
    redis=RedisSettings(url=None, data_dir=Path(".webhookd"), key_prefix="webhookd"),
    stream=StreamSettings(
        name="webhookd:events",
        group="webhookd",
        dead="webhookd:dead",
        ops="webhookd:ops",
        partitions=1,
        batch_size=100,
        block_s=1.0,
        reclaim_idle_s=60.0,
        retention_s=604800.0,
        consumer=None,
    ),
    delivery=DeliverySettings(
        timeout_s=10.0,
        endpoint_concurrency=16,
        max_in_flight=1024,
        require_https=True,
        allow_private_targets=False,
        max_response_body=65536,
        shutdown_grace_s=30.0,
        record_ttl_s=604800.0,
        max_payload_bytes=262144,
        source_address=None,
        rotation_grace_s=86400.0,
        max_pause_s=3600.0,
        history_entries=100000,
    ),
    retry=RetrySettings(schedule_s=(1.0, 2.0, 4.0, 8.0, 16.0), jitter=0.1),
    quotas=QuotaSettings(
        vendor_rate=None,
        default_plan=None,
        plans=Path("config/plans.toml"),
        exceeded="defer",
        limiter_prefix="rl",
    ),
    health=HealthSettings(disable_after_s=432000.0),
    admin=AdminSettings(listen="127.0.0.1:8080", token=None),
    events=EventsSettings(catalog=Path("config/events.toml"), unknown="deliver"),
    secrets=SecretsSettings(key=None, previous_keys=()),
    log=LogSettings(level="info", format="auto"),
    source=None,
)


def config_error(data: dict[str, Any], environ: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        settings_from_mapping(data, environ)
    return str(info.value)


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# --- defaults and where the file comes from ---


def test_defaults_match_the_contract() -> None:
    assert settings_from_mapping({}) == DEFAULTS


def test_no_file_and_no_local_webhookd_toml_gives_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert default_config_path({}) is None
    assert load_settings(None, {}) == DEFAULTS


def test_local_webhookd_toml_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    local = write(tmp_path / "webhookd.toml", "[delivery]\ntimeout = 3\n")
    monkeypatch.chdir(tmp_path)
    settings = load_settings(None, {})
    assert settings.delivery.timeout_s == 3.0
    assert settings.source is not None and settings.source.samefile(local)


def test_webhookd_config_beats_local_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path / "webhookd.toml", "[delivery]\ntimeout = 3\n")
    other = write(tmp_path / "other.toml", "[delivery]\ntimeout = 4\n")
    monkeypatch.chdir(tmp_path)
    environ = {"WEBHOOKD_CONFIG": str(other)}
    assert default_config_path(environ) == other
    settings = load_settings(None, environ)
    assert settings.delivery.timeout_s == 4.0
    assert settings.source == other


def test_explicit_path_beats_webhookd_config(tmp_path: Path) -> None:
    explicit = write(tmp_path / "a.toml", "[log]\nlevel = 'debug'\n")
    settings = load_settings(explicit, {"WEBHOOKD_CONFIG": str(tmp_path / "missing.toml")})
    assert settings.log.level == "debug"


def test_missing_explicit_file_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError, match=re.escape(str(missing))):
        load_settings(missing, {})


def test_missing_webhookd_config_file_names_path_and_variable(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as info:
        load_settings(None, {"WEBHOOKD_CONFIG": str(missing)})
    assert str(missing) in str(info.value)
    assert "WEBHOOKD_CONFIG" in str(info.value)


def test_toml_syntax_error_names_file_and_position(tmp_path: Path) -> None:
    bad = write(tmp_path / "bad.toml", "[delivery]\ntimeout = = 3\n")
    with pytest.raises(ConfigError) as info:
        load_settings(bad, {})
    message = str(info.value)
    assert message.startswith(f"config file {bad} is not valid TOML")
    assert "line 2" in message


def test_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=re.escape(str(tmp_path))):
        load_settings(tmp_path, {})
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"[log]\nlevel = '\xff'\n")
    with pytest.raises(ConfigError, match="is not valid TOML"):
        load_settings(binary, {})


# --- the file ---


def test_file_overrides_every_section(tmp_path: Path) -> None:
    path = write(
        tmp_path / "w.toml",
        """
        [redis]
        url = "redis://cache:6379/2"
        data_dir = "/var/lib/webhookd"
        key_prefix = "wh"
        [stream]
        name = "events"
        partitions = 4
        batch_size = 10000
        block = 0.25
        reclaim_idle = 30
        consumer = "node-a"
        [delivery]
        timeout = 2.5
        require_https = false
        max_response_body = 0
        shutdown_grace = 0
        [retry]
        schedule = [0.5, 1, 2.5]
        jitter = 0
        [admin]
        listen = "[::1]:0"
        token = "s3cret"
        [log]
        level = "WARNING"
        """,
    )
    settings = load_settings(path, {})
    assert settings.source == path
    assert settings.redis == RedisSettings("redis://cache:6379/2", Path("/var/lib/webhookd"), "wh")
    assert settings.stream.stream_names == ("events:0", "events:1", "events:2", "events:3")
    assert settings.stream.batch_size == 10000
    assert settings.stream.block_s == 0.25
    assert settings.stream.reclaim_idle_s == 30.0
    assert settings.stream.consumer == "node-a"
    assert settings.delivery.timeout_s == 2.5
    assert settings.delivery.require_https is False
    assert settings.delivery.max_response_body == 0
    assert settings.delivery.shutdown_grace_s == 0.0
    assert settings.delivery.endpoint_concurrency == 16  # untouched keys keep defaults
    assert settings.retry == RetrySettings(schedule_s=(0.5, 1.0, 2.5), jitter=0.0)
    assert settings.admin.address == ("::1", 0)
    assert settings.admin.token == "s3cret"
    assert settings.log.level == "warning"


def test_seconds_are_floats_even_when_written_as_ints() -> None:
    settings = settings_from_mapping({"delivery": {"timeout": 5}, "retry": {"schedule": [1, 2]}})
    assert type(settings.delivery.timeout_s) is float
    assert all(type(delay) is float for delay in settings.retry.schedule_s)


def test_empty_schedule_means_no_retries() -> None:
    assert settings_from_mapping({"retry": {"schedule": []}}).retry.schedule_s == ()


def test_unpartitioned_stream_uses_its_name() -> None:
    assert DEFAULTS.stream.stream_names == ("webhookd:events",)


def test_listen_address_splits_host_and_port() -> None:
    assert DEFAULTS.admin.address == ("127.0.0.1", 8080)


def test_token_stays_out_of_repr() -> None:
    settings = settings_from_mapping({"admin": {"token": "s3cret"}})
    assert "s3cret" not in repr(settings)


def test_settings_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        DEFAULTS.delivery.timeout_s = 1.0  # type: ignore[misc]


# --- the environment ---


@pytest.mark.parametrize(
    ("var", "text", "section", "attribute", "expected"),
    [
        ("WEBHOOKD_REDIS_URL", "redis://r:6379/0", "redis", "url", "redis://r:6379/0"),
        ("WEBHOOKD_REDIS_DATA_DIR", "/data", "redis", "data_dir", Path("/data")),
        ("WEBHOOKD_STREAM_NAME", "ev", "stream", "name", "ev"),
        ("WEBHOOKD_STREAM_CONSUMER", "c1", "stream", "consumer", "c1"),
        ("WEBHOOKD_STREAM_PARTITIONS", "8", "stream", "partitions", 8),
        ("WEBHOOKD_STREAM_BATCH_SIZE", " 50 ", "stream", "batch_size", 50),
        ("WEBHOOKD_STREAM_BLOCK", "0.5", "stream", "block_s", 0.5),
        ("WEBHOOKD_DELIVERY_TIMEOUT", "5", "delivery", "timeout_s", 5.0),
        ("WEBHOOKD_DELIVERY_ENDPOINT_CONCURRENCY", "4", "delivery", "endpoint_concurrency", 4),
        ("WEBHOOKD_DELIVERY_RECORD_TTL", "1e3", "delivery", "record_ttl_s", 1000.0),
        ("WEBHOOKD_DELIVERY_REQUIRE_HTTPS", "false", "delivery", "require_https", False),
        ("WEBHOOKD_DELIVERY_ALLOW_PRIVATE_TARGETS", "1", "delivery", "allow_private_targets", True),
        ("WEBHOOKD_RETRY_JITTER", "1", "retry", "jitter", 1.0),
        ("WEBHOOKD_RETRY_SCHEDULE", "[1, 2.5, 4]", "retry", "schedule_s", (1.0, 2.5, 4.0)),
        ("WEBHOOKD_ADMIN_LISTEN", "0.0.0.0:9000", "admin", "listen", "0.0.0.0:9000"),
        ("WEBHOOKD_ADMIN_TOKEN", "t0k", "admin", "token", "t0k"),
        ("WEBHOOKD_LOG_LEVEL", "DEBUG", "log", "level", "debug"),
        ("WEBHOOKD_QUOTAS_VENDOR_RATE", "1000/minute", "quotas", "vendor_rate", "1000/minute"),
        ("WEBHOOKD_QUOTAS_DEFAULT_PLAN", "basic", "quotas", "default_plan", "basic"),
        ("WEBHOOKD_QUOTAS_EXCEEDED", "dead_letter", "quotas", "exceeded", "dead_letter"),
        ("WEBHOOKD_DELIVERY_MAX_PAUSE", "60", "delivery", "max_pause_s", 60.0),
        ("WEBHOOKD_STREAM_OPS", "ops", "stream", "ops", "ops"),
    ],
)
def test_env_overrides_by_type(
    var: str, text: str, section: str, attribute: str, expected: object
) -> None:
    settings = settings_from_mapping({}, {var: text})
    value = getattr(getattr(settings, section), attribute)
    assert value == expected
    assert type(value) is type(expected)


@pytest.mark.parametrize(
    ("text", "expected"),
    [(word, True) for word in ("true", "TRUE", "1", "yes", "Yes", "on", " On ")]
    + [(word, False) for word in ("false", "False", "0", "no", "NO", "off", "OFF")],
)
def test_env_booleans(text: str, expected: bool) -> None:
    settings = settings_from_mapping({}, {"WEBHOOKD_DELIVERY_REQUIRE_HTTPS": text})
    assert settings.delivery.require_https is expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[1, 2.5, 4]", (1.0, 2.5, 4.0)),
        ("1,2.5,4", (1.0, 2.5, 4.0)),
        (" 1 , 2.5 , 4 ", (1.0, 2.5, 4.0)),
        ("0.5", (0.5,)),
        ("[]", ()),
        ("[ 3 ]", (3.0,)),
        ("[1e-3, 2E2]", (0.001, 200.0)),
    ],
)
def test_env_schedule_forms(text: str, expected: tuple[float, ...]) -> None:
    settings = settings_from_mapping({}, {"WEBHOOKD_RETRY_SCHEDULE": text})
    assert settings.retry.schedule_s == expected


@pytest.mark.parametrize(
    "text",
    ["", " ", "1,,2", "1,2,", "[1, -2]", "1,0", '[1, "a"]', "[1, true]", "nan", "1,inf", "[1",
     "1;2", "[[1]]", "[1]\nx = 2"],
)  # fmt: skip
def test_bad_env_schedules_are_rejected(text: str) -> None:
    message = config_error({}, {"WEBHOOKD_RETRY_SCHEDULE": text})
    assert message.startswith("retry.schedule: expected a list of positive numbers")
    assert "WEBHOOKD_RETRY_SCHEDULE" in message


delays = st.lists(
    st.floats(min_value=1e-6, max_value=1e9, allow_nan=False, allow_infinity=False), max_size=20
)


@given(delays)
def test_schedule_round_trips_through_json_and_comma_forms(schedule: list[float]) -> None:
    as_json = settings_from_mapping({}, {"WEBHOOKD_RETRY_SCHEDULE": json.dumps(schedule)})
    assert as_json.retry.schedule_s == tuple(schedule)
    if schedule:
        comma = ",".join(repr(delay) for delay in schedule)
        as_commas = settings_from_mapping({}, {"WEBHOOKD_RETRY_SCHEDULE": comma})
        assert as_commas.retry.schedule_s == tuple(schedule)


def test_env_beats_file() -> None:
    settings = settings_from_mapping(
        {"delivery": {"timeout": 3}}, {"WEBHOOKD_DELIVERY_TIMEOUT": "7"}
    )
    assert settings.delivery.timeout_s == 7.0


@pytest.mark.parametrize(
    ("data", "var", "section", "attribute"),
    [
        ({"redis": {"url": "redis://r/0"}}, "WEBHOOKD_REDIS_URL", "redis", "url"),
        ({"admin": {"token": "abc"}}, "WEBHOOKD_ADMIN_TOKEN", "admin", "token"),
        ({"stream": {"consumer": "c"}}, "WEBHOOKD_STREAM_CONSUMER", "stream", "consumer"),
    ],
)
def test_empty_env_unsets_optional_strings(
    data: dict[str, Any], var: str, section: str, attribute: str
) -> None:
    settings = settings_from_mapping(data, {var: ""})
    assert getattr(getattr(settings, section), attribute) is None


def test_unrelated_env_vars_are_ignored() -> None:
    environ = {
        "WEBHOOKD_CONFIG": "/nowhere.toml",
        "WEBHOOKD_VERSION": "x",
        "PATH": "/bin",
        "REDIS_URL": "redis://elsewhere/0",
    }
    assert settings_from_mapping({}, environ) == DEFAULTS


def test_unknown_env_key_in_known_section_is_an_error() -> None:
    message = config_error({}, {"WEBHOOKD_DELIVERY_TIMOUT": "5"})
    assert message.startswith("delivery.timout: unknown key")
    assert "did you mean delivery.timeout?" in message
    assert "WEBHOOKD_DELIVERY_TIMOUT" in message


def test_bad_env_value_names_key_and_variable() -> None:
    message = config_error({}, {"WEBHOOKD_DELIVERY_TIMEOUT": "ten"})
    assert message == (
        'delivery.timeout: expected a positive number, got "ten" (from WEBHOOKD_DELIVERY_TIMEOUT)'
    )


@pytest.mark.parametrize(
    ("var", "text"),
    [
        ("WEBHOOKD_STREAM_PARTITIONS", "1.5"),
        ("WEBHOOKD_STREAM_PARTITIONS", "two"),
        ("WEBHOOKD_STREAM_BATCH_SIZE", "0"),
        ("WEBHOOKD_DELIVERY_REQUIRE_HTTPS", "maybe"),
        ("WEBHOOKD_DELIVERY_REQUIRE_HTTPS", ""),
        ("WEBHOOKD_DELIVERY_TIMEOUT", "inf"),
        ("WEBHOOKD_DELIVERY_TIMEOUT", ""),
        ("WEBHOOKD_STREAM_NAME", ""),
        ("WEBHOOKD_ADMIN_LISTEN", "8080"),
        ("WEBHOOKD_LOG_LEVEL", "verbose"),
    ],
)
def test_bad_env_values_are_rejected(var: str, text: str) -> None:
    key = next(key for key in KEYS if key.env_var == var)
    message = config_error({}, {var: text})
    assert message.startswith(f"{key.dotted}: expected ")
    assert message.endswith(f"(from {var})")


# --- errors in the file ---


def test_bad_value_message_format() -> None:
    message = config_error({"delivery": {"timeout": "ten"}})
    assert message == 'delivery.timeout: expected a positive number, got "ten"'


def test_errors_from_a_file_name_the_file(tmp_path: Path) -> None:
    path = write(tmp_path / "w.toml", "[delivery]\ntimeout = 0\n")
    with pytest.raises(ConfigError) as info:
        load_settings(path, {})
    assert str(info.value) == f"delivery.timeout: expected a positive number, got 0 (in {path})"


def test_unknown_section_is_an_error() -> None:
    message = config_error({"deliveries": {"timeout": 5}})
    assert message.startswith("deliveries: unknown section")
    assert "did you mean delivery?" in message


def test_unknown_key_is_an_error() -> None:
    message = config_error({"retry": {"schedul": [1]}})
    assert message.startswith("retry.schedul: unknown key")
    assert "did you mean retry.schedule?" in message


def test_nested_table_is_an_unknown_key() -> None:
    assert config_error({"stream": {"reclaim": {"idle": 5}}}).startswith("stream.reclaim: unknown")


def test_section_that_is_not_a_table_is_an_error() -> None:
    assert config_error({"delivery": 5}).startswith("delivery: expected a table")


@pytest.mark.parametrize(
    ("section", "name", "value"),
    [
        ("redis", "url", 6379),
        ("redis", "url", "localhost:6379"),
        ("redis", "data_dir", ""),
        ("redis", "key_prefix", ""),
        ("stream", "name", 5),
        ("stream", "group", ""),
        ("stream", "partitions", 0),
        ("stream", "partitions", 2.0),
        ("stream", "partitions", True),
        ("stream", "batch_size", 0),
        ("stream", "batch_size", 10001),
        ("stream", "block", 0),
        ("stream", "consumer", 1),
        ("delivery", "timeout", "ten"),
        ("delivery", "timeout", -1),
        ("delivery", "timeout", float("inf")),
        ("delivery", "timeout", float("nan")),
        ("delivery", "timeout", True),
        ("delivery", "endpoint_concurrency", True),
        ("delivery", "endpoint_concurrency", 0),
        ("delivery", "endpoint_concurrency", "16"),
        ("delivery", "max_in_flight", 0),
        ("delivery", "require_https", 1),
        ("delivery", "require_https", "true"),
        ("delivery", "allow_private_targets", "yes"),
        ("delivery", "max_response_body", -1),
        ("delivery", "shutdown_grace", -0.5),
        ("delivery", "record_ttl", 0),
        ("retry", "schedule", "1,2"),
        ("retry", "schedule", [1, 0]),
        ("retry", "schedule", [1, True]),
        ("retry", "schedule", [1, [2]]),
        ("retry", "schedule", 1),
        ("retry", "jitter", 1.5),
        ("retry", "jitter", -0.1),
        ("admin", "listen", 8080),
        ("admin", "listen", "localhost"),
        ("admin", "listen", ":8080"),
        ("admin", "listen", "::1:8080"),
        ("admin", "listen", "[::1]"),
        ("admin", "listen", "[not-ipv6]:80"),
        ("admin", "listen", "host:65536"),
        ("admin", "listen", "host:-1"),
        ("admin", "listen", "host :80"),
        ("log", "level", "verbose"),
        ("log", "level", 10),
        ("delivery", "max_payload_bytes", 0),
        ("delivery", "source_address", "example.com"),
        ("delivery", "source_address", "10.0.0.300"),
        ("delivery", "rotation_grace", -1),
        ("events", "catalog", ""),
        ("events", "unknown", "drop"),
        ("secrets", "key", "c2hvcnQ="),
        ("secrets", "key", "not base64!"),
        ("secrets", "key", 32),
        ("secrets", "previous_keys", "c2hvcnQ="),
        ("secrets", "previous_keys", ["c2hvcnQ="]),
    ],
)
def test_bad_types_and_ranges_are_rejected(section: str, name: str, value: object) -> None:
    message = config_error({section: {name: value}})
    assert message.startswith(f"{section}.{name}: expected ")


@pytest.mark.parametrize(
    ("section", "name", "value"),
    [
        ("stream", "batch_size", 1),
        ("stream", "batch_size", 10000),
        ("delivery", "max_response_body", 0),
        ("delivery", "shutdown_grace", 0),
        ("retry", "jitter", 0),
        ("retry", "jitter", 1),
        ("admin", "listen", "[::1]:8080"),
        ("admin", "listen", "[fe80::1%eth0]:8080"),
        ("admin", "listen", "localhost:0"),
        ("admin", "listen", "0.0.0.0:65535"),
        ("redis", "url", "unix:///run/redis.sock"),
        ("redis", "url", "rediss://user:pw@host:6380/1"),
    ],
)
def test_boundary_values_are_accepted(section: str, name: str, value: object) -> None:
    settings_from_mapping({section: {name: value}})


def test_secret_values_are_not_echoed() -> None:
    message = config_error({"admin": {"token": 123456789}})
    assert message.startswith("admin.token: expected ")
    assert "123456789" not in message
    almost = "QUJD" * 10  # base64 of 30 bytes: a key one would not want echoed either
    for section, name, value in (
        ("secrets", "key", almost),
        ("secrets", "previous_keys", [almost]),
    ):
        message = config_error({section: {name: value}})
        assert message.startswith(f"{section}.{name}: expected ")
        assert almost not in message


MASTER_KEY = "a2V5IG9mIGV4YWN0bHkgdGhpcnR5LXR3byBieXRlcyE="
OLD_MASTER_KEY = "b2xkIGtleSBvZiB0aGlydHktdHdvIGJ5dGVzLCB0b28="


def test_master_keys_come_from_the_environment_and_stay_out_of_repr() -> None:
    settings = settings_from_mapping(
        {},
        {
            "WEBHOOKD_SECRETS_KEY": MASTER_KEY,
            "WEBHOOKD_SECRETS_PREVIOUS_KEYS": f"{OLD_MASTER_KEY}, {MASTER_KEY}",
        },
    )
    assert settings.secrets.key == b"key of exactly thirty-two bytes!"
    assert settings.secrets.previous_keys == (
        b"old key of thirty-two bytes, too",
        settings.secrets.key,
    )
    assert MASTER_KEY not in repr(settings) and "thirty-two" not in repr(settings)
    assert settings_from_mapping({}, {"WEBHOOKD_SECRETS_KEY": ""}).secrets.key is None


def test_security_settings_from_a_file() -> None:
    settings = settings_from_mapping(
        {
            "delivery": {
                "max_payload_bytes": 1024,
                "source_address": "2001:db8::0a",
                "rotation_grace": 60,
            },
            "events": {"catalog": "/etc/webhookd/events.toml", "unknown": "dead_letter"},
            "secrets": {"key": MASTER_KEY, "previous_keys": [OLD_MASTER_KEY]},
        }
    )
    assert settings.delivery.max_payload_bytes == 1024
    assert settings.delivery.source_address == "2001:db8::a"
    assert settings.delivery.rotation_grace_s == 60.0
    assert settings.events == EventsSettings(Path("/etc/webhookd/events.toml"), "dead_letter")
    assert len(settings.secrets.previous_keys) == 1


def test_every_problem_is_reported_at_once() -> None:
    message = config_error(
        {"delivery": {"timeout": "ten", "bogus": 1}, "nope": {}},
        {"WEBHOOKD_LOG_LEVEL": "loud"},
    )
    lines = message.splitlines()
    assert len(lines) == 4
    assert {line.split(":")[0] for line in lines} == {
        "delivery.timeout",
        "delivery.bogus",
        "nope",
        "log.level",
    }


@pytest.mark.parametrize(("timeout", "reclaim_idle"), [(10, 10), (10, 5), (60, 60.0)])
def test_reclaim_idle_must_exceed_delivery_timeout(timeout: float, reclaim_idle: float) -> None:
    message = config_error(
        {"delivery": {"timeout": timeout}, "stream": {"reclaim_idle": reclaim_idle}}
    )
    assert message.startswith("stream.reclaim_idle: must be greater than delivery.timeout")


def test_reclaim_idle_check_sees_env_overrides() -> None:
    message = config_error({}, {"WEBHOOKD_DELIVERY_TIMEOUT": "90"})
    assert message.startswith("stream.reclaim_idle: ")
    ok = settings_from_mapping(
        {"stream": {"reclaim_idle": 120}}, {"WEBHOOKD_DELIVERY_TIMEOUT": "90"}
    )
    assert ok.stream.reclaim_idle_s == 120.0


# --- the table, the dataclasses and the shipped file agree ---


def test_table_matches_the_dataclasses() -> None:
    for field in dataclasses.fields(Settings):
        if field.name == "source":
            continue
        section_type = type(getattr(DEFAULTS, field.name))
        attributes = [key.attribute for key in KEYS if key.section == field.name]
        assert attributes == [f.name for f in dataclasses.fields(section_type)]


def test_env_var_names_follow_the_contract() -> None:
    for key in KEYS:
        assert key.env_var == f"WEBHOOKD_{key.section.upper()}_{key.name.upper()}"
    assert len({key.env_var for key in KEYS}) == len(KEYS)


def test_shipped_webhookd_toml_is_exactly_the_defaults() -> None:
    settings = load_settings(SHIPPED, {})
    assert dataclasses.replace(settings, source=None) == DEFAULTS


def test_every_key_is_documented_in_the_shipped_file() -> None:
    text = SHIPPED.read_text(encoding="utf-8")
    loaded = tomllib.loads(text)
    sections = dict(re.findall(r"^\[(\w+)\]\n(.*?)(?=^\[|\Z)", text, re.MULTILINE | re.DOTALL))
    for key in KEYS:
        if key.default is None:  # unset by default: present, commented out
            assert key.name not in loaded.get(key.section, {}), key.dotted
            pattern = rf"^# {key.name} = "
            assert re.search(pattern, sections[key.section], re.MULTILINE), key.dotted
        else:
            assert key.name in loaded[key.section], key.dotted


@pytest.mark.parametrize(
    ("quotas", "key"),
    [
        ({"vendor_rate": "lots"}, "quotas.vendor_rate"),
        ({"vendor_rate": "0/minute"}, "quotas.vendor_rate"),
        ({"vendor_rate": "10/fortnight"}, "quotas.vendor_rate"),
        ({"exceeded": "drop"}, "quotas.exceeded"),
        ({"limiter_prefix": ""}, "quotas.limiter_prefix"),
    ],
)
def test_bad_quota_keys_are_named(quotas: dict[str, Any], key: str) -> None:
    assert config_error({"quotas": quotas}).startswith(f"{key}: expected ")


def test_quotas_are_on_only_with_a_rate_or_a_default_plan() -> None:
    assert not DEFAULTS.quotas.enabled
    assert settings_from_mapping({"quotas": {"vendor_rate": "1000/minute"}}).quotas.enabled
    assert settings_from_mapping({"quotas": {"default_plan": "basic"}}).quotas.enabled
    cleared = settings_from_mapping(
        {"quotas": {"default_plan": "basic"}}, {"WEBHOOKD_QUOTAS_DEFAULT_PLAN": ""}
    )
    assert not cleared.quotas.enabled
