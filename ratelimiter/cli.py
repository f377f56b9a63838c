"""The ``ratelimiter`` command line: ``serve``, and ``key create|list|revoke|set-plan``.

Every command takes ``--config PATH`` (default ``config/ratelimiter.toml`` when it
exists, or ``RATELIMITER_CONFIG``); a config that cannot be used exits with status 2.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click
import structlog
import trio

from ratelimiter.async_limiter import AsyncLimiter
from ratelimiter.async_redis import AsyncRedisBackend
from ratelimiter.config import Settings, load_settings, service_policy
from ratelimiter.errors import ConfigError, RateLimiterError
from ratelimiter.keys import KeyStore
from ratelimiter.policy import Policy

T = TypeVar("T")


def main() -> None:
    cli(prog_name="ratelimiter")


def config_failure(error: ConfigError) -> NoReturn:
    click.echo(f"ratelimiter: config error: {error}", err=True)
    raise SystemExit(2)


def _settings(ctx: click.Context, param: click.Parameter, path: Path | None) -> Settings:
    try:
        return load_settings(path)
    except ConfigError as error:
        config_failure(error)


config_option = click.option(
    "--config",
    "settings",
    type=click.Path(path_type=Path, dir_okay=False),
    envvar="RATELIMITER_CONFIG",
    callback=_settings,
    help="Config file (default: config/ratelimiter.toml when it exists).",
)


def policy_of(settings: Settings) -> Policy:
    try:
        return service_policy(settings)
    except ConfigError as error:
        config_failure(error)


@click.group()
def cli() -> None:
    """Sliding-window rate limits, as a service any API gateway can ask."""


@cli.command()
@config_option
def serve(settings: Settings) -> None:
    """Answer /v1/check and /v1/auth on service.listen until SIGTERM or SIGINT."""
    from ratelimiter.service import run

    policy = policy_of(settings)
    configure_logging(settings.log_level)

    async def main() -> None:
        host, port = settings.service.address
        try:  # bound here, outside any nursery, so that a failure comes out plainly
            listeners = await trio.open_tcp_listeners(port, host=host)
        except OSError as error:
            message = f"cannot listen on {settings.service.listen}: {error}"
            raise click.ClickException(message) from None
        async with trio.open_nursery() as nursery:
            await nursery.start(run, settings, policy, listeners)
            with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                async for signum in signals:
                    structlog.get_logger("ratelimiter").info("ratelimiter.stopping", signal=signum)
                    nursery.cancel_scope.cancel()
                    break

    trio.run(main)


@cli.group()
def key() -> None:
    """Manage API keys (kept in Redis, as their SHA-256 only)."""


def with_keys(settings: Settings, action: Callable[[KeyStore], Awaitable[T]]) -> T:
    """Run one operation on the key store of the configured Redis."""
    if settings.redis_url is None:
        raise click.ClickException(
            "API keys are kept in Redis: set redis.url (or RATELIMITER_REDIS_URL)"
        )
    url = settings.redis_url

    async def run() -> T:
        # Raised inside the client's task group, an error would come out wrapped in an
        # exception group; carry it out of the block and raise it plainly instead.
        failure: RateLimiterError | None = None
        async with AsyncLimiter.from_url(url, plans=policy_of(settings)) as limiter:
            assert isinstance(limiter.backend, AsyncRedisBackend)
            store = KeyStore(limiter.backend.client, prefix=settings.key_prefix)
            try:
                return await action(store)
            except RateLimiterError as error:
                failure = error
        raise failure

    try:
        return trio.run(run)
    except RateLimiterError as error:
        raise click.ClickException(str(error)) from None


def known_plan(settings: Settings, plan: str, hint: str) -> str:
    plans = policy_of(settings).plans
    if plan not in plans:
        message = f"unknown plan {plan!r} (known plans: {', '.join(plans)})"
        raise click.BadParameter(message, param_hint=hint)
    return plan


def echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2))


@key.command("create")
@click.option("--vendor", required=True, help="Vendor the key belongs to.")
@click.option("--plan", required=True, help="Plan the key is limited by (from the plans file).")
@click.option("--json", "as_json", is_flag=True, help="Print the key with its record as JSON.")
@config_option
def key_create(settings: Settings, vendor: str, plan: str, as_json: bool) -> None:
    """Make a key and print it: this is the only time it is shown."""
    plan = known_plan(settings, plan, "'--plan'")
    made, record = with_keys(settings, lambda s: s.create(vendor, plan, now_s=time.time()))
    if as_json:
        echo_json({"key": made, **record.public()})
    else:
        click.echo(made)


@key.command("list")
@click.option("--vendor", default=None, help="Only this vendor's keys.")
@config_option
def key_list(settings: Settings, vendor: str | None) -> None:
    """Print every key's record (never the key) as a JSON list."""
    records = with_keys(settings, lambda s: s.all())
    echo_json([r.public() for r in records if vendor is None or r.vendor == vendor])


@key.command("revoke")
@click.argument("key_or_id")
@config_option
def key_revoke(settings: Settings, key_or_id: str) -> None:
    """Revoke a key, given as its id (key_...) or the key itself."""
    echo_json(with_keys(settings, lambda s: s.revoke(key_or_id, now_s=time.time())).public())


@key.command("set-plan")
@click.argument("key_or_id")
@click.argument("plan")
@config_option
def key_set_plan(settings: Settings, key_or_id: str, plan: str) -> None:
    """Move a key (its id, or the key itself) to another plan."""
    plan = known_plan(settings, plan, "'PLAN'")
    echo_json(with_keys(settings, lambda s: s.set_plan(key_or_id, plan)).public())


def configure_logging(level: str) -> None:
    """JSON logs, one object per line on stderr; configured once, here."""
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )
