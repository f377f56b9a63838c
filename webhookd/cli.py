"""The ``webhookd`` command line: a thin click layer over the daemon, publisher and registry."""

from __future__ import annotations

import json
import secrets
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click
import structlog
import trio

from configtable import configure_logging
from webhookd import __version__
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
from webhookd.openapi import MAX_ROTATION_GRACE_S
from webhookd.options import NO_OPTIONS, delivery_options
from webhookd.redrive import redrive
from webhookd.registry import Registry, endpoint_tls, registry_for
from webhookd.store import Store
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
@click.version_option(__version__, prog_name="webhookd")
@click.pass_context
def cli(ctx: click.Context, config_path: Path | None) -> None:
    """Durable, signed webhook delivery from a Redis stream."""
    try:
        settings = load_settings(config_path)
    except ConfigError as exc:
        click.echo(f"webhookd: config error: {exc}", err=True)
        ctx.exit(2)
    configure_logging(settings.log.level)
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
    def make(client: RedisClient) -> Store:
        return Store(
            client, settings.stream, settings.redis.key_prefix, settings.delivery.record_ttl_s
        )

    return with_client(settings, lambda client: action(make(client)))


def first_leaf(group: BaseExceptionGroup[StoreError]) -> StoreError:
    """The first error in a (nested) group that trio's nurseries built around it."""
    first = group.exceptions[0]
    return first_leaf(first) if isinstance(first, BaseExceptionGroup) else first


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


@cli.group()
def endpoint() -> None:
    """Manage vendor endpoints (subscriptions)."""


def registry_command(action: Callable[[Registry], Awaitable[Any]], settings: Settings) -> Any:
    try:
        return with_registry(settings, action)
    except EndpointError as exc:
        fail(str(exc))
    except ConfigError as exc:
        config_failure(exc)


def read_pem(path: Path | None) -> str | None:
    return None if path is None else path.read_text(encoding="ascii")


DEFAULT_WORD = "default"


def delivery_option_flags(command: Callable[..., Any]) -> Callable[..., Any]:
    """The per-endpoint delivery options shared by ``endpoint add`` and ``update``."""
    flags = [
        click.option("--retry-schedule", default=None,
                     help="Seconds before each retry, e.g. 1,2,4,3600 (default: retry.schedule)."),
        click.option("--timeout", default=None, help="Seconds per attempt (delivery.timeout)."),
        click.option("--concurrency", default=None,
                     help="Most requests in flight (delivery.endpoint_concurrency)."),
        click.option("--header", "headers", multiple=True, metavar="'NAME: VALUE'",
                     help="An extra header sent with every delivery; repeatable."),
    ]  # fmt: skip
    for flag in reversed(flags):
        command = flag(command)
    return command


def option_changes(
    retry_schedule: str | None, timeout: str | None, concurrency: str | None
) -> dict[str, Any]:
    """The options given on the command line, as the admin API names them; the word
    ``default`` (null) goes back to the global setting."""
    changes: dict[str, Any] = {}
    if retry_schedule is not None:
        changes["retry_schedule"] = None if retry_schedule == DEFAULT_WORD else retry_schedule
    for name, text in (("timeout", timeout), ("concurrency", concurrency)):
        if text is None:
            continue
        if text == DEFAULT_WORD:
            changes[name] = None
            continue
        try:
            changes[name] = int(text) if name == "concurrency" else float(text)
        except ValueError:
            raise click.BadParameter(f"not a number: {text!r}", param_hint=f"--{name}") from None
    return changes


@endpoint.command("add")
@click.option("--vendor", required=True)
@click.option("--url", required=True, help="Where deliveries are POSTed (https://…).")
@click.option(
    "--events", default="*", show_default=True, help="Comma-separated types or 'prefix.*'."
)
@click.option("--secret", default=None, help="A whsec_… secret (default: a new random one).")
@click.option(
    "--signing",
    type=click.Choice(["hmac", "ed25519"]),
    default="hmac",
    show_default=True,
    help="ed25519 also signs every delivery as Standard Webhooks v1a (public key shown).",
)
@click.option(
    "--ca-cert",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="PEM CA to trust for this endpoint instead of the system's.",
)
@click.option(
    "--client-cert",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="PEM client certificate (chain) to present (mTLS).",
)
@click.option(
    "--client-key",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="PEM private key of --client-cert (stored encrypted).",
)
@delivery_option_flags
@click.pass_obj
def endpoint_add(
    settings: Settings,
    vendor: str,
    url: str,
    events: str,
    secret: str | None,
    signing: str,
    ca_cert: Path | None,
    client_cert: Path | None,
    client_key: Path | None,
    retry_schedule: str | None,
    timeout: str | None,
    concurrency: str | None,
    headers: tuple[str, ...],
) -> None:
    """Register an endpoint and print it (with its secret) as JSON."""
    changes = option_changes(retry_schedule, timeout, concurrency)
    if headers:
        changes["headers"] = list(headers)
    try:
        tls = endpoint_tls(read_pem(ca_cert), read_pem(client_cert), read_pem(client_key))
        options = delivery_options(changes, NO_OPTIONS)
    except (EndpointError, OSError, UnicodeDecodeError) as exc:
        fail(str(exc))
    found = registry_command(
        lambda r: r.add(vendor, url, events, secret, now_s=time.time(), signing=signing,
                        tls=tls, options=options),
        settings,
    )  # fmt: skip
    echo_json(found.public(secret=True))


