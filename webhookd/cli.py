"""The ``webhookd`` command line: a thin click layer over the daemon, publisher and registry."""

from __future__ import annotations

import json
import secrets
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click
import trio

from configtable import configure_logging, settle_heap
from configtable.logs import LOG_FORMATS
from webhookd import __version__, history
from webhookd.catalog import load_catalog
from webhookd.config import MASTER_KEY_BYTES, Settings, load_settings
from webhookd.connection import RedisClient, open_client, redis_url
from webhookd.errors import (
    ConfigError,
    EndpointError,
    InvalidEventError,
    StoreError,
    WebhookdError,
)
from webhookd.registry import Registry, registry_for
from webhookd.store import Store, store_for
from webhookd.vault import new_master_key, open_vault

T = TypeVar("T")


def main() -> None:
    cli(prog_name="webhookd")


@click.group()
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path),
    envvar="WEBHOOKD_CONFIG",
    help="Config file (default: ./webhookd.toml when present).",
)
@click.option(
    "--log-format",
    type=click.Choice(LOG_FORMATS),
    default=None,
    help="Logs as JSON lines, readable console lines, or auto: console on a terminal "
    "(default: log.format).",
)
@click.version_option(__version__, prog_name="webhookd")
@click.pass_context
def cli(ctx: click.Context, config_path: Path | None, log_format: str | None) -> None:
    """Durable, signed webhook delivery from a Redis stream."""
    try:
        settings = load_settings(config_path)
    except ConfigError as exc:
        click.echo(f"webhookd: config error: {exc}", err=True)
        ctx.exit(2)
    configure_logging(settings.log.level, log_format=log_format or settings.log.format)
    ctx.obj = settings


def with_client(settings: Settings, action: Callable[[RedisClient], Awaitable[T]]) -> T:
    """Run one operation against the configured (or embedded) Redis."""

    async def run(url: str) -> T:
        # Raised inside the client's task group, an error would come out wrapped in an
        # exception group; carry it out of the block and raise it plainly instead.
        failure: WebhookdError | None = None
        async with open_client(url) as client:
            try:
                return await action(client)
            except WebhookdError as exc:
                failure = exc
        raise failure

    with redis_url(settings.redis) as url:
        return trio.run(run, url)


def with_registry(settings: Settings, action: Callable[[Registry], Awaitable[T]]) -> T:
    return with_client(settings, lambda client: action(registry_for(client, settings)))


def with_store(settings: Settings, action: Callable[[Store], Awaitable[T]]) -> T:
    return with_client(settings, lambda client: action(store_for(client, settings)))


def first_leaf(group: BaseExceptionGroup[StoreError]) -> StoreError:
    """The first error in a (nested) group that trio's nurseries built around it."""
    first = group.exceptions[0]
    return first_leaf(first) if isinstance(first, BaseExceptionGroup) else first


def registry_command(action: Callable[[Registry], Awaitable[Any]], settings: Settings) -> Any:
    try:
        return with_registry(settings, action)
    except EndpointError as exc:
        fail(str(exc))
    except ConfigError as exc:
        config_failure(exc)


def echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2))


def fail(message: str) -> NoReturn:
    raise click.ClickException(message)


def config_failure(exc: ConfigError) -> NoReturn:
    """A config problem found after start-up (catalog, master key): exit 2, as at start."""
    click.echo(f"webhookd: config error: {exc}", err=True)
    raise SystemExit(2)


def check_startup(settings: Settings) -> None:
    """Fail before any work if the event catalog, the master key or the plans file
    (with quotas on) cannot be used."""
    from webhookd.quotas import load_plans

    try:
        load_catalog(settings.events.catalog)
        open_vault(settings.secrets, settings.redis)
        if settings.quotas.enabled:
            load_plans(settings.quotas)
    except ConfigError as exc:
        config_failure(exc)


@cli.command()
@click.pass_obj
def run(settings: Settings) -> None:
    """Run the daemon until SIGTERM or SIGINT (a second signal stops at once)."""
    from webhookd.daemon import Daemon

    check_startup(settings)

    async def serve(url: str) -> None:
        async with open_client(url) as client:
            daemon = Daemon(settings, client)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(watch_signals, daemon)
                await nursery.start(run_until_stopped, daemon, nursery.cancel_scope)
                settle_heap()

    async def run_until_stopped(
        daemon: Daemon, everything: trio.CancelScope, *, task_status: trio.TaskStatus[None]
    ) -> None:
        await daemon.run(task_status=task_status)
        everything.cancel()

    async def watch_signals(daemon: Daemon) -> None:
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for _ in signals:
                daemon.stop()
                break
            async for _ in signals:
                daemon.abort()
                break

    unreachable: StoreError | None = None
    try:
        with redis_url(settings.redis) as url:
            trio.run(serve, url)
    except* StoreError as group:
        unreachable = first_leaf(group)
    if unreachable is not None:
        click.echo(f"webhookd: cannot start: {unreachable}", err=True)
        raise SystemExit(1)


