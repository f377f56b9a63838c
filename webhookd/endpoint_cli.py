"""``webhookd endpoint``: vendors' endpoints (subscriptions), as the admin API has them."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import structlog
import trio

from webhookd.cli import echo_json, fail, registry_command, with_client
from webhookd.config import Settings
from webhookd.connection import RedisClient
from webhookd.errors import EndpointError, InvalidEventError
from webhookd.events import parse_timestamp
from webhookd.openapi import MAX_ROTATION_GRACE_S
from webhookd.options import NO_OPTIONS, delivery_options
from webhookd.output import columns, emit, fields, json_flag, progress_counter
from webhookd.probe import send_test_event_once
from webhookd.redrive import recover as recover_held
from webhookd.registry import endpoint_tls, registry_for
from webhookd.store import store_for

LIST_COLUMNS = ("id", "vendor", "url", "events", "enabled", "disabled_reason")


@click.group()
def endpoint() -> None:
    """Manage vendor endpoints (subscriptions)."""


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
@json_flag
@click.pass_obj
def endpoint_list(settings: Settings, vendor: str | None, as_json: bool) -> None:
    """List every endpoint (without secrets)."""
    endpoints = registry_command(lambda r: r.all(), settings)
    listed = [e.public() for e in endpoints if vendor is None or e.vendor == vendor]
    emit(listed, lambda rows: columns(rows, LIST_COLUMNS), as_json=as_json)


@endpoint.command("show")
@click.argument("endpoint_id")
@json_flag
@click.pass_obj
def endpoint_show(settings: Settings, endpoint_id: str, as_json: bool) -> None:
    """Show one endpoint (without its secret: see reveal-secret)."""
    emit(registry_command(lambda r: r.get(endpoint_id), settings).public(), fields,
         as_json=as_json)  # fmt: skip


@endpoint.command("test")
@click.argument("endpoint_id")
@json_flag
@click.pass_obj
def endpoint_test(settings: Settings, endpoint_id: str, as_json: bool) -> None:
    """Send one signed webhook.test event straight to the endpoint (not through the
    stream) and print the answer; exit 1 unless it answered 2xx."""
    found = registry_command(lambda r: r.get(endpoint_id), settings)
    answer = trio.run(send_test_event_once, settings, found)
    emit(answer, fields, as_json=as_json)
    if not answer["delivered"]:
        raise SystemExit(1)


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
@click.option(
    "--recover",
    is_flag=True,
    help="Also deliver what was held while it was disabled (within stream.retention).",
)
@click.option("--since", default=None, metavar="RFC3339",
              help="With --recover: only what was held since then, and redrive the "
              "endpoint's dead letters since then too.")  # fmt: skip
@click.pass_obj
def endpoint_enable(settings: Settings, endpoint_id: str, recover: bool, since: str | None) -> None:
    """Enable the endpoint; with --recover, send what was held for it meanwhile."""
    since_s = None
    if since is not None:
        if not recover:
            fail("--since goes with --recover")
        try:
            since_s = parse_timestamp(since)
        except InvalidEventError as exc:
            fail(f"--since: {exc}")

    async def enable(client: RedisClient) -> dict[str, Any]:
        enabled = await registry_for(client, settings).set_enabled(endpoint_id, True)
        shown = enabled.public()
        if recover:
            store = store_for(client, settings)
            progress = progress_counter("held deliveries recovered")
            recovered = await recover_held(store, endpoint_id, time.time(),
                                           retention_s=store.retention_s, since_s=since_s,
                                           progress=progress)  # fmt: skip
            if progress is not None:
                click.echo(err=True)
            shown["recovered"] = {"held": recovered.held, "redriven": recovered.redriven}
        return shown

    try:
        echo_json(with_client(settings, enable))
    except EndpointError as exc:
        fail(str(exc))


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
