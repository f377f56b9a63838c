"""Settings: turning webhookd.toml and ``WEBHOOKD_*`` variables into frozen values.

Built-in defaults, then the TOML file, then environment overrides, then validation. The
result is a tree of frozen dataclasses, one per section, and each component is handed
only its own section. One data table, ``KEYS``, holds every key with its attribute, kind,
default and meaning; the engine the ratelimiter service shares (``configtable``) drives
parsing, environment overrides and error messages from it, so a key is defined in
exactly one place. Every problem found is reported in one ConfigError, one line per
problem, each line starting with the dotted key.
"""

from __future__ import annotations

import base64
import ipaddress
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from configtable import ConfigFileError, Key, KeyTable, Kind, read_toml, split_listen
from configtable.kinds import (
    BOOL,
    LOG_LEVEL,
    NON_NEGATIVE,
    OPTIONAL_TEXT,
    PATH,
    POSITIVE,
    TEXT,
    choice,
    fit,
    integer,
    listen_address,
    number,
)
from configtable.logs import LOG_FORMATS
from ratelimiter import InvalidLimit, parse_limit
from webhookd.errors import ConfigError

ENV_PREFIX = "WEBHOOKD_"
CONFIG_ENV_VAR = "WEBHOOKD_CONFIG"
DEFAULT_CONFIG_NAME = "webhookd.toml"
MASTER_KEY_BYTES = 32  # secrets.key: an AES-256 key


@dataclass(frozen=True, slots=True)
class RedisSettings:
    """Where Redis is; the embedded server and every component that opens a client get it."""

    url: str | None
    data_dir: Path
    key_prefix: str


@dataclass(frozen=True, slots=True)
class StreamSettings:
    """How events are read: intake, the reclaimer and the publisher get it."""

    name: str
    group: str
    dead: str
    ops: str
    partitions: int
    batch_size: int
    block_s: float
    reclaim_idle_s: float
    retention_s: float
    consumer: str | None

    @property
    def stream_names(self) -> tuple[str, ...]:
        """The streams producers write and intake reads: ``<name>:<i>`` once partitioned."""
        if self.partitions == 1:
            return (self.name,)
        return tuple(f"{self.name}:{index}" for index in range(self.partitions))


@dataclass(frozen=True, slots=True)
class DeliverySettings:
    """How each delivery is made and bounded: the dispatcher and the sender get it."""

    timeout_s: float
    endpoint_concurrency: int
    max_in_flight: int
    require_https: bool
    allow_private_targets: bool
    max_response_body: int
    shutdown_grace_s: float
    record_ttl_s: float
    max_payload_bytes: int
    source_address: str | None
    rotation_grace_s: float
    max_pause_s: float
    history_entries: int


@dataclass(frozen=True, slots=True)
class RetrySettings:
    """When failed attempts are tried again: the pure retry policy gets it."""

    schedule_s: tuple[float, ...]
    jitter: float


@dataclass(frozen=True, slots=True)
class QuotaSettings:
    """Per-vendor webhook quotas, off unless a rate or a default plan is set: the quota
    gate and the ``vendor`` commands get it."""

    vendor_rate: str | None
    default_plan: str | None
    plans: Path
    exceeded: str  # "defer" or "dead_letter"
    limiter_prefix: str

    @property
    def enabled(self) -> bool:
        return self.vendor_rate is not None or self.default_plan is not None


@dataclass(frozen=True, slots=True)
class AdminSettings:
    """Where the admin API listens and who may use it: only the admin server gets it."""

    listen: str
    token: str | None = field(repr=False)  # kept out of logs and tracebacks

    @property
    def address(self) -> tuple[str, int]:
        """``listen`` as (host, port) for binding, an IPv6 host without its brackets."""
        return split_listen(self.listen)


@dataclass(frozen=True, slots=True)
class EventsSettings:
    """Which event types exist and what becomes of others: intake and the registry get it."""

    catalog: Path
    unknown: str  # "deliver" or "dead_letter"


@dataclass(frozen=True, slots=True)
class SecretsSettings:
    """The master keys sealing secrets at rest: only the vault gets it."""

    key: bytes | None = field(repr=False)  # encrypts, and decrypts
    previous_keys: tuple[bytes, ...] = field(repr=False)  # decrypt only, while re-encrypting