@cli.command()
@click.argument("event_type")
@click.option("--vendor", required=True, help="Vendor the event belongs to.")
@click.option("--data", "data_json", required=True, help="Event data: a JSON object.")
@click.option("--id", "event_id", default=None, help="Event id (default: evt_ + entry id).")
@click.pass_obj
def publish(
    settings: Settings, event_type: str, vendor: str, data_json: str, event_id: str | None
) -> None:
    """Publish one event to the stream."""
    from webhookd.publisher import Publisher

    try:
        data = json.loads(data_json)
    except ValueError as exc:
        raise click.BadParameter(f"not valid JSON: {exc}", param_hint="--data") from None
    if not isinstance(data, dict):
        raise click.BadParameter("must be a JSON object", param_hint="--data")
    with redis_url(settings.redis) as url:
        publisher = Publisher.from_url(
            url, stream=settings.stream.name, partitions=settings.stream.partitions
        )
        try:
            click.echo(publisher.publish(event_type, vendor=vendor, data=data, id=event_id))
        except InvalidEventError as exc:
            fail(str(exc))
        finally:
            publisher.close()


@cli.group("secrets")
def secrets_group() -> None:
    """Master keys of the secrets stored encrypted (AES-256-GCM)."""


@secrets_group.command("new-key")
def secrets_new_key() -> None:
    """Print a new random master key, for secrets.key or WEBHOOKD_SECRETS_KEY."""
    click.echo(new_master_key(secrets.token_bytes(MASTER_KEY_BYTES)))


@secrets_group.command("reencrypt")
@click.pass_obj
def secrets_reencrypt(settings: Settings) -> None:
    """Seal every endpoint's secrets under secrets.key.

    Put the new key in secrets.key and the old one in secrets.previous_keys on every
    process first; run this; then drop secrets.previous_keys.
    """

    async def reencrypt(registry: Registry) -> dict[str, Any]:
        return {"reencrypted": await registry.reencrypt(), "key_id": registry.vault.current_id}

    echo_json(registry_command(reencrypt, settings))


@cli.command("demo")
@click.pass_obj
def demo_command(settings: Settings) -> None:
    """Show delivery end to end: a sample vendor, a few events, one retry."""
    from webhookd.demo import demo

    with redis_url(settings.redis) as url:
        if not demo(settings, url):
            raise SystemExit(1)


@cli.command("deliveries")
@click.option("--endpoint", "endpoint_id", default=None, help="Only this endpoint's.")
@click.option("--vendor", default=None, help="Only this vendor's.")
@click.option("--outcome", type=click.Choice(history.OUTCOMES), default=None)
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True)
@click.option("--cursor", default=None, help="Where the previous page ended (printed there).")
@click.pass_obj
def deliveries(
    settings: Settings,
    endpoint_id: str | None,
    vendor: str | None,
    outcome: str | None,
    limit: int,
    cursor: str | None,
) -> None:
    """Delivery history, newest first: each attempt, held or untried dead delivery."""
    which = history.Filter(endpoint_id, vendor, outcome)
    try:
        items, next_cursor = with_store(
            settings, lambda store: history.page(store, which, limit=limit, cursor=cursor)
        )
    except ValueError as exc:
        fail(f"--cursor: {exc}")
    echo_json({"deliveries": items, "next_cursor": next_cursor})


# registered last: these commands use the helpers above
from webhookd.dead_cli import dead  # noqa: E402
from webhookd.endpoint_cli import endpoint  # noqa: E402
from webhookd.ops_cli import catalog, events, status  # noqa: E402
from webhookd.portal_cli import portal  # noqa: E402
from webhookd.vendor_cli import vendor  # noqa: E402

cli.add_command(catalog)
cli.add_command(dead)
cli.add_command(endpoint)
cli.add_command(events)
cli.add_command(status)
cli.add_command(portal)
cli.add_command(vendor)

if __name__ == "__main__":
    main()
