"""``webhookd status``, ``events show|replay`` and ``catalog list``: what operators look
at, printed readably on a terminal and as JSON otherwise."""

from __future__ import annotations

import time
from typing import Any

import click

from webhookd.catalog import load_catalog
from webhookd.cli import config_failure, echo_json, fail, with_client, with_store
from webhookd.config import Settings
from webhookd.connection import RedisClient
from webhookd.errors import ConfigError
from webhookd.output import columns, emit, fields, json_flag
from webhookd.records import event_deliveries
from webhookd.redrive import replay
from webhookd.registry import registry_for
from webhookd.status import TOTALS, status_report
from webhookd.store import Store, store_for

PARTITION_COLUMNS = ("stream", "lag", "pending", "retry_backlog", "held", "deferred")
DELIVERY_COLUMNS = ("endpoint_id", "state", "attempts", "last_status", "last_error",
                    "next_attempt_at")  # fmt: skip
ATTEMPT_COLUMNS = ("endpoint_id", "attempt", "at", "status", "duration_ms", "error")


@click.command()
@json_flag
@click.pass_obj
def status(settings: Settings, as_json: bool) -> None:
    """Consumer lag and pending entries per partition, retry backlog, held and deferred
    deliveries, and the endpoints disabled now."""

    async def report(client: RedisClient) -> dict[str, Any]:
        store = Store(client, settings.stream, settings.redis.key_prefix,
                      settings.delivery.record_ttl_s)  # fmt: skip
        return await status_report(store, registry_for(client, settings))

    try:
        found = with_client(settings, report)
    except ConfigError as exc:
        config_failure(exc)
    emit(found, human_status, as_json=as_json)


def human_status(report: dict[str, Any]) -> str:
    disabled = report["disabled_endpoints"]
    return "\n\n".join([
        fields(report, TOTALS),
        columns(report["partitions"], PARTITION_COLUMNS),
        f"disabled endpoints: {disabled['count']}\n"
        + columns(disabled["endpoints"], ("id", "vendor", "reason")),
    ])  # fmt: skip


@click.group()
def events() -> None:
    """Events' delivery records, and replaying them."""


@events.command("show")
@click.argument("event_id")
@json_flag
@click.pass_obj
def events_show(settings: Settings, event_id: str, as_json: bool) -> None:
    """An event's deliveries, each with every attempt (as GET /v1/events/{id})."""
    found = with_store(settings, lambda store: event_deliveries(store, event_id))
    if found is None:
        fail(f"no deliveries recorded for {event_id}")
    emit(found, human_event, as_json=as_json)


def human_event(record: dict[str, Any]) -> str:
    deliveries = record["deliveries"]
    attempts = [attempt for delivery in deliveries for attempt in delivery["attempt_log"]]
    return "\n\n".join([
        f"event {record['event_id']}",
        columns(deliveries, DELIVERY_COLUMNS),
        columns(attempts, ATTEMPT_COLUMNS),
    ])  # fmt: skip


@events.command("replay")
@click.argument("event_id")
@click.pass_obj
def events_replay(settings: Settings, event_id: str) -> None:
    """Deliver an event again to every endpoint it went to, with a fresh schedule (to the
    endpoints subscribed now, if none was then), while its entry is in the stream."""

    async def again(client: RedisClient) -> list[str] | None:
        subscribed = registry_for(client, settings).subscribed
        return await replay(store_for(client, settings), event_id, time.time(), subscribed)

    replayed = with_client(settings, again)
    if replayed is None:
        fail(f"{event_id} is not retained (unknown or trimmed from the stream)")
    echo_json({"event_id": event_id, "replayed": replayed})


@click.group()
def catalog() -> None:
    """The event-type catalog (events.catalog)."""


@catalog.command("list")
@json_flag
@click.pass_obj
def catalog_list(settings: Settings, as_json: bool) -> None:
    """Every event type endpoints may subscribe to, with what it means."""
    try:
        known = load_catalog(settings.events.catalog)
    except ConfigError as exc:
        config_failure(exc)
    listed = [{"type": name, "description": text} for name, text in known.types.items()]
    emit(listed, lambda rows: columns(rows, ("type", "description")), as_json=as_json)
