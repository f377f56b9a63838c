"""The delivery lifecycle against a model: events published, attempts that succeed, fail or
answer 410, retries falling due, dead letters, replay and redrive, endpoints disabled and
enabled, the daemon restarted at the worst moments.

Hypothesis drives the real parts (Store, Recorder, Pipeline, Sender, Scheduler, Intake,
``webhookd.redrive``) over the session's redis-server, with a scripted transport and a
clock the rules move. Rules are synchronous, so each runs its async work in a trio run of
its own, with its own Redis connection. Between steps the process is idle, and an idle
process holds nothing Redis does not, so each step builds the parts afresh; the restart
rule is the one that drops work in flight: a process takes its work and dies before
sending, after sending, or after recording but before acking, and a new one reclaims.

After every step, for each (event, endpoint) pair: it is in exactly one place (the retry
set, else delivered, else dead-lettered, else nowhere: not read yet, or dropped because
its endpoint was disabled when its entry was read), the one the model predicts, with the
record, the attempts and the dead letters the model predicts (dead letters are counted
apart: a replay leaves a dead pair's dead letter in the dead stream); every POST the model
expects was made, and no other; no entry is left pending; and no attempt count goes past
the schedule's length + 1. Within each step, an entry's ack lands after a write for every
delivery it produced.
"""

from __future__ import annotations

import json
import math
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import coredis
import trio
from conftest import daemon_config
from daemon_parts import LEASE_S, ManualClock, ObservedStore, Process, ScriptedTransport
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from lifecycle_model import LANE_ROOM, MAX_ATTEMPTS, START_S, EndpointModel, Job, Model

from webhookd.config import Settings, settings_from_mapping
from webhookd.connection import RedisClient, open_client
from webhookd.deadletters import DeadFilter, redrive_letters
from webhookd.keyspace import PartitionKeys
from webhookd.model import AckEntry, RecordAttempt, ScheduleRetry, Write
from webhookd.publisher import entry_fields
from webhookd.redrive import recover, replay
from webhookd.registry import registry_for

T = TypeVar("T")

ENDPOINTS = ("v_a", "v_a", "v_b")  # the vendor of each endpoint
ANSWERS = st.sampled_from((200, 500, 410))


@dataclass
class Seen:
    """The delivery state in Redis, as the model describes it."""

    retry: dict[str, float]  # member -> due ms
    payload_attempts: dict[str, int]
    records: dict[tuple[str, str], tuple[str, int]]
    attempt_numbers: list[int]
    dead: Counter[tuple[str, str]]
    pending: int
    enabled: dict[str, bool]
    held: set[str]


async def observe(url: str, settings: Settings, event_ids: list[str]) -> Seen:
    keys = PartitionKeys(settings.stream.name)
    redis: coredis.Redis[str] = coredis.Redis.from_url(url, decode_responses=True)
    async with redis, redis.pipeline(transaction=False) as pipe:
        scored = pipe.zrange(keys.retry, 0, -1, withscores=True)
        payloads = pipe.hgetall(keys.payloads)
        events = [pipe.hgetall(keys.event(event_id)) for event_id in event_ids]
        dead = pipe.xrange(settings.stream.dead)
        pending = pipe.xpending(settings.stream.name, settings.stream.group)
        endpoints = pipe.hgetall(f"{settings.redis.key_prefix}:endpoints")
        held = pipe.zrange(keys.held, 0, -1)
    records: dict[tuple[str, str], tuple[str, int]] = {}
    numbers = []
    for event_id, record in zip(event_ids, events, strict=True):
        for field, value in (await record).items():
            endpoint_id, _, number = field.partition("#")
            if number:
                numbers.append(int(number))
            else:
                state = json.loads(value)
                records[event_id, endpoint_id] = (state["state"], state["attempts"])
    summary: Any = await pending
    return Seen(
        retry={item.member: item.score for item in await scored if not isinstance(item, str)},
        payload_attempts={m: json.loads(p)["attempts"] for m, p in (await payloads).items()},
        records=records,
        attempt_numbers=numbers,
        dead=Counter(
            (e.field_values["event_id"], e.field_values["endpoint_id"]) for e in await dead
        ),
        pending=summary.pending,
        enabled={id_: json.loads(value)["enabled"] for id_, value in (await endpoints).items()},
        held={str(member) for member in await held},
    )


