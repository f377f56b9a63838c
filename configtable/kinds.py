"""Kinds of configuration values: how a TOML value (or an environment variable's text)
is checked and turned into a setting.

A ``Kind`` pairs the check with the words that complete "expected ..." in an error
message. Every parser refuses by raising ``ValueError`` (``fit`` is the one way to say
so), leaving the wording to the Kind. The kinds here are the ones both services use;
a package defines its own (a master key, a Redis URL) the same way.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True, slots=True)
class Kind:
    """How values of one sort are checked; both functions raise ValueError on a misfit."""

    expected: str  # completes "expected ..." in error messages
    parse: Callable[[Any], Any]  # a TOML value -> the settings value
    from_env: Callable[[str], Any] = str  # environment text -> a TOML-shaped value


def fit(value: Any, ok: bool) -> Any:
    """``value`` when ``ok``, else ``ValueError``: the one way parsers refuse."""
    if not ok:
        raise ValueError
    return value


def int_text(text: str) -> int:
    """An environment variable's whole number: digits, an optional sign, spaces around."""
    return int(fit(text, re.fullmatch(r"\s*[+-]?[0-9]+\s*", text) is not None))


def number(expected: str, accept: Callable[[float], bool], *, integer: bool = False) -> Kind:
    """A finite number ``accept`` takes; a float unless ``integer``. Booleans never pass."""

    def parse(value: Any) -> Any:
        # bool is an int subclass: `true` must pass for neither 1 nor 1.0
        fit(
            value,
            not isinstance(value, bool) and isinstance(value, int if integer else float | int),
        )
        parsed = value if integer else float(value)
        return fit(parsed, math.isfinite(parsed) and accept(parsed))

    return Kind(expected, parse, int_text if integer else float)


def integer(minimum: int, maximum: int | None = None, expected: str | None = None) -> Kind:
    """A whole number from ``minimum`` (to ``maximum``)."""
    if maximum is None:
        expected = expected or f"an integer >= {minimum}"
        return number(expected, lambda n: n >= minimum, integer=True)
    expected = expected or f"an integer from {minimum} to {maximum}"
    return number(expected, lambda n: minimum <= n <= maximum, integer=True)


def choice(expected: str, *words: str) -> Kind:
    """One of ``words``, exactly as written."""
    return Kind(expected, lambda value: fit(value, value in words))


_BOOL_WORDS = dict.fromkeys(["true", "1", "yes", "on"], True)
_BOOL_WORDS |= dict.fromkeys(["false", "0", "no", "off"], False)


def bool_text(text: str) -> bool:
    word = text.strip().lower()
    return bool(fit(_BOOL_WORDS.get(word), word in _BOOL_WORDS))


_LISTEN = re.compile(r"(?:\[(?P<ipv6>[^\]]+)\]|(?P<host>[^\s:\[\]]+)):(?P<port>[0-9]{1,5})")


def split_listen(listen: str) -> tuple[str, int]:
    """``host:port`` (an IPv6 host in brackets, ``[::1]:8080``) as (host, port) for binding,
    the brackets removed; ``ValueError`` unless the port is 0 to 65535 and a bracketed host
    a real IPv6 address."""
    match = _LISTEN.fullmatch(listen)
    if match is None or int(match["port"]) > 65535:
        raise ValueError(listen)
    if match["ipv6"] is not None:
        ipaddress.IPv6Address(match["ipv6"])  # raises ValueError unless a real IPv6 address
    return match["ipv6"] or match["host"], int(match["port"])


def listen_address(expected: str) -> Kind:
    """An address to listen on, checked by ``split_listen``."""
    return Kind(expected, lambda v: fit(v, isinstance(v, str) and bool(split_listen(v))))


LOG_LEVELS = ("debug", "info", "warning", "error")

TEXT = Kind("a non-empty string", lambda v: fit(v, isinstance(v, str) and v != ""))
# empty means unset, so an environment variable can clear what the file set
OPTIONAL_TEXT = Kind(
    "a string (empty means unset)", lambda v: fit(v, v is None or isinstance(v, str)) or None
)
POSITIVE = number("a positive number", lambda n: n > 0)
NON_NEGATIVE = number("a number >= 0", lambda n: n >= 0)
BOOL = Kind("true or false", lambda v: fit(v, isinstance(v, bool)), bool_text)
PATH = Kind("a non-empty path", lambda v: Path(v if isinstance(v, os.PathLike) else TEXT.parse(v)))
LOG_LEVEL = Kind(
    "one of " + ", ".join(LOG_LEVELS),
    lambda v: fit(v, isinstance(v, str) and v.lower() in LOG_LEVELS).lower(),
)
