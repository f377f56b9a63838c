"""The ``ratelimiter`` command line: ``serve``, ``key create|list|revoke|set-plan`` and
``vendor set-plan|show``.

As with ``webhookd``, ``--config PATH`` goes on the group (``ratelimiter --config F
serve``; default ``config/ratelimiter.toml`` when it exists, or ``RATELIMITER_CONFIG``),
which loads the settings into ``ctx.obj`` and sets up logging; each command also takes
it after its name (``ratelimiter serve --config F``, the documented form), in place of
the group's. A config that cannot be used exits with status 2. With ``redis.url``
unset, the key and vendor commands use the embedded Redis of ``redis.data_dir``: the
running service's, or one started for the command.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click
import structlog
import trio

from configtable import configure_logging, settle_heap
from ratelimiter.async_limiter import AsyncLimiter
from ratelimiter.async_redis import AsyncRedisBackend, AsyncRedisClient
from ratelimiter.config import Settings, load_settings, service_policy
from ratelimiter.embedded import embedded_url
from ratelimiter.errors import ConfigError, RateLimiterError
from ratelimiter.keys import KeyStore
from ratelimiter.policy import Policy
from ratelimiter.vendors import AsyncVendorPlans

T = TypeVar("T")


def main() -> None:
    cli(prog_name="ratelimiter")


def config_failure(error: ConfigError) -> NoReturn:
    click.echo(f"ratelimiter: config error: {error}", err=True)
    raise SystemExit(2)


def startup(path: Path | None) -> Settings:
    """The settings of ``path`` (else the default file), logging set up from them."""
    try:
        settings = load_settings(path)
    except ConfigError as error:
        config_failure(error)
    configure_logging(settings.log_level)
    return settings


CONFIG_PATH = click.Path(path_type=Path, dir_okay=False)


def _command_config(ctx: click.Context, param: click.Parameter, path: Path | None) -> None:
    if path is not None:
        ctx.obj = startup(path)


config_option = click.option(
    "--config",
    type=CONFIG_PATH,
    expose_value=False,
    callback=_command_config,
    help="Config file, in place of the one given to the group.",
)


def policy_of(settings: Settings) -> Policy:
    try:
        return service_policy(settings)
    except ConfigError as error:
        config_failure(error)


@click.group()
@click.option(
    "--config",
    "config_path",
    type=CONFIG_PATH,
    envvar="RATELIMITER_CONFIG",
    help="Config file (default: config/ratelimiter.toml when it exists).",
)
@click.pass_context
def cli(ctx: click.Context, config_path: Path | None) -> None:
    """Sliding-window rate limits, as a service any API gateway can ask."""
    ctx.obj = startup(config_path)


@cli.command()
@config_option
@click.pass_obj
def serve(settings: Settings) -> None:
    """Answer /v1/check and /v1/auth on service.listen until SIGTERM or SIGINT."""
    from ratelimiter.service import run

    policy = policy_of(settings)

    async def main() -> None:
        host, port = settings.service.address
        try:  # bound here, outside any nursery, so that a failure comes out plainly
            listeners = await trio.open_tcp_listeners(port, host=host)
        except OSError as error:
            message = f"cannot listen on {settings.service.listen}: {error}"
            raise click.ClickException(message) from None
        async with trio.open_nursery() as nursery:
            await nursery.start(run, settings, policy, listeners)
            settle_heap()
            with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                async for signum in signals:
                    structlog.get_logger("ratelimiter").info("ratelimiter.stopping", signal=signum)
                    nursery.cancel_scope.cancel()
                    break

    trio.run(main)


@cli.group()
def key() -> None:
    """Manage API keys (kept in Redis, as their SHA-256 only)."""


def with_store(settings: Settings, action: Callable[[AsyncRedisClient], Awaitable[T]]) -> T:
    """Run one operation on the configured Redis, or the embedded one (logs on stderr, so
    that what a command prints can be captured whole: ``KEY=$(ratelimiter key create …)``)."""
    if settings.redis_url == "memory://":
        raise click.ClickException(
            "API keys and vendor plans are kept in Redis, and redis.url is memory://"
        )

    async def run(url: str) -> T:
        # Raised inside the client's task group, an error would come out wrapped in an
        # exception group; carry it out of the block and raise it plainly instead.
        failure: RateLimiterError | None = None
        async with AsyncLimiter.from_url(url, plans=policy_of(settings)) as limiter:
            assert isinstance(limiter.backend, AsyncRedisBackend)
            try:
                return await action(limiter.backend.client)
            except RateLimiterError as error:
                failure = error
        raise failure

    try:
        with embedded_url(settings.redis_url, settings.data_dir) as url:
            return trio.run(run, url)
    except ConfigError as error:
        config_failure(error)
    except RateLimiterError as error:
        raise click.ClickException(str(error)) from None


def with_keys(settings: Settings, action: Callable[[KeyStore], Awaitable[T]]) -> T:
    return with_store(settings, lambda client: action(KeyStore(client, prefix=settings.key_prefix)))


def with_vendors(settings: Settings, action: Callable[[AsyncVendorPlans], Awaitable[T]]) -> T:
    def plans(client: AsyncRedisClient) -> AsyncVendorPlans:
        return AsyncVendorPlans(client, plans=policy_of(settings), prefix=settings.key_prefix)

    return with_store(settings, lambda client: action(plans(client)))


def known_plan(settings: Settings, plan: str, hint: str) -> str:
    plans = policy_of(settings).plans
    if plan not in plans:
        message = f"unknown plan {plan!r} (known plans: {', '.join(plans)})"
        raise click.BadParameter(message, param_hint=hint)
    return plan


def echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2))


@key.command("create")
@click.option("--vendor", required=True, help="Vendor the key belongs to (and counts under).")
@click.option(
    "--plan",
    default=None,
    help="A plan of the key's own, applied besides its vendor's (e.g. a tighter one).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the key with its record as JSON.")
@config_option
@click.pass_obj
def key_create(settings: Settings, vendor: str, plan: str | None, as_json: bool) -> None:
    """Make a key and print it: this is the only time it is shown."""
    if plan is not None:
        plan = known_plan(settings, plan, "'--plan'")
    made, record = with_keys(settings, lambda s: s.create(vendor, plan, now_s=time.time()))
    if as_json:
        echo_json({"key": made, **record.public()})
    else:
        click.echo(made)


@key.command("list")
@click.option("--vendor", default=None, help="Only this vendor's keys.")
@config_option
@click.pass_obj
def key_list(settings: Settings, vendor: str | None) -> None:
    """Print every key's record (never the key) as a JSON list."""
    records = with_keys(settings, lambda s: s.all())
    echo_json([r.public() for r in records if vendor is None or r.vendor == vendor])