class Lifecycle(RuleBasedStateMachine):
    def __init__(self, redis_url: str) -> None:
        super().__init__()
        self.url = redis_url
        key_prefix = f"t{uuid.uuid4().hex[:12]}"
        self.settings = settings_from_mapping(daemon_config(redis_url, key_prefix), environ={})
        self.clock = ManualClock(START_S)
        self.transport = ScriptedTransport()
        self.consumer = "consumer-0"
        self.entries: dict[str, str] = {}  # entry id -> event id
        self.endpoint_ids = self._redis(self._add_endpoints)
        self.model = Model([EndpointModel(endpoint_id, vendor) for endpoint_id, vendor
                            in zip(self.endpoint_ids, ENDPOINTS, strict=True)])  # fmt: skip

    def _redis(self, work: Callable[[RedisClient], Awaitable[T]]) -> T:
        """Run async work against Redis in a trio run of its own."""

        async def main() -> T:
            with trio.fail_after(30):
                async with open_client(self.url) as client:
                    return await work(client)

        return trio.run(main)

    def _step(
        self, work: Callable[[Process], Awaitable[T]], *, drop_acks: bool = False
    ) -> tuple[T, list[Write]]:
        """Run work on a process built afresh; its result, and the writes that landed."""

        async def in_process(client: RedisClient) -> tuple[T, list[Write]]:
            process = Process(client, self.settings, consumer=self.consumer, clock=self.clock,
                              transport=self.transport, drop_acks=drop_acks)  # fmt: skip
            return await work(process), process.store.applied

        return self._redis(in_process)

    async def _add_endpoints(self, client: RedisClient) -> list[str]:
        await self._store(client).ensure_group(self.settings.stream.name)
        registry = registry_for(client, self.settings)
        ids = []
        for n, vendor in enumerate(ENDPOINTS):
            url = f"http://127.0.0.1:9/{n}"
            ids.append((await registry.add(vendor, url, "*", now_s=START_S)).id)
        return ids

    def _store(self, client: RedisClient) -> ObservedStore:
        return ObservedStore(client, self.settings, drop_acks=False)

    @initialize(answers=st.lists(st.sampled_from((200, 500)), min_size=len(ENDPOINTS),
                                 max_size=len(ENDPOINTS)))  # fmt: skip
    def answers_at_start(self, answers: list[int]) -> None:
        for endpoint, status in enumerate(answers):
            self.answer(endpoint, status)

    @rule(vendor=st.sampled_from(sorted(set(ENDPOINTS))), count=st.integers(1, 4))
    def publish(self, vendor: str, count: int) -> None:
        event_ids = [f"evt-{len(self.model.events) + n:03d}" for n in range(count)]

        async def xadd(client: RedisClient) -> None:
            for event_id in event_ids:
                fields = entry_fields("order.created", vendor, {"id": event_id}, event_id)
                entry_id = await client.xadd(self.settings.stream.name, dict(fields))
                self.entries[entry_id.decode()] = event_id

        self._redis(xadd)
        for event_id in event_ids:
            self.model.publish(event_id, vendor)

    @rule(endpoint=st.integers(0, len(ENDPOINTS) - 1), status=ANSWERS)
    def answer(self, endpoint: int, status: int) -> None:
        endpoint_id = self.endpoint_ids[endpoint]
        self.transport.answers[endpoint_id] = status
        self.model.endpoints[endpoint_id].answer = status

    @rule(endpoint=st.integers(0, len(ENDPOINTS) - 1), enabled=st.booleans())
    def set_enabled(self, endpoint: int, enabled: bool) -> None:
        endpoint_id = self.endpoint_ids[endpoint]

        async def switch(client: RedisClient) -> None:
            await registry_for(client, self.settings).set_enabled(endpoint_id, enabled, "test")

        self._redis(switch)
        self.model.endpoints[endpoint_id].enabled = enabled

    @rule()
    def intake(self) -> None:
        taken = self.model.take_unread()
        jobs = self.model.fan_out(taken)
        self.model.dispatch(jobs)
        _, applied = self._step(lambda process: process.work(process.take_new))
        self._check_acks(applied, taken, jobs)

    @rule(seconds=st.sampled_from((0.0, 1.0, 2.0, 4.0, LEASE_S)))
    def time_passes(self, seconds: float) -> None:
        self._retries_fall_due(self.clock.now + seconds)

    @precondition(lambda self: self.model.next_due_s() is not None)
    @rule()
    def next_retry_falls_due(self) -> None:
        due_s = self.model.next_due_s()
        assert due_s is not None
        self._retries_fall_due(max(self.clock.now, due_s))

    def _retries_fall_due(self, now_s: float) -> None:
        self.clock.now = self.model.now_s = now_s
        self.model.dispatch(self.model.due())
        _, applied = self._step(lambda process: process.work(process.scheduler.claim_due))
        assert not [write for write in applied if isinstance(write, AckEntry)]

    @precondition(lambda self: self.model.events)
    @rule(data=st.data())
    def replay(self, data: st.DataObject) -> None:
        event_id = data.draw(st.sampled_from(sorted(self.model.events)))
        got = self._redis(lambda client: replay(self._store(client), event_id, self.clock.now))
        assert got == self.model.replay(event_id)

    @rule(endpoint=st.none() | st.integers(0, len(ENDPOINTS) - 1))
    def redrive(self, endpoint: int | None) -> None:
        endpoint_id = None if endpoint is None else self.endpoint_ids[endpoint]
        now_s = self.clock.now
        selection = DeadFilter(endpoint_id=endpoint_id)
        got = self._redis(lambda client: redrive_letters(self._store(client), now_s,
                                                         selection=selection))  # fmt: skip
        assert got.redriven == self.model.redrive(endpoint_id)

    @rule(endpoint=st.integers(0, len(ENDPOINTS) - 1))
    def recover(self, endpoint: int) -> None:
        endpoint_id = self.endpoint_ids[endpoint]
        now_s, retention_s = self.clock.now, self.settings.stream.retention_s
        got = self._redis(lambda client: recover(self._store(client), endpoint_id, now_s,
                                                 retention_s=retention_s))  # fmt: skip
        assert got.held == self.model.recover(endpoint_id)

    @rule(point=st.sampled_from(("before_sending", "after_sending", "before_acking")))
    def restart(self, point: str) -> None:
        """The process takes its work and dies at ``point``; a new one reclaims."""
        model = self.model
        taken = model.take_unread()
        if point == "before_sending":
            model.lease(model.due())
            self._step(Process.claim_and_drop)
        else:
            durable = point == "before_acking"
            model.dispatch(model.fan_out(taken), durable=durable)
            due = model.due()
            model.lease(due)
            model.dispatch(due, durable=durable)

            async def take_and_die(process: Process) -> None:
                await process.work(process.take_new, process.scheduler.claim_due,
                                   record=durable)  # fmt: skip

            self._step(take_and_die, drop_acks=True)
        self.consumer = f"consumer-{int(self.consumer.rpartition('-')[2]) + 1}"
        jobs = model.fan_out(taken)
        model.dispatch(jobs)
        reclaimed, applied = self._step(Process.reclaim)
        assert reclaimed == len(taken)
        self._check_acks(applied, taken, jobs)

    def _check_acks(self, applied: list[Write], taken: list[str], jobs: list[Job]) -> None:
        """Each entry taken is acked once, after a write for every delivery it produced."""
        acks = [(n, write.entry) for n, write in enumerate(applied) if isinstance(write, AckEntry)]
        assert sorted(self.entries[entry.entry_id] for _, entry in acks) == sorted(taken)
        for n, entry in acks:
            written = {
                w.delivery.endpoint_id
                for w in applied[:n]
                if isinstance(w, RecordAttempt | ScheduleRetry) and w.delivery.acks == entry
            }
            event_id = self.entries[entry.entry_id]
            assert written == {job.endpoint_id for job in jobs if job.event_id == event_id}

    @invariant()
    def redis_matches_the_model(self) -> None:
        model = self.model
        seen = trio.run(observe, self.url, self.settings, list(model.events))
        assert seen.pending == 0
        assert Counter(self.transport.sent) == model.sent
        assert seen.enabled == {e.id: e.enabled for e in model.endpoints.values()}
        assert all(number <= MAX_ATTEMPTS for number in seen.attempt_numbers)
        assert all(attempts < MAX_ATTEMPTS for attempts in seen.payload_attempts.values())
        scheduled = set()
        for (event_id, endpoint_id), pair in model.pairs.items():
            member = f"{endpoint_id}:{event_id}"
            record = seen.records.get((event_id, endpoint_id))
            if member in seen.retry:
                place = "scheduled"
            elif member in seen.held:
                place = "held"
            else:
                states = {None: "nowhere", "delivered": "delivered", "dead": "dead", "gone": "dead"}
                place = states.get(record and record[0], "lost")
            expected = "nowhere" if pair.place == "unread" else pair.place
            assert place == expected, (event_id, endpoint_id, pair, record)
            assert record == pair.record, (event_id, endpoint_id, pair)
            assert seen.dead[event_id, endpoint_id] == pair.dead_letters, (event_id, endpoint_id)
            if pair.place == "scheduled":
                scheduled.add(member)
                assert seen.retry[member] == math.ceil(pair.due_s * 1000), (member, pair)
                assert seen.payload_attempts[member] == pair.attempts, (member, pair)
        assert set(seen.retry) == set(seen.payload_attempts) == scheduled
        assert sum(seen.dead.values()) == sum(p.dead_letters for p in model.pairs.values())