@dataclass(frozen=True, slots=True)
class LogSettings:
    """How verbose logs are: read once where logging is configured."""

    level: str
    format: str  # auto | json | console


@dataclass(frozen=True, slots=True)
class HealthSettings:
    """When a failing endpoint is disabled: the pipeline gets it."""

    disable_after_s: float


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything read at start; the entry point hands each component its own section."""

    redis: RedisSettings
    stream: StreamSettings
    delivery: DeliverySettings
    retry: RetrySettings
    quotas: QuotaSettings
    health: HealthSettings
    admin: AdminSettings
    events: EventsSettings
    secrets: SecretsSettings
    log: LogSettings
    source: Path | None


def _schedule_text(text: str) -> list[Any]:
    """``[1, 2.5, 4]`` (TOML, hence also JSON) or ``1,2.5,4``; empty is an error, not []."""
    if not text.strip().startswith("["):
        return [float(part) for part in text.split(",")]
    try:
        parsed = tomllib.loads(f"schedule = {text.strip()}")
    except tomllib.TOMLDecodeError:
        raise ValueError from None
    return list(fit(parsed, len(parsed) == 1)["schedule"])  # nothing smuggled in after it


_URL_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")

_REDIS_URL = Kind(
    "a URL such as redis://host:6379/0",
    lambda v: fit(OPTIONAL_TEXT.parse(v), v in ("", None) or _URL_SCHEME.match(v) is not None),
)
_SCHEDULE = Kind(
    "a list of positive numbers such as [1, 2.5, 4]",
    lambda v: tuple(POSITIVE.parse(item) for item in fit(v, isinstance(v, list | tuple))),
    _schedule_text,
)
_LISTEN_ADDRESS = listen_address("host:port with a port from 0 to 65535 (IPv6 as [::1]:8080)")


def _master_key(value: Any) -> bytes:
    """Base64 of exactly 32 bytes: an AES-256 key, the only size the vault takes."""
    if not isinstance(value, str):
        raise ValueError
    key = base64.b64decode(value.strip(), validate=True)  # binascii.Error is a ValueError
    if len(key) != MASTER_KEY_BYTES:
        raise ValueError
    return key


def _ip_address(value: Any) -> str | None:
    text = OPTIONAL_TEXT.parse(value)
    return None if text is None else str(ipaddress.ip_address(text))


_MASTER_KEY = Kind(
    "base64 of 32 random bytes, as `webhookd secrets new-key` prints (empty means unset)",
    lambda v: None if v in ("", None) else _master_key(v),
)
_MASTER_KEYS = Kind(
    "a list of base64 32-byte keys",
    lambda v: tuple(_master_key(k) for k in fit(v, isinstance(v, list | tuple))),
    lambda text: [part.strip() for part in text.split(",") if part.strip()],
)
_IP_ADDRESS = Kind("an IP address such as 192.0.2.10 (empty means unset)", _ip_address)
_UNKNOWN_EVENT = choice('"deliver" or "dead_letter"', "deliver", "dead_letter")
_EXCEEDED_KIND = choice('"defer" or "dead_letter"', "defer", "dead_letter")


def _limit_text(value: Any) -> str | None:
    """A limit expression as the limiter parses it (kept as written), or None."""
    text: str | None = OPTIONAL_TEXT.parse(value)
    if text is not None:
        try:
            parse_limit(text)
        except InvalidLimit:
            raise ValueError from None
    return text


_LIMIT = Kind('a limit such as "1000/minute" (empty means unset)', _limit_text)

# A stream name is the hash tag of its partition's keys ("{<name>}:retry"), so no braces.
_STREAM_NAME = Kind(
    "a non-empty name without { or }",
    lambda v: fit(v, isinstance(v, str) and v != "" and not set(v) & set("{}")),
)

# fmt: off
KEYS = KeyTable(ENV_PREFIX, [
    Key("redis", "url", "url", _REDIS_URL, None,
        "Redis to use; unset starts an embedded redis-server"),
    Key("redis", "data_dir", "data_dir", PATH, Path(".webhookd"),
        "where the embedded redis-server keeps its data"),
    Key("redis", "key_prefix", "key_prefix", TEXT, "webhookd",
        "namespace of the registry, retry and delivery-record keys"),
    Key("stream", "name", "name", _STREAM_NAME, "webhookd:events", "the stream producers write to"),
    Key("stream", "group", "group", TEXT, "webhookd", "consumer group"),
    Key("stream", "dead", "dead", TEXT, "webhookd:dead", "dead-letter stream"),
    Key("stream", "ops", "ops", TEXT, "webhookd:ops",
        "operational events (endpoint.disabled, ...)"),
    Key("stream", "partitions", "partitions", integer(1), 1,
        "number of streams; above 1 they are <name>:0 .. <name>:<n-1>"),
    Key("stream", "batch_size", "batch_size", integer(1, 10000), 100,
        "entries asked for per XREADGROUP (COUNT)"),
    Key("stream", "block", "block_s", POSITIVE, 1.0, "seconds an XREADGROUP waits (BLOCK)"),
    Key("stream", "reclaim_idle", "reclaim_idle_s", POSITIVE, 60.0,
        "seconds pending before another consumer reclaims an entry"),
    Key("stream", "retention", "retention_s", POSITIVE, 604800.0,
        "seconds acked entries stay in the stream (for replays) before they are trimmed"),
    Key("stream", "consumer", "consumer", OPTIONAL_TEXT, None,
        "consumer name; unset means unique per process"),
    Key("delivery", "timeout", "timeout_s", POSITIVE, 10.0, "seconds per attempt"),
    Key("delivery", "endpoint_concurrency", "endpoint_concurrency", integer(1), 16,
        "most requests in flight to one endpoint (its connection pool size)"),
    Key("delivery", "max_in_flight", "max_in_flight", integer(1), 1024,
        "most deliveries in flight in one process"),
    Key("delivery", "require_https", "require_https", BOOL, True,
        "refuse http:// endpoint URLs"),
    Key("delivery", "allow_private_targets", "allow_private_targets", BOOL, False,
        "allow loopback, private and link-local targets"),
    Key("delivery", "max_response_body", "max_response_body", integer(0), 65536,
        "bytes of a response body kept with the attempt"),
    Key("delivery", "shutdown_grace", "shutdown_grace_s", NON_NEGATIVE, 30.0,
        "seconds SIGTERM waits for in-flight deliveries"),
    Key("delivery", "record_ttl", "record_ttl_s", POSITIVE, 604800.0,
        "seconds delivery records are kept"),
    Key("delivery", "max_payload_bytes", "max_payload_bytes", integer(1), 262144,
        "largest delivery body; a bigger event is dead-lettered"),
    Key("delivery", "source_address", "source_address", _IP_ADDRESS, None,
        "local address deliveries connect from; unset lets the system choose"),
    Key("delivery", "rotation_grace", "rotation_grace_s", NON_NEGATIVE, 86400.0,
        "seconds a rotated-out secret keeps signing"),
    Key("delivery", "max_pause", "max_pause_s", NON_NEGATIVE, 3600.0,
        "longest pause a 429 or 503 with Retry-After puts on its endpoint"),
    Key("delivery", "history_entries", "history_entries", integer(0), 100000,
        "delivery history entries kept per partition (about; 0 keeps none)"),
    Key("retry", "schedule", "schedule_s", _SCHEDULE, (1.0, 2.0, 4.0, 8.0, 16.0),
        "seconds before each retry"),
    Key("retry", "jitter", "jitter",
        number("a number from 0 to 1", lambda number: 0 <= number <= 1), 0.1,
        "up to this fraction of each delay added at random"),
    Key("quotas", "vendor_rate", "vendor_rate", _LIMIT, None,
        "webhook attempts per vendor, all endpoints and daemons together; unset: no limit"),
    Key("quotas", "default_plan", "default_plan", OPTIONAL_TEXT, None,
        "plan of a vendor without one, for its webhooks_per_day; unset: no daily quota"),
    Key("quotas", "plans", "plans", PATH, Path("config/plans.toml"),
        "the limiter's plans file (webhooks_per_day per plan)"),
    Key("quotas", "exceeded", "exceeded", _EXCEEDED_KIND, "defer",
        "over the daily quota: defer to the next window, or dead_letter"),
    Key("quotas", "limiter_prefix", "limiter_prefix", TEXT, "rl",
        "the limiter's redis.key_prefix: vendors' plans and webhook counters live under it"),
    Key("health", "disable_after", "disable_after_s", NON_NEGATIVE, 432000.0,
        "seconds of nothing but failed attempts before an endpoint is disabled (0: never)"),
    Key("admin", "listen", "listen", _LISTEN_ADDRESS, "127.0.0.1:8080",
        "address of the admin API, /metrics and /healthz"),
    Key("admin", "token", "token", OPTIONAL_TEXT, None,
        "bearer token of the admin API; unset refuses every admin call", secret=True),
    Key("events", "catalog", "catalog", PATH, Path("config/events.toml"),
        "the event-type catalog"),
    Key("events", "unknown", "unknown", _UNKNOWN_EVENT, "deliver",
        "what becomes of an event whose type is not in the catalog"),
    Key("secrets", "key", "key", _MASTER_KEY, None,
        "master key sealing secrets at rest; unset uses a key file in redis.data_dir",
        secret=True),
    Key("secrets", "previous_keys", "previous_keys", _MASTER_KEYS, (),
        "older master keys, for decrypting only", secret=True),
    Key("log", "level", "level", LOG_LEVEL, "info", "least severe log level written"),
    Key("log", "format", "format", choice("one of auto, json, console", *LOG_FORMATS), "auto",
        "json lines, console (readable), or auto: console when stderr is a terminal"),
])
# fmt: on

_SECTIONS: dict[str, type[Any]] = {
    "redis": RedisSettings,
    "stream": StreamSettings,
    "delivery": DeliverySettings,
    "retry": RetrySettings,
    "quotas": QuotaSettings,
    "health": HealthSettings,
    "admin": AdminSettings,
    "events": EventsSettings,
    "secrets": SecretsSettings,
    "log": LogSettings,
}


def default_config_path(environ: Mapping[str, str]) -> Path | None:
    """``WEBHOOKD_CONFIG`` if set, else ``./webhookd.toml`` if it exists, else None."""
    if environ.get(CONFIG_ENV_VAR):
        return Path(environ[CONFIG_ENV_VAR])
    local = Path.cwd() / DEFAULT_CONFIG_NAME
    return local if local.exists() else None


def load_settings(path: Path | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Read the config file and apply the environment: the daemon's start-up edge.

    ``environ`` defaults to this process's environment; a missing explicit ``path``
    (or ``WEBHOOKD_CONFIG``) is an error, while a missing ``./webhookd.toml`` is not.
    """
    env = os.environ if environ is None else environ
    note = ""
    if path is None:
        path = default_config_path(env)
        if path is None:
            return _build({}, env, source=None)
        if env.get(CONFIG_ENV_VAR):
            note = f" (from {CONFIG_ENV_VAR})"
    return _build(_read_toml(path, note), env, source=path)