@key.command("revoke")
@click.argument("key_or_id")
@config_option
@click.pass_obj
def key_revoke(settings: Settings, key_or_id: str) -> None:
    """Revoke a key, given as its id (key_...) or the key itself."""
    echo_json(with_keys(settings, lambda s: s.revoke(key_or_id, now_s=time.time())).public())


@key.command("set-plan")
@click.argument("key_or_id")
@click.argument("plan")
@config_option
@click.pass_obj
def key_set_plan(settings: Settings, key_or_id: str, plan: str) -> None:
    """Give a key (its id, or the key itself) a plan of its own; "none" takes it away."""
    own = None if plan == "none" else known_plan(settings, plan, "'PLAN'")
    echo_json(with_keys(settings, lambda s: s.set_plan(key_or_id, own)).public())


@cli.group()
def vendor() -> None:
    """Vendors' plans: all of a vendor's API keys share its plan's quota."""


@vendor.command("set-plan")
@click.argument("vendor_id")
@click.argument("plan")
@config_option
@click.pass_obj
def vendor_set_plan(settings: Settings, vendor_id: str, plan: str) -> None:
    """Put a vendor on a plan (from the plans file)."""
    plan = known_plan(settings, plan, "'PLAN'")
    with_vendors(settings, lambda v: v.set_plan(vendor_id, plan))
    echo_json({"vendor": vendor_id, "plan": plan})


@vendor.command("show")
@click.argument("vendor_id")
@config_option
@click.pass_obj
def vendor_show(settings: Settings, vendor_id: str) -> None:
    """Print a vendor's plan and its current usage as JSON.

    A vendor with no plan set is on service.default_plan ("default": true).
    """

    async def show(vendors: AsyncVendorPlans) -> dict[str, Any]:
        plan = await vendors.plan_of(vendor_id)
        applied = settings.service.default_plan
        if plan is not None and plan in policy_of(settings).plans:
            applied = plan
        usage = await vendors.usage(vendor_id, applied)
        return {"vendor": vendor_id, "plan": applied, "default": plan is None,
                "usage": [limit.public() for limit in usage]}  # fmt: skip

    echo_json(with_vendors(settings, show))