@endpoint.command("update")
@click.argument("endpoint_id")
@click.option("--url", default=None, help="A new URL.")
@click.option("--events", default=None, help="New comma-separated types or 'prefix.*'.")
@delivery_option_flags
@click.option("--no-headers", is_flag=True, help="Send no extra headers any more.")
@click.pass_obj
def endpoint_update(
    settings: Settings,
    endpoint_id: str,
    url: str | None,
    events: str | None,
    retry_schedule: str | None,
    timeout: str | None,
    concurrency: str | None,
    headers: tuple[str, ...],
    no_headers: bool,
) -> None:
    """Change an endpoint; an option given as 'default' goes back to the global setting,
    and --header replaces every extra header."""
    changes = option_changes(retry_schedule, timeout, concurrency)
    if url is not None:
        changes["url"] = url
    if events is not None:
        changes["events"] = events
    if headers or no_headers:
        changes["headers"] = list(headers)
    echo_json(registry_command(lambda r: r.update(endpoint_id, changes), settings).public())


@endpoint.command("list")
@click.option("--vendor", default=None, help="Only this vendor's endpoints.")
@click.pass_obj
def endpoint_list(settings: Settings, vendor: str | None) -> None:
    """Print every endpoint as a JSON list (without secrets)."""
    endpoints = registry_command(lambda r: r.all(), settings)
    echo_json([e.public() for e in endpoints if vendor is None or e.vendor == vendor])


@endpoint.command("show")
@click.argument("endpoint_id")
@click.pass_obj
def endpoint_show(settings: Settings, endpoint_id: str) -> None:
    """Print one endpoint as JSON (without its secret: see reveal-secret)."""
    echo_json(registry_command(lambda r: r.get(endpoint_id), settings).public())


@endpoint.command("reveal-secret")
@click.argument("endpoint_id")
@click.pass_obj
def endpoint_reveal(settings: Settings, endpoint_id: str) -> None:
    """Print one endpoint as JSON with its current secret; the reveal is logged."""
    found = registry_command(lambda r: r.get(endpoint_id), settings)
    structlog.get_logger("webhookd.cli").warning(
        "endpoint.secret_revealed", endpoint_id=found.id, vendor=found.vendor
    )
    echo_json(found.public(secret=True))


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
@click.option(
    "--grace",
    type=click.FloatRange(min=0, max=MAX_ROTATION_GRACE_S),
    default=None,
    help="Seconds the old secret keeps signing (default: delivery.rotation_grace, 24 h; "
    "at most 30 days); 0 drops it at once, as after a leak.",
)
@click.pass_obj
def endpoint_rotate(settings: Settings, endpoint_id: str, grace: float | None) -> None:
    """Make a new secret (and ed25519 key); the old ones keep signing alongside for a while."""
    found = registry_command(
        lambda r: r.rotate_secret(endpoint_id, now_s=time.time(), grace_s=grace), settings
    )
    echo_json(found.public(secret=True))


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


@cli.group()
def dead() -> None:
    """Inspect and redrive dead letters."""


@dead.command("list")
@click.option("--limit", default=100, show_default=True, help="How many, oldest first.")
@click.pass_obj
def dead_list(settings: Settings, limit: int) -> None:
    """Print dead letters as JSON (without their bodies)."""
    letters = with_store(settings, lambda store: store.dead_letters(limit))
    echo_json([
        {"id": dead_id, **{k: v for k, v in fields.items() if k != "body"}}
        for dead_id, fields in letters
    ])  # fmt: skip


@dead.command("redrive")
@click.option("--endpoint", "endpoint_id", default=None, help="Only this endpoint's letters.")
@click.pass_obj
def dead_redrive(settings: Settings, endpoint_id: str | None) -> None:
    """Send dead deliveries again, each with a fresh retry schedule."""
    count = with_store(settings, lambda store: redrive(store, time.time(), endpoint_id=endpoint_id))
    echo_json({"redriven": count})


# registered last: the vendor commands use the helpers above
from webhookd.vendor_cli import vendor  # noqa: E402

cli.add_command(vendor)

if __name__ == "__main__":
    main()
