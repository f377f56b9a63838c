"""The vendors' receivers of bench/kpi.py: one process answering every endpoint, on httpserve.

Run as ``python bench/kpi_receiver.py PORT LOGDIR --fail 0.05 --slow v0,v1,v2
--slow-ms 300,800 --seed 1``. Every request is answered 500 with the ``--fail`` share,
at random, and 200 otherwise; a request to a slow endpoint (the last segment of its
path is in ``--slow``) is first held for a random 300-800 ms, whatever its answer.
A threaded ``http.server`` would not keep up with a thousand requests a second on two
cores next to the daemon; this is the same HTTP/1.1 server the admin API uses.

Each answer is logged as ``<arrival, epoch s> <X-Event-ID>`` (the format
``nginx.Receipts`` reads) in ``LOGDIR/<run>.ok.log`` or ``LOGDIR/<run>.failed.log``,
``<run>`` being the first segment of the path, so runs sharing the receiver keep
their logs apart. The arrival is when the request was read, before a slow endpoint's
wait: when the vendor had the event. Lines are flushed every ``FLUSH_S``.
"""

from __future__ import annotations

import argparse
import random
import time
from collections import defaultdict
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import trio

from httpserve import Request, Response, serve

FLUSH_S = 0.1
OK = Response(200, b"ok", content_type="text/plain")
FAILED = Response(500, b"injected failure", content_type="text/plain")


@dataclass(frozen=True, slots=True)
class Rules:
    fail_share: float
    slow: frozenset[str]  # last path segments of the slow endpoints
    slow_s: tuple[float, float]  # a slow endpoint holds each request this long, at random

    def answer(self, path: str, rng: random.Random) -> tuple[int, float]:
        """The status for one request to ``path`` and how long to hold it first."""
        hold_s = rng.uniform(*self.slow_s) if path.rpartition("/")[2] in self.slow else 0.0
        return (500 if rng.random() < self.fail_share else 200), hold_s


@dataclass
class Log:
    """Answers not yet written, by file name; ``flush`` appends them."""

    directory: Path
    pending: defaultdict[str, list[str]] = field(default_factory=lambda: defaultdict(list))

    def add(self, run: str, status: int, arrival_s: float, event_id: str) -> None:
        outcome = "ok" if status == 200 else "failed"
        self.pending[f"{run}.{outcome}.log"].append(f"{arrival_s:.4f} {event_id}\n")

    def flush(self) -> None:
        for name, lines in self.pending.items():
            if lines:
                with (self.directory / name).open("a") as file:
                    file.write("".join(lines))
                lines.clear()

    async def keep_flushing(self) -> None:
        while True:
            await trio.sleep(FLUSH_S)
            self.flush()


async def handle(rules: Rules, rng: random.Random, log: Log, request: Request) -> Response:
    arrival_s = time.time()
    status, hold_s = rules.answer(request.path, rng)
    log.add(request.path.split("/")[1], status, arrival_s, request.headers.get("x-event-id", "-"))
    if hold_s:
        await trio.sleep(hold_s)
    return OK if status == 200 else FAILED


async def receive(port: int, rules: Rules, log: Log, seed: int) -> None:
    async with trio.open_nursery() as nursery:
        nursery.start_soon(log.keep_flushing)
        handler = partial(handle, rules, random.Random(seed), log)
        await serve(handler, "127.0.0.1", port, server_name="kpi-receiver")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("port", type=int)
    parser.add_argument("logdir", type=Path)
    parser.add_argument("--fail", type=float, default=0.05, help="share of 500 answers")
    parser.add_argument("--slow", default="", help="slow endpoints' last path segments, a,b,c")
    parser.add_argument("--slow-ms", default="300,800", help="a slow answer's hold, lo,hi ms")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    low_ms, high_ms = (float(ms) for ms in args.slow_ms.split(","))
    slow = frozenset(name for name in args.slow.split(",") if name)
    rules = Rules(args.fail, slow, (low_ms / 1000, high_ms / 1000))
    trio.run(receive, args.port, rules, Log(args.logdir), args.seed)


if __name__ == "__main__":
    main()
