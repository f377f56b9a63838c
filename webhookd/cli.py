"""The ``webhookd`` command line: a thin click layer over the daemon, publisher and registry."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click
import coredis
import trio

from webhookd import __version__
from webhookd.config import Settings, load_settings
from webhookd.connection import open_client, redis_url
from webhookd.errors import ConfigError, EndpointError, InvalidEventError, WebhookdError
from webhookd.logs import configure
from webhookd.queue import Queue
from webhookd.registry import Registry, registry_for

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
@click.version_option(__version__, prog_name="webhookd")
@click.pass_context
def cli(ctx: click.Context, config_path: Path | None) -> None:
    """Durable, signed webhook delivery from a Redis stream."""
    try:
        settings = load_settings(config_path)
    except ConfigError as exc:
        click.echo(f"webhookd: config error: {exc}", err=True)
        ctx.exit(2)
    configure(settings.log.level)
    ctx.obj = settings


def with_client(settings: Settings, action: Callable[[coredis.Redis[bytes]], Awaitable[T]]) -> T:
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


def with_queue(settings: Settings, action: Callable[[Queue], Awaitable[T]]) -> T:
    def make(client: coredis.Redis[bytes]) -> Queue:
        return Queue(
            client, settings.stream, settings.redis.key_prefix, settings.delivery.record_ttl_s
        )

    return with_client(settings, lambda client: action(make(client)))


def echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2))


def fail(message: str) -> NoReturn:
    raise click.ClickException(message)


@cli.command()
@click.pass_obj
def run(settings: Settings) -> None:
    """Run the daemon until SIGTERM or SIGINT (a second signal stops at once)."""
    from webhookd.daemon import Daemon

    async def serve(url: str) -> None:
        async with open_client(url) as client:
            daemon = Daemon(settings, client)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(watch_signals, daemon)
                await daemon.run()
                nursery.cancel_scope.cancel()

    async def watch_signals(daemon: Daemon) -> None:
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for _ in signals:
                daemon.stop()
                break
            async for _ in signals:
                daemon.abort()
                break

    with redis_url(settings.redis) as url:
        trio.run(serve, url)


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


@cli.group()
def endpoint() -> None:
    """Manage vendor endpoints (subscriptions)."""


def registry_command(action: Callable[[Registry], Awaitable[Any]], settings: Settings) -> Any:
    try:
        return with_registry(settings, action)
    except EndpointError as exc:
        fail(str(exc))


@endpoint.command("add")
@click.option("--vendor", required=True)
@click.option("--url", required=True, help="Where deliveries are POSTed (https://…).")
@click.option(
    "--events", default="*", show_default=True, help="Comma-separated types or 'prefix.*'."
)
@click.option("--secret", default=None, help="A whsec_… secret (default: a new random one).")
@click.pass_obj
def endpoint_add(
    settings: Settings, vendor: str, url: str, events: str, secret: str | None
) -> None:
    """Register an endpoint and print it (with its secret) as JSON."""
    found = registry_command(
        lambda r: r.add(vendor, url, events, secret, now_s=time.time()), settings
    )
    echo_json(found.public())


@endpoint.command("list")
@click.option("--vendor", default=None, help="Only this vendor's endpoints.")
@click.pass_obj
def endpoint_list(settings: Settings, vendor: str | None) -> None:
    """Print every endpoint as a JSON list."""
    endpoints = registry_command(lambda r: r.all(), settings)
    echo_json([e.public() for e in endpoints if vendor is None or e.vendor == vendor])


@endpoint.command("show")
@click.argument("endpoint_id")
@click.pass_obj
def endpoint_show(settings: Settings, endpoint_id: str) -> None:
    echo_json(registry_command(lambda r: r.get(endpoint_id), settings).public())


@endpoint.command("disable")
@click.argument("endpoint_id")
@click.pass_obj
def endpoint_disable(settings: Settings, endpoint_id: str) -> None:
    found = registry_command(
        lambda r: r.set_enabled(endpoint_id, False, "disabled by operator"), settings
    )
    echo_json(found.public())


@endpoint.command("enable")
@click.argument("endpoint_id")
@click.pass_obj
def endpoint_enable(settings: Settings, endpoint_id: str) -> None:
    echo_json(registry_command(lambda r: r.set_enabled(endpoint_id, True), settings).public())


@endpoint.command("rm")
@click.argument("endpoint_id")
@click.pass_obj
def endpoint_rm(settings: Settings, endpoint_id: str) -> None:
    registry_command(lambda r: r.remove(endpoint_id), settings)
    echo_json({"id": endpoint_id, "removed": True})


@endpoint.command("rotate-secret")
@click.argument("endpoint_id")
@click.pass_obj
def endpoint_rotate(settings: Settings, endpoint_id: str) -> None:
    """Make a new secret; the old one keeps signing alongside it for 24 hours."""
    found = registry_command(lambda r: r.rotate_secret(endpoint_id, now_s=time.time()), settings)
    echo_json(found.public())


@cli.command("demo")
@click.pass_obj
def demo_command(settings: Settings) -> None:
    """Show delivery end to end: a sample vendor, a few events, one retry."""
    from webhookd.demo import demo

    with redis_url(settings.redis) as url:
        if not demo(settings, url):
            raise SystemExit(1)


@cli.group()
def dead() -> None:
    """Inspect and redrive dead letters."""


@dead.command("list")
@click.option("--limit", default=100, show_default=True, help="How many, oldest first.")
@click.pass_obj
def dead_list(settings: Settings, limit: int) -> None:
    """Print dead letters as JSON (without their bodies)."""
    letters = with_queue(settings, lambda q: q.dead_letters(limit))
    echo_json([
        {"id": dead_id, **{k: v for k, v in fields.items() if k != "body"}}
        for dead_id, fields in letters
    ])  # fmt: skip


@dead.command("redrive")
@click.option("--endpoint", "endpoint_id", default=None, help="Only this endpoint's letters.")
@click.pass_obj
def dead_redrive(settings: Settings, endpoint_id: str | None) -> None:
    """Send dead deliveries again, each with a fresh retry schedule."""
    count = with_queue(settings, lambda q: q.redrive(time.time(), endpoint_id=endpoint_id))
    echo_json({"redriven": count})


if __name__ == "__main__":
    main()
