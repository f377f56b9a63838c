"""The model the lifecycle test holds Redis to: where each (event, endpoint) delivery is,
what its record says, how many dead letters it has, and how often it was sent.

Pure: the test tells it what happened (published, taken, time passed, a restart) and
reads what should follow. Its rules are the delivery core's, written out plainly.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

from daemon_parts import LEASE_S, SCHEDULE_S

from webhookd.pipeline import DEFER_S, LANE_QUEUE_FACTOR

START_S = 1_700_000_000.0
MAX_ATTEMPTS = len(SCHEDULE_S) + 1
# Deliveries handed over at once (one intake batch, one scheduler pass) fill an endpoint's
# lane before its worker runs: with concurrency 1, it takes the queue factor's worth.
LANE_ROOM = LANE_QUEUE_FACTOR


@dataclass
class Pair:
    """What the model expects of one event's delivery to one endpoint."""

    place: str = "unread"  # unread | delivered | scheduled | dead | held
    attempts: int = 0  # made in this round (a redrive or a replay starts a new one)
    due_s: float = 0.0  # while scheduled
    record: tuple[str, int] | None = None  # (state, attempts) in the event's record
    dead_letters: int = 0


@dataclass
class EndpointModel:
    id: str
    vendor: str
    enabled: bool = True
    answer: int = 200


@dataclass(frozen=True)
class Job:
    """A delivery handed to the lanes: from an entry (``first``) or from the retry set."""

    event_id: str
    endpoint_id: str
    first: bool


class Model:
    def __init__(self, endpoints: list[EndpointModel]) -> None:
        self.endpoints = {endpoint.id: endpoint for endpoint in endpoints}
        self.events: dict[str, str] = {}  # event id -> vendor
        self.unread: list[str] = []
        self.pairs: dict[tuple[str, str], Pair] = {}
        self.sent: Counter[tuple[str, str]] = Counter()  # (endpoint id, event id) -> POSTs
        self.now_s = START_S

    def publish(self, event_id: str, vendor: str) -> None:
        self.events[event_id] = vendor
        self.unread.append(event_id)
        for endpoint in self.endpoints.values():
            if endpoint.vendor == vendor:
                self.pairs[event_id, endpoint.id] = Pair()

    def take_unread(self) -> list[str]:
        taken, self.unread = self.unread, []
        return taken

    def fan_out(self, event_ids: list[str]) -> list[Job]:
        """Intake: a delivery to each endpoint of the vendor not recorded yet (a disabled
        one's is held at dispatch)."""
        return [
            Job(event_id, endpoint.id, first=True)
            for event_id in event_ids
            for endpoint in self.endpoints.values()
            if (pair := self.pairs.get((event_id, endpoint.id))) is not None and pair.record is None
        ]

    def due(self) -> list[Job]:
        """What the scheduler claims now, in the retry set's order."""
        now_ms = int(self.now_s * 1000)
        due = [
            (math.ceil(pair.due_s * 1000), f"{endpoint_id}:{event_id}", event_id, endpoint_id)
            for (event_id, endpoint_id), pair in self.pairs.items()
            if pair.place == "scheduled" and math.ceil(pair.due_s * 1000) <= now_ms
        ]
        return [Job(event_id, endpoint_id, False) for *_, event_id, endpoint_id in sorted(due)]

    def next_due_s(self) -> float | None:
        return min((p.due_s for p in self.pairs.values() if p.place == "scheduled"), default=None)

    def lease(self, jobs: list[Job]) -> None:
        for job in jobs:
            self.pairs[job.event_id, job.endpoint_id].due_s = self.now_s + LEASE_S

    def dispatch(self, jobs: list[Job], *, durable: bool = True) -> None:
        """A disabled endpoint's jobs are held; each other endpoint's lane takes LANE_ROOM
        of them and defers the rest; then each lane sends its own, in order. Not
        ``durable``: the process dies before recording, and only a 410's disabling of the
        endpoint (written at once) outlives it."""
        taken: Counter[str] = Counter()
        queued = []
        for job in jobs:
            if not self.endpoints[job.endpoint_id].enabled:
                if durable:
                    self._hold(self.pairs[job.event_id, job.endpoint_id])
                continue
            taken[job.endpoint_id] += 1
            if taken[job.endpoint_id] > LANE_ROOM:
                if durable:
                    self._defer(job)
                continue
            queued.append(job)
        for job in queued:
            self._attempt(job, durable)

    @staticmethod
    def _hold(pair: Pair) -> None:
        pair.place, pair.record = "held", ("held", pair.attempts)

    def _defer(self, job: Job) -> None:
        pair = self.pairs[job.event_id, job.endpoint_id]
        pair.place, pair.due_s = "scheduled", self.now_s + DEFER_S
        if job.first:
            pair.record = ("scheduled", pair.attempts)

    def _attempt(self, job: Job, durable: bool) -> None:
        endpoint = self.endpoints[job.endpoint_id]
        pair = self.pairs[job.event_id, job.endpoint_id]
        if not endpoint.enabled:  # disabled while it waited in its lane: held
            if durable:
                self._hold(pair)
            return
        self.sent[job.endpoint_id, job.event_id] += 1
        if endpoint.answer == 410:
            endpoint.enabled = False
        if not durable:
            return
        number = pair.attempts + 1
        if endpoint.answer == 200:
            self._settle(pair, "delivered", number)
        elif endpoint.answer == 410:
            self._settle(pair, "gone", number)
        elif number >= MAX_ATTEMPTS:
            self._settle(pair, "dead", number)
        else:
            pair.place, pair.attempts, pair.record = "scheduled", number, ("scheduled", number)
            pair.due_s = self.now_s + SCHEDULE_S[number - 1]

    @staticmethod
    def _settle(pair: Pair, state: str, number: int) -> None:
        pair.record = (state, number)
        pair.place = "delivered" if state == "delivered" else "dead"
        pair.dead_letters += state != "delivered"

    def _schedule_afresh(self, pair: Pair) -> None:
        pair.place, pair.attempts, pair.due_s = "scheduled", 0, self.now_s

    def replay(self, event_id: str) -> list[str] | None:
        recorded = sorted(endpoint_id for (event, endpoint_id), pair in self.pairs.items()
                          if event == event_id and pair.record is not None)  # fmt: skip
        for endpoint_id in recorded:
            self._schedule_afresh(self.pairs[event_id, endpoint_id])
        return recorded or None

    def recover(self, endpoint_id: str) -> int:
        """The endpoint's held deliveries, due now with the attempts they had made."""
        held = [pair for (_, endpoint), pair in self.pairs.items()
                if endpoint == endpoint_id and pair.place == "held"]  # fmt: skip
        for pair in held:
            pair.place, pair.due_s = "scheduled", self.now_s
        return len(held)

    def redrive(self, endpoint_id: str | None) -> int:
        redriven = 0
        for (_, endpoint), pair in self.pairs.items():
            if pair.dead_letters and endpoint_id in (None, endpoint):
                redriven += pair.dead_letters
                pair.dead_letters = 0
                self._schedule_afresh(pair)
        return redriven