def test_the_delivery_lifecycle_matches_its_model(redis_url: str) -> None:
    run_state_machine_as_test(
        lambda: Lifecycle(redis_url),
        settings=settings(
            max_examples=25,
            stateful_step_count=30,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )


async def test_a_delivery_deferred_before_a_crash_is_not_sent_again_on_reclaim(
    redis_url: str, key_prefix: str
) -> None:
    settings = settings_from_mapping(daemon_config(redis_url, key_prefix), environ={})
    clock, transport = ManualClock(START_S), ScriptedTransport()
    async with open_client(redis_url) as client:
        crashed = Process(client, settings, consumer="crashed", clock=clock,
                          transport=transport, drop_acks=True)  # fmt: skip
        await crashed.store.ensure_group(crashed.stream)
        await registry_for(client, settings).add("v_a", "http://127.0.0.1:9/", now_s=START_S)
        for n in range(LANE_ROOM + 1):
            fields = entry_fields("order.created", "v_a", {"n": n}, None)
            await client.xadd(crashed.stream, dict(fields))
        await crashed.work(crashed.take_new)  # the lane takes LANE_ROOM, defers one; no acks land
        assert len(transport.sent) == LANE_ROOM
        successor = Process(client, settings, consumer="successor", clock=clock,
                            transport=transport)  # fmt: skip
        assert await successor.reclaim() == LANE_ROOM + 1
        retries = await client.zcard(PartitionKeys(crashed.stream).retry)
    assert len(transport.sent) == LANE_ROOM  # the deferred one waits for its retry
    assert retries == 1
