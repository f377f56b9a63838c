"""Nothing is lost under faults: daemons and Redis killed with SIGKILL mid-run.

Real processes only, driven through public contracts: two ``webhookd run`` daemons on a
config file, endpoints added with ``webhookd endpoint add``, events written with a plain
XADD in the producers' entry format, outcomes read from what receivers got and from the
dead-letter stream (``event_id``, ``endpoint_id``). Every (event, endpoint) pair must end
up delivered at least once or dead-lettered; duplicates are allowed and counted.
"""

from __future__ import annotations

import functools
import json
import random
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
import redis
import trio
from conftest import daemon_config, until
from flaky_receiver import FlakyReceiver

from processes import (
    DaemonProcess,
    RedisServer,
    no_retry_client,
    running_daemons,
    running_redis_server,
    webhookd_cli_json,
    write_config,
)

T = TypeVar("T")

EVENTS = 300
BURST = 10  # published back to back, so entries of several partitions share a millisecond
BURST_GAP_S = 0.3
FAILURE_RATE = 0.2
# After the last fault, for every pair to be delivered or dead-lettered: longer than a
# crashed daemon's lease on the retries it had claimed (2 x delivery.timeout + 30 s).
SETTLE_S = 40.0
TEST_BUDGET_S = 90.0
GROUP = "webhookd"  # stream.group's default


@dataclass(frozen=True, slots=True)
class Subscription:
    path: str
    vendor: str
    events: str

    def matches(self, vendor: str, event_type: str) -> bool:
        if vendor != self.vendor:
            return False
        return self.events == "*" or event_type.startswith(self.events.removesuffix("*"))


SUBSCRIPTIONS = (
    Subscription("/a/all", "v_a", "*"),
    Subscription("/a/orders", "v_a", "order.*"),
    Subscription("/b/all", "v_b", "*"),
)


