"""The key table: TOML data and environment variables in, checked values out.

A service lists every key once, as a ``Key`` (where it lives in TOML, where it lands,
its kind, default and meaning), in a ``KeyTable`` with its environment prefix. Reading
applies the defaults, then the file, then ``<PREFIX><SECTION>_<KEY>`` variables (upper
case), and collects every problem, one line each, starting with the dotted key and
ending with where the value came from (`` (in FILE)``, `` (from VARIABLE)``). The
service then adds its own cross-key checks, raises its own error, and builds its frozen
settings from the values.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import tomllib
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from configtable.kinds import Kind


class ConfigFileError(Exception):
    """A file that cannot be read or is not TOML; the message names the file."""


def read_toml(path: Path, what: str, note: str = "") -> dict[str, Any]:
    """The TOML document at ``path``; ``what`` names the file in messages ("config file",
    "plans file"), ``note`` says where the path came from."""
    try:
        with path.open("rb") as file:
            return tomllib.load(file)
    except OSError as error:
        raise ConfigFileError(f"cannot read {what} {path}: {error.strerror}{note}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise ConfigFileError(f"{what} {path} is not valid TOML: {error}{note}") from None


@dataclass(frozen=True, slots=True)
class Key:
    """One configuration key: where it lives in TOML, where it lands, and what it means."""

    section: str
    name: str
    attribute: str
    kind: Kind
    default: Any
    doc: str
    secret: bool = False  # never echo the value in an error
    env_var: str = field(default="", compare=False)  # set by the table it is listed in

    @property
    def dotted(self) -> str:
        return f"{self.section}.{self.name}"


@dataclass(frozen=True, slots=True)
class Reading:
    """The values read (by dotted key), where each came from, and every problem found."""

    values: dict[str, Any]
    notes: dict[str, str]  # "" for a default, " (in FILE)", " (from VARIABLE)"
    problems: list[str]


# one value to apply: its key, the raw value, where it came from, whether it is env text
_Entry = tuple[Key, Any, str, bool]


class KeyTable:
    """Every key of one service; ``free_sections`` are tables the service reads itself
    (from the file only), such as a ``[routes]`` table of arbitrary names."""

    def __init__(
        self, env_prefix: str, keys: Iterable[Key], *, free_sections: Collection[str] = ()
    ) -> None:
        self.env_prefix = env_prefix
        self.keys = tuple(
            dataclasses.replace(key, env_var=f"{env_prefix}{key.section}_{key.name}".upper())
            for key in keys
        )
        self._by_dotted = {key.dotted: key for key in self.keys}
        self.sections = tuple(dict.fromkeys(key.section for key in self.keys))
        self._free = frozenset(free_sections)

    def __iter__(self) -> Iterator[Key]:
        return iter(self.keys)

    def __len__(self) -> int:
        return len(self.keys)

    def __getitem__(self, dotted: str) -> Key:
        return self._by_dotted[dotted]

    def read(
        self, data: Mapping[str, Any], environ: Mapping[str, str], source: Path | None = None
    ) -> Reading:
        """The values of ``data`` (parsed TOML, from ``source``) with ``environ``'s
        overrides; nothing is raised, every problem is in the reading."""
        problems: list[str] = []
        file_note = f" (in {source})" if source is not None else ""
        entries = self._file_entries(data, file_note, problems)
        entries += self._env_entries(environ, problems)
        values = {key.dotted: key.default for key in self.keys}
        notes = {key.dotted: "" for key in self.keys}
        for key, raw, note, is_text in entries:  # file first, so the environment wins
            try:
                values[key.dotted] = key.kind.parse(key.kind.from_env(raw) if is_text else raw)
                notes[key.dotted] = note
            except (ValueError, TypeError, OverflowError):
                shown = f"a {type(raw).__name__} (hidden)" if key.secret else _show(raw)
                problems.append(f"{key.dotted}: expected {key.kind.expected}, got {shown}{note}")
        return Reading(values, notes, problems)

    def attributes(self, section: str, values: Mapping[str, Any]) -> dict[str, Any]:
        """One section's values by attribute: the keyword arguments of its settings class."""
        return {key.attribute: values[key.dotted] for key in self.keys if key.section == section}

    def _file_entries(
        self, data: Mapping[str, Any], note: str, problems: list[str]
    ) -> list[_Entry]:
        entries: list[_Entry] = []
        known = [*self.sections, *sorted(self._free)]
        for section, table in data.items():
            if section not in known:
                problems.append(f"{section}: unknown section{_suggest(section, known)}{note}")
            elif not isinstance(table, Mapping):
                problems.append(f"{section}: expected a table, got {_show(table)}{note}")
            elif section not in self._free:
                for name, value in table.items():
                    key = self._by_dotted.get(f"{section}.{name}")
                    if key is None:
                        problems.append(self._unknown_key(section, name, note))
                    else:
                        entries.append((key, value, note, False))
        return entries

    def _env_entries(self, environ: Mapping[str, str], problems: list[str]) -> list[_Entry]:
        entries: list[_Entry] = []
        for var in sorted(environ):
            section, _, name = var.removeprefix(self.env_prefix).lower().partition("_")
            if not var.startswith(self.env_prefix) or section not in self.sections:
                continue  # not a setting: PATH, WEBHOOKD_CONFIG, ...
            key = self._by_dotted.get(f"{section}.{name}")
            if key is None:
                problems.append(self._unknown_key(section, name, f" (from {var})"))
            else:
                entries.append((key, environ[var], f" (from {var})", True))
        return entries

    def _unknown_key(self, section: str, name: str, note: str) -> str:
        known = [key.name for key in self.keys if key.section == section]
        return f"{section}.{name}: unknown key{_suggest(name, known, f'{section}.')}{note}"


def _suggest(name: str, known: list[str], prefix: str = "") -> str:
    close = difflib.get_close_matches(name, known, n=1)
    return f"; did you mean {prefix}{close[0]}?" if close else ""


def _show(value: Any) -> str:
    """A value as written: strings quoted, booleans as true/false."""
    return json.dumps(value, default=str, ensure_ascii=False)
