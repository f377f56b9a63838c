"""What CLI commands print: JSON when stdout is not a terminal (or with ``--json``),
else a readable form: aligned columns for lists, ``name  value`` lines for one thing."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])


def json_flag(command: F) -> F:
    """The ``--json`` option of a command that prints a readable form on a terminal."""
    return click.option("--json", "as_json", is_flag=True, help="Print JSON even on a terminal.")(
        command
    )


def cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def columns(rows: Sequence[Mapping[str, Any]], names: Sequence[str]) -> str:
    """Rows as aligned columns under a header; a cell's line breaks become spaces."""
    if not rows:
        return "(none)"
    table = [list(names)] + [
        [cell(row.get(name)).replace("\n", " ") for name in names] for row in rows
    ]
    widths = [max(len(line[i]) for line in table) for i in range(len(names))]
    return "\n".join(
        "  ".join(text.ljust(width) for text, width in zip(line, widths, strict=True)).rstrip()
        for line in table
    )


def fields(value: Mapping[str, Any], names: Sequence[str] | None = None) -> str:
    """One thing as ``name  value`` lines, in ``names``' order (default: all of them)."""
    shown = list(value) if names is None else [name for name in names if name in value]
    width = max((len(name) for name in shown), default=0)
    return "\n".join(f"{name.ljust(width)}  {cell(value[name])}" for name in shown)


def emit(value: Any, human: Callable[[Any], str], *, as_json: bool) -> None:
    """``value`` as JSON, or as ``human`` renders it when stdout is a terminal."""
    if as_json or not sys.stdout.isatty():
        click.echo(json.dumps(value, indent=2))
    else:
        click.echo(human(value))


def progress_counter(label: str) -> Callable[[int], None] | None:
    """A callback that counts on stderr when it is a terminal; None when it is not."""
    if not sys.stderr.isatty():
        return None
    done = 0

    def advance(count: int) -> None:
        nonlocal done
        done += count
        click.echo(f"\r{label}: {done}", err=True, nl=False)

    return advance