def settings_from_mapping(
    data: Mapping[str, Any], environ: Mapping[str, str] | None = None
) -> Settings:
    """Settings from already-parsed TOML data; no I/O, and no overrides unless given."""
    return _build(data, environ or {}, source=None)


def _read_toml(path: Path, note: str) -> dict[str, Any]:
    try:
        return read_toml(path, "config file", note)
    except ConfigFileError as error:
        raise ConfigError(str(error)) from None


def _build(data: Mapping[str, Any], environ: Mapping[str, str], source: Path | None) -> Settings:
    reading = KEYS.read(data, environ, source)
    problems, values = reading.problems, reading.values
    timeout_s, reclaim_idle_s = values["delivery.timeout"], values["stream.reclaim_idle"]
    if not problems and reclaim_idle_s <= timeout_s:
        problems.append(
            f"stream.reclaim_idle: must be greater than delivery.timeout ({timeout_s:g} s), "
            f"or entries are reclaimed while their deliveries are still in flight, "
            f"got {reclaim_idle_s:g}{reading.notes['stream.reclaim_idle']}"
        )
    if problems:
        raise ConfigError("\n".join(problems))
    sections = {
        section: cls(**KEYS.attributes(section, values)) for section, cls in _SECTIONS.items()
    }
    return Settings(**sections, source=source)
