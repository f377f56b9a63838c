"""What deliveries cost Redis, from its own counters: commands, round trips, bytes.

``INFO stats commandstats`` before and after a window gives the commands Redis ran,
by name, and the bytes it read and wrote on every connection. What the benchmark
itself sent in the window (the INFO calls, the XADDs that publish events, the polls
that wait for the acks) is taken out, so the rest is the daemons' cost. Divided by
the deliveries made meanwhile, these figures do not depend on the machine.

Commands that the Lua scripts issue count in commandstats like any other, so round
trips are estimated as the calls of every command no script issues, plus EVALSHA
(and EVAL). It is an estimate both ways: a pipeline sends several commands in one
round trip, and a command sent both directly and from a script is taken as scripted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from typing import Any, cast

import redis

SCRIPT_CALLS = ("evalsha", "eval")


@dataclass(frozen=True, slots=True)
class Traffic:
    """Commands by name (``xgroup|setid`` for subcommands) and bytes each way."""

    calls: dict[str, float]
    bytes_in: float
    bytes_out: float

    def __add__(self, other: Traffic) -> Traffic:
        return self - other.times(-1)

    def __sub__(self, other: Traffic) -> Traffic:
        names = self.calls.keys() | other.calls.keys()
        calls = {n: self.calls.get(n, 0) - other.calls.get(n, 0) for n in names}
        return Traffic(
            {n: c for n, c in calls.items() if abs(c) > 1e-6},  # left: float rounding
            self.bytes_in - other.bytes_in,
            self.bytes_out - other.bytes_out,
        )

    def times(self, factor: float) -> Traffic:
        return Traffic(
            {n: c * factor for n, c in self.calls.items()},
            self.bytes_in * factor,
            self.bytes_out * factor,
        )


@dataclass(frozen=True, slots=True)
class RedisCost:
    deliveries: int
    commands: dict[str, float]  # per delivery, by command, most frequent first
    scripted: list[str]  # which of those the Lua scripts issue
    commands_total: float  # per delivery, scripted ones included
    calls: float  # round trips per delivery (estimate: unscripted commands + EVALSHA)
    bytes_in: float  # per delivery, read by Redis
    bytes_out: float  # per delivery, written by Redis


def scripted_commands() -> frozenset[str]:
    """Lower-cased names of the commands webhookd's Lua scripts call."""
    found: set[str] = set()
    for script in resources.files("webhookd").joinpath("lua").iterdir():
        if script.name.endswith(".lua"):
            calls = re.findall(r"redis\.p?call\(\s*['\"](\w+)", script.read_text())
            found.update(name.lower() for name in calls)
    return frozenset(found)


def read_traffic(client: redis.Redis) -> Traffic:
    info = cast(dict[str, Any], client.info("stats", "commandstats"))
    calls = {
        key.removeprefix("cmdstat_"): float(value["calls"])
        for key, value in info.items()
        if key.startswith("cmdstat_") and key != "cmdstat_info"
    }
    return Traffic(calls, info["total_net_input_bytes"], info["total_net_output_bytes"])


class RedisMeter:
    """Redis's counters over a window, less what reading them costs."""

    def __init__(self, client: redis.Redis) -> None:
        self._client = client
        self._scripted = scripted_commands()
        first = read_traffic(client)
        self._reading = read_traffic(client) - first  # one INFO's request and reply
        self._before = read_traffic(client)

    def start(self) -> None:
        self._before = read_traffic(self._client)

    def used(self) -> Traffic:
        """What Redis did since `start`, the reading of its counters left out."""
        return read_traffic(self._client) - self._before - self._reading

    def cost(self, deliveries: int, ours: Traffic) -> RedisCost:
        """Per delivery since `start`, less ``ours``: what the benchmark sent meanwhile."""
        daemons = self.used() - ours
        per = max(1, deliveries)
        commands = dict(sorted(daemons.calls.items(), key=lambda item: -item[1]))
        unscripted = [
            calls
            for name, calls in commands.items()
            if name in SCRIPT_CALLS or name.partition("|")[0] not in self._scripted
        ]
        return RedisCost(
            deliveries=deliveries,
            commands={name: calls / per for name, calls in commands.items()},
            scripted=[name for name in commands if name.partition("|")[0] in self._scripted],
            commands_total=sum(commands.values()) / per,
            calls=sum(unscripted) / per,
            bytes_in=daemons.bytes_in / per,
            bytes_out=daemons.bytes_out / per,
        )
