"""RESP, the Redis protocol, as far as it is pure: rendering requests and finding a key's
cluster slot. Replies are parsed by ``hiredis.Reader`` (see ``_client``); an error reply
comes out of it as a ``ReplyError`` value, raised or returned by the caller's choice."""

from __future__ import annotations

import binascii
from collections.abc import Callable, Sequence
from typing import TypeAlias, cast

import hiredis

Arg: TypeAlias = bytes | str | int | float
Reply: TypeAlias = "int | bytes | list[Reply | ReplyError] | None"

# One command as RESP (hiredis's stub types the tuple as one item long).
pack_command = cast(Callable[[tuple[Arg, ...]], bytes], hiredis.pack_command)

SLOTS = 16384


class ReplyError(Exception):
    """Redis answered an error; ``str(exc)`` is its message (``"NOGROUP …"``, ``"BUSY …"``)."""


def encode(commands: Sequence[Sequence[Arg]]) -> bytes:
    """Commands as one request: RESP arrays of bulk strings (str as UTF-8, int as its
    decimal digits, float as its ``repr``), rendered by hiredis's C packer. A bool or
    any other type is a ``TypeError``: its rendering would be a guess."""
    return b"".join([pack_command(tuple(command)) for command in commands])


def as_bytes(arg: Arg) -> bytes:
    """One argument as ``encode`` renders it."""
    if isinstance(arg, bytes):
        return arg
    if isinstance(arg, str):
        return arg.encode()
    if type(arg) is int:
        return b"%d" % arg
    if type(arg) is float:
        return repr(arg).encode()
    raise TypeError(f"a Redis argument must be bytes, str, int or float, not {arg!r}")


def key_slot(key: bytes) -> int:
    """The cluster slot of a key: CRC16/XMODEM (``binascii.crc_hqx``) of the key, or of
    its hash tag, the part between the first ``{`` and the next ``}`` when not empty."""
    start = key.find(b"{")
    if start >= 0:
        end = key.find(b"}", start + 1)
        if end > start + 1:
            key = key[start + 1 : end]
    return binascii.crc_hqx(key, 0) % SLOTS
