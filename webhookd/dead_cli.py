"""``webhookd dead``: dead letters listed newest first, shown, redriven and purged."""

from __future__ import annotations

import time
from typing import Any

import click

from webhookd.cli import fail, with_store
from webhookd.config import Settings
from webhookd.deadletters import DeadFilter, dead_page, purge_letters, redrive_letters, valid_id
from webhookd.output import columns, emit, fields, json_flag, progress_counter

LIST_COLUMNS = ("id", "event_id", "endpoint_id", "vendor", "event_type", "attempts",
                "last_status", "reason")  # fmt: skip
BULKY = ("body", "body_excerpt", "entry", "payload")  # left out of listings


@click.group()
def dead() -> None:
    """Inspect, redrive and purge dead letters."""


def filter_flags(command: Any) -> Any:
    command = click.option("--vendor", default=None, help="Only this vendor's letters.")(command)
    return click.option(
        "--endpoint", "endpoint_id", default=None, help="Only this endpoint's letters."
    )(command)


def checked_ids(ids: tuple[str, ...]) -> list[str] | None:
    for dead_id in ids:
        if not valid_id(dead_id):
            raise click.BadParameter(f"not a dead-letter id: {dead_id!r}", param_hint="ID")
    return list(ids) or None


@dead.command("list")
@click.option("--limit", type=click.IntRange(1, 1000), default=100, show_default=True,
              help="How many, newest first.")  # fmt: skip
@click.option("--cursor", default=None, help="Go on from where the last page stopped.")
@filter_flags
@json_flag
@click.pass_obj
def dead_list(
    settings: Settings,
    limit: int,
    cursor: str | None,
    endpoint_id: str | None,
    vendor: str | None,
    as_json: bool,
) -> None:
    """List dead letters, newest first, without their bodies; the next page's cursor
    goes to stderr ("next cursor: ID")."""
    if cursor is not None and not valid_id(cursor):
        raise click.BadParameter("not a cursor this command printed", param_hint="--cursor")
    selection = DeadFilter(endpoint_id, vendor)
    page = with_store(settings, lambda store: dead_page(store, limit, cursor, selection))
    letters = [
        {"id": dead_id, **{k: v for k, v in values.items() if k not in BULKY}}
        for dead_id, values in page.letters
    ]
    emit(letters, lambda rows: columns(rows, LIST_COLUMNS), as_json=as_json)
    if page.next_cursor is not None:
        click.echo(f"next cursor: {page.next_cursor}", err=True)


@dead.command("show")
@click.argument("dead_id", metavar="ID")
@json_flag
@click.pass_obj
def dead_show(settings: Settings, dead_id: str, as_json: bool) -> None:
    """Show one dead letter with every field."""
    found = None
    if valid_id(dead_id):
        [(_, found)] = with_store(settings, lambda store: store.dead_letters_by_id([dead_id]))
    if found is None:
        fail(f"no dead letter {dead_id}")
    emit({"id": dead_id, **found}, fields, as_json=as_json)


@dead.command("redrive")
@click.argument("ids", nargs=-1, metavar="[ID]...")
@filter_flags
@click.pass_obj
def dead_redrive(
    settings: Settings, ids: tuple[str, ...], endpoint_id: str | None, vendor: str | None
) -> None:
    """Send dead deliveries again, each with a fresh retry schedule: those named, else
    those the filters take, else all. Prints what was redriven and what was skipped."""
    chosen = checked_ids(ids)
    progress = progress_counter("letters gone through")
    answer = with_store(
        settings,
        lambda store: redrive_letters(store, time.time(), ids=chosen,
                                      selection=DeadFilter(endpoint_id, vendor),
                                      progress=progress),
    )  # fmt: skip
    if progress is not None:
        click.echo(err=True)
    emit(answer.to_json(), fields, as_json=True)


@dead.command("purge")
@click.argument("ids", nargs=-1, metavar="[ID]...")
@filter_flags
@click.option("--all", "everything", is_flag=True, help="Purge every dead letter.")
@click.pass_obj
def dead_purge(
    settings: Settings,
    ids: tuple[str, ...],
    endpoint_id: str | None,
    vendor: str | None,
    everything: bool,
) -> None:
    """Delete dead letters for good: those named and/or those the filters take; every
    one only with --all."""
    chosen = checked_ids(ids)
    selection = DeadFilter(endpoint_id, vendor)
    if chosen is None and selection.empty and not everything:
        raise click.UsageError("name letters, give --endpoint or --vendor, or say --all")
    progress = progress_counter("letters gone through")
    purged = with_store(
        settings,
        lambda store: purge_letters(store, ids=chosen, selection=selection,
                                    everything=everything, progress=progress),
    )  # fmt: skip
    if progress is not None:
        click.echo(err=True)
    emit({"purged": purged}, fields, as_json=True)