def event_of(n: int) -> tuple[str, str]:
    """Vendor and type of the n-th event: both vendors on every partition, two types."""
    vendor = "v_a" if (n // 2) % 2 == 0 else "v_b"
    return vendor, "order.created" if n % 3 else "product.updated"


@dataclass(frozen=True, slots=True)
class Published:
    n: int
    event_id: str  # the id the contract gives an entry published without one
    stream: str
    paths: tuple[str, ...]  # the endpoints it must reach


@dataclass
class Run:
    """One scenario: where it publishes, what it published, who must receive it."""

    config: Path
    stream: str
    dead: str
    partitions: int
    receiver: FlakyReceiver
    endpoint_paths: dict[str, str] = field(default_factory=dict)  # endpoint id -> path
    published: list[Published] = field(default_factory=list)
    faults: int = 0

    @property
    def streams(self) -> list[str]:
        if self.partitions == 1:
            return [self.stream]
        return [f"{self.stream}:{k}" for k in range(self.partitions)]

    def expected_pairs(self) -> Iterator[tuple[Published, str]]:
        for event in self.published:
            for path in event.paths:
                yield event, path


async def prepare(
    tmp_path: Path, redis_url: str, key_prefix: str, partitions: int, receiver: FlakyReceiver
) -> Run:
    config = daemon_config(
        redis_url,
        key_prefix,
        stream={"partitions": partitions, "reclaim_idle": 2.0, "block": 0.1},
        delivery={"timeout": 1.0, "endpoint_concurrency": 4, "shutdown_grace": 2.0},
        retry={"schedule": [0.2, 0.4, 0.8], "jitter": 0},
        log={"level": "warning"},
    )
    path = write_config(tmp_path / "webhookd.toml", config)
    run = Run(path, config["stream"]["name"], config["stream"]["dead"], partitions, receiver)
    for sub in SUBSCRIPTIONS:
        added = await webhookd_cli_json(
            path, "endpoint", "add", "--vendor", sub.vendor, "--url", receiver.url(sub.path),
            "--events", sub.events,
        )  # fmt: skip
        run.endpoint_paths[added["id"]] = sub.path
    return run


def contract_event_id(entry_id: str, partition: int, partitions: int) -> str:
    return f"evt_{entry_id}" if partitions == 1 else f"evt_p{partition}_{entry_id}"


async def off_thread(call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """A blocking redis-py call, kept off the trio thread."""
    return await trio.to_thread.run_sync(functools.partial(call, *args, **kwargs))


async def xadd_once(client: redis.Redis, stream: str, fields: dict[str, str], n: int) -> str:
    """XADD, again until it lands; a failed XADD may still have landed, so look first."""
    while True:
        try:
            return str(await off_thread(client.xadd, stream, fields))
        except (redis.ConnectionError, redis.TimeoutError):
            pass
        while True:
            await trio.sleep(0.05)
            try:
                recent = await off_thread(client.xrevrange, stream, count=BURST * 4)
                for entry_id, found in recent:
                    if json.loads(found.get("data", "{}")).get("n") == n:
                        return str(entry_id)
                break
            except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError):
                continue


async def publish_all(run: Run, url: str, key_prefix: str, done: trio.Event) -> None:
    client = no_retry_client(url)
    try:
        for n in range(EVENTS):
            vendor, event_type = event_of(n)
            partition = n % run.partitions
            stream = run.streams[partition]
            data = json.dumps({"n": n, "run": key_prefix})
            fields = {"type": event_type, "vendor": vendor, "data": data}
            entry_id = await xadd_once(client, stream, fields, n)
            paths = tuple(s.path for s in SUBSCRIPTIONS if s.matches(vendor, event_type))
            event_id = contract_event_id(entry_id, partition, run.partitions)
            run.published.append(Published(n, event_id, stream, paths))
            if n % BURST == BURST - 1:
                await trio.sleep(BURST_GAP_S)
    finally:
        client.close()
        done.set()


async def crash_daemons(
    rng: random.Random, run: Run, daemons: list[DaemonProcess], done: trio.Event
) -> None:
    """SIGKILL one of the daemons at random moments while it works, and start it again."""
    while not done.is_set() or run.faults < 3:
        await trio.sleep(rng.uniform(0.2, 1.2))
        victim = rng.choice(daemons)
        await victim.kill()
        run.faults += 1
        await trio.sleep(rng.uniform(0.0, 0.3))
        await victim.start()
        await victim.ready()


async def crash_redis(
    server: RedisServer, rng: random.Random, run: Run, _: list[DaemonProcess], done: trio.Event
) -> None:
    """SIGKILL Redis at random moments and start it again on its port and directory."""
    while not done.is_set() or run.faults < 2:
        await trio.sleep(rng.uniform(0.8, 2.0))
        await server.kill()
        run.faults += 1
        await trio.sleep(rng.uniform(0.2, 1.0))
        await server.start()


def dead_pairs(client: redis.Redis, dead: str) -> set[tuple[str, str]]:
    return {(f.get("event_id", ""), f.get("endpoint_id", "")) for _, f in client.xrange(dead)}


def unaccounted(run: Run, client: redis.Redis) -> list[tuple[Published, str]]:
    """Expected (event, endpoint) pairs neither received nor dead-lettered, by contract id."""
    received = run.receiver.pairs()
    dead = {(event_id, run.endpoint_paths.get(endpoint_id, endpoint_id))
            for event_id, endpoint_id in dead_pairs(client, run.dead)}  # fmt: skip
    return [
        (event, path)
        for event, path in run.expected_pairs()
        if (event.event_id, path) not in received and (event.event_id, path) not in dead
    ]


def unsettled(run: Run, client: redis.Redis) -> bool:
    """Whether some pair is still on its way, whatever id the daemon gave its event: so a
    run whose ids break the contract settles as fast as one that keeps it."""
    receipts = run.receiver.receipts()
    content = {(r.data.get("n"), r.path) for r in receipts if isinstance(r.data, dict)}
    n_of = {r.event_id: r.data.get("n") for r in receipts if isinstance(r.data, dict)}
    dead = dead_pairs(client, run.dead)
    dead_content = {(n_of.get(e), run.endpoint_paths.get(ep)) for e, ep in dead}
    return any(
        (event.n, path) not in content and (event.n, path) not in dead_content
        for event, path in unaccounted(run, client)
    )


async def settle(run: Run, client: redis.Redis) -> dict[str, int]:
    """Wait (bounded) until every pair is accounted for and no entry is pending."""
    with trio.move_on_after(SETTLE_S):
        await until(lambda: off_thread(lambda: not unsettled(run, client)), interval_s=0.25)
    pending: dict[str, int] = {}
    with trio.move_on_after(5):
        while True:
            pending = await off_thread(
                lambda: {s: int(client.xpending(s, GROUP)["pending"]) for s in run.streams}
            )
            if not any(pending.values()):
                break
            await trio.sleep(0.25)
    return pending


def report(run: Run, client: redis.Redis, pending: dict[str, int], logs: str) -> list[str]:
    """Every broken promise, with examples; printed figures for the reader of -s."""
    receipts = run.receiver.receipts()
    expected_id = {event.n: event.event_id for event in run.published}
    by_content = Counter((r.data.get("n"), r.path) for r in receipts if isinstance(r.data, dict))
    dead = dead_pairs(client, run.dead)
    lost = unaccounted(run, client)
    lost_content = [(e, p) for e, p in lost if (e.n, p) not in by_content]
    wrong_ids = [r for r in receipts if expected_id.get(r.data.get("n")) != r.event_id]
    ids_seen: dict[str, set[object]] = {}
    for r in receipts:
        ids_seen.setdefault(r.event_id, set()).add(r.data.get("n"))
    colliding = {event_id: ns for event_id, ns in ids_seen.items() if len(ns) > 1}
    duplicates = len(receipts) - len(by_content)
    pairs = sum(1 for _ in run.expected_pairs())
    print(
        f"\nfaults={run.faults} events={len(run.published)} pairs={pairs} "
        f"receipts={len(receipts)} injected_failures={run.receiver.failed} "
        f"dead_letters={len(dead)} duplicates={duplicates} lost={len(lost)} "
        f"lost_by_content={len(lost_content)} wrong_ids={len(wrong_ids)} "
        f"colliding_ids={len(colliding)} pending={pending}"
    )
    problems = []
    if lost:
        problems.append(
            f"{len(lost)} of {pairs} (event, endpoint) pairs neither delivered nor "
            f"dead-lettered, e.g. " + ", ".join(
                f"(n={e.n} {e.event_id} on {e.stream} -> {p})" for e, p in lost[:8])
        )  # fmt: skip
    if lost_content:
        problems.append(
            f"{len(lost_content)} pairs whose data never reached the endpoint under any id, "
            f"e.g. " + ", ".join(f"(n={e.n} -> {p})" for e, p in lost_content[:8])
        )
    if wrong_ids:
        problems.append(
            f"{len(wrong_ids)} deliveries carried another X-Event-ID than the contract's "
            f"for their entry, e.g. " + ", ".join(
                f"(n={r.data.get('n')}: got {r.event_id}, expected "
                f"{expected_id.get(r.data.get('n'))})" for r in wrong_ids[:5])
        )  # fmt: skip
    if colliding:
        problems.append(
            f"{len(colliding)} event ids were given to more than one event, e.g. "
            + ", ".join(f"{i} for n={sorted(map(str, ns))}" for i, ns in [*colliding.items()][:5])
        )
    if any(pending.values()):
        problems.append(f"entries still pending after every pair settled: {pending}")
    if problems:
        problems.append("daemon logs (tail):\n" + logs)
    return problems


def logs_of(daemons: list[DaemonProcess]) -> str:
    return "\n".join(f"--- {d.log_path.name}\n{d.log_tail(10)}" for d in daemons)


async def run_with_faults(
    run: Run, url: str, key_prefix: str, tmp_path: Path,
    chaos: Callable[[Run, list[DaemonProcess], trio.Event], Awaitable[None]],
) -> None:  # fmt: skip
    """Two daemons, the events published while ``chaos`` strikes, then the accounting."""
    async with running_daemons(run.config, tmp_path, 2) as daemons:
        done = trio.Event()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(chaos, run, daemons, done)
            await publish_all(run, url, key_prefix, done)
        for daemon in daemons:
            if not daemon.running:
                await daemon.start()
        client = no_retry_client(url)
        try:
            pending = await settle(run, client)
            problems = await off_thread(report, run, client, pending, logs_of(daemons))
        finally:
            client.close()
    assert not problems, "\n".join(problems)


@pytest.mark.slow
@pytest.mark.parametrize("partitions", [1, 2], ids=lambda p: f"partitions={p}")
async def test_nothing_is_lost_when_daemons_are_killed(
    tmp_path: Path, redis_url: str, key_prefix: str, partitions: int
) -> None:
    rng = random.Random(f"{key_prefix}-daemons")
    with trio.fail_after(TEST_BUDGET_S), FlakyReceiver(FAILURE_RATE, rng.random()) as receiver:
        run = await prepare(tmp_path, redis_url, key_prefix, partitions, receiver)
        chaos = functools.partial(crash_daemons, rng)
        await run_with_faults(run, redis_url, key_prefix, tmp_path, chaos)


@pytest.mark.slow
@pytest.mark.parametrize("partitions", [1, 2], ids=lambda p: f"partitions={p}")
async def test_nothing_is_lost_when_redis_is_killed(
    tmp_path: Path, key_prefix: str, partitions: int
) -> None:
    rng = random.Random(f"{key_prefix}-redis")
    with trio.fail_after(TEST_BUDGET_S), FlakyReceiver(FAILURE_RATE, rng.random()) as receiver:
        async with running_redis_server(tmp_path / "redis", appendonly=True) as server:
            run = await prepare(tmp_path, server.url, key_prefix, partitions, receiver)
            chaos = functools.partial(crash_redis, server, rng)
            await run_with_faults(run, server.url, key_prefix, tmp_path, chaos)


@pytest.mark.slow
@pytest.mark.parametrize("partitions", [1, 2], ids=lambda p: f"partitions={p}")
async def test_daemons_carry_on_when_redis_restarts_empty(
    tmp_path: Path, key_prefix: str, partitions: int
) -> None:
    """Redis without persistence restarts with nothing: no stream, no group, no endpoint.
    Once an operator adds the endpoint again, new events must flow without a restart."""
    with trio.fail_after(60), FlakyReceiver(0.0, 0) as receiver:
        async with running_redis_server(tmp_path / "redis", appendonly=False) as server:
            run = await prepare(tmp_path, server.url, key_prefix, partitions, receiver)
            async with running_daemons(run.config, tmp_path, 2) as daemons:
                before = await off_thread(publish_some, run, server.url, key_prefix, range(6))
                await wait_received(run, before, daemons)
                await server.kill()
                await server.start()
                await webhookd_cli_json(run.config, "endpoint", "add", "--vendor", "v_a",
                                    "--url", receiver.url("/a/all"))  # fmt: skip
                after = await off_thread(publish_some, run, server.url, key_prefix, range(100, 106))
                await wait_received(run, after, daemons)


def publish_some(run: Run, url: str, key_prefix: str, numbers: range) -> set[int]:
    """XADD v_a's events ``numbers``, to every partition in turn."""
    client = no_retry_client(url)
    try:
        for n in numbers:
            data = json.dumps({"n": n, "run": key_prefix})
            fields = {"type": "order.created", "vendor": "v_a", "data": data}
            client.xadd(run.streams[n % run.partitions], fields)  # type: ignore[arg-type]
    finally:
        client.close()
    return set(numbers)


async def wait_received(run: Run, numbers: set[int], daemons: list[DaemonProcess]) -> None:
    """Until every event reached /a/all (known by its data: ids are not under test here);
    on timeout, say which did not, with the daemons' logs."""
    missing = set(numbers)
    with trio.move_on_after(20):
        while missing:
            missing -= {r.data["n"] for r in run.receiver.receipts() if r.path == "/a/all"}
            await trio.sleep(0.1)
    assert not missing, f"never delivered: events n={sorted(missing)}\n{logs_of(daemons)}"
