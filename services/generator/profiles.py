"""What the generator can stream, behind one batch interface. Pure.

Every source answers ``batch(count, ts_ms)`` with at most ``count`` transactions
stamped ``ts_ms`` and their labels, so that the pacer and the rate control drive each
one the same way:

- ``tutorial``: the classic uniform profile, unchanged, with no ground truth (its
  labels are always empty: nothing in it is fraud by construction);
- ``scenarios``: a population of customers with habits, with fraud scenarios mixed in
  at a share of the transactions, each transaction labelled;
- a replayed dataset (``services.generator.replay``), labelled from its rows.
"""

from __future__ import annotations

import heapq
import random
import uuid
from typing import NamedTuple, Protocol

import orjson

from services.generator.labels import EVERYDAY_LABEL, label
from services.generator.population import Population
from services.generator.scenarios import FAN_IN_WINDOW_MS, SCENARIOS, ScenarioDeck, Step
from services.generator.synthetic import TutorialProfile

PROFILES = ("tutorial", "scenarios")
DEFAULT_FRAUD_RATE = 0.02

Record = tuple[bytes, bytes]


class Batch(NamedTuple):
    transactions: list[Record]  # (key = source account, value = transaction JSON)
    labels: list[Record]  # (key = transaction id, value = label JSON); one per transaction


class Source(Protocol):
    labelled: bool  # whether it has ground truth to publish
    finished: bool  # a finite source has nothing more to send

    def batch(self, count: int, ts_ms: int) -> Batch: ...

    def pace(self, rate: float, ts_ms: int) -> None:
        """The stream runs at ``rate`` per second from ``ts_ms`` on."""


class Tutorial:
    """The tutorial profile behind the common interface: no labels, never finished."""

    labelled = False
    finished = False

    def __init__(self, seed: int | None = None) -> None:
        self.profile = TutorialProfile(seed=seed)

    def batch(self, count: int, ts_ms: int) -> Batch:
        return Batch(self.profile.batch(count, ts_ms), [])

    def pace(self, rate: float, ts_ms: int) -> None:
        """Uniform traffic is the same at any rate."""


class ScenarioProfile:
    """Everyday traffic of a population with fraud scenarios mixed in.

    Scenarios start at random points of the stream, as a Poisson process over
    transactions whose rate makes ``fraud_rate`` of all transactions, on average, belong
    to one: a start every ``mean steps / fraud_rate`` transactions. Each started
    scenario's steps then go out when the stream's event time reaches them, in place of
    everyday payments at random places in the batch, so the batch size (and thus the
    rate) stays the pacer's. The share holds once the scenarios under way have had
    time to unfold (the longest lasts ``FAN_IN_WINDOW_MS``); a short run has a smaller
    share, since the later steps of its scenarios were not due yet.

    A stream told its rate (``pace``) holds the share from the first second and
    through every change of rate: it has the scenarios under way that a stream always
    run at that rate would have.
    """

    labelled = True
    finished = False

    def __init__(self, seed: int | None = None, fraud_rate: float = DEFAULT_FRAUD_RATE,
                 accounts: int = 50_000) -> None:
        if not 0.0 <= fraud_rate <= 1.0:
            raise ValueError(f"fraud rate {fraud_rate} is not within 0..1")
        self.population = Population(seed, accounts)
        # Its own stream of draws: the population stays the same whatever the traffic.
        self.rng = random.Random(None if seed is None else f"traffic-{seed}")
        self.fraud_rate = fraud_rate
        self.deck = ScenarioDeck(self.rng)
        self._start_rate = fraud_rate / ScenarioDeck.mean_steps()
        self.run = uuid.uuid4().hex[:12]
        self.seq = 0
        self.cases = 0
        # Steps not yet sent: (due ts, order, step, scenario, case).
        self._pending: list[tuple[int, int, Step, str, str]] = []
        self._order = 0
        self._next_start = self._gap()
        self._rate = 0.0  # per second, as ``pace`` last told it

    def pace(self, rate: float, ts_ms: int) -> None:
        """The stream runs at ``rate`` per second from ``ts_ms`` on.

        Scenarios start per transaction but unfold over minutes of event time, so on
        their own, ten times the rate would bring ten times the everyday payments at
        once and the fraud of ten times the starts only as they unfold: for minutes,
        a third of the share (and any detector's precision with it). So the scenarios
        under way become those of a stream that had always run at ``rate``. Faster:
        the starts the difference would have made over the longest scenario's span
        are made now, back-dated at random over that span, and only their steps still
        due are sent. Slower: each scenario under way is kept with the chance the new
        rate has of the old. Paused (0) changes nothing: the scenarios wait with the
        stream.
        """
        if rate <= 0.0 or rate == self._rate:
            return
        before, self._rate = self._rate, rate
        if rate < before:
            keep = rate / before
            kept = {case for case in sorted({entry[4] for entry in self._pending})
                    if self.rng.random() < keep}
            self._pending = [entry for entry in self._pending if entry[4] in kept]
            heapq.heapify(self._pending)
            return
        missing = (rate - before) * FAN_IN_WINDOW_MS / 1000 * self._start_rate
        for _ in range(int(missing + self.rng.random())):
            self._start(ts_ms, since_ms=self.rng.randrange(FAN_IN_WINDOW_MS))

    def _gap(self) -> float:
        """Transactions until the next scenario starts."""
        return self.rng.expovariate(self._start_rate) if self._start_rate > 0 else float("inf")

    def _start(self, ts_ms: int, since_ms: int = 0) -> None:
        """A scenario that started ``since_ms`` before ``ts_ms``: its steps due by then
        are left out (``pace``)."""
        scenario = self.deck.deal()
        case = f"{self.run}-c{self.cases}"
        self.cases += 1
        plan, _ = SCENARIOS[scenario]
        for step in plan(self.population, self.rng):
            if step.offset_ms < since_ms:
                continue
            heapq.heappush(self._pending, (ts_ms - since_ms + step.offset_ms, self._order,
                                           step, scenario, case))
            self._order += 1

    def batch(self, count: int, ts_ms: int) -> Batch:
        # Scenarios that start within this batch's transactions.
        end = self.seq + count
        while self._next_start < end:
            self._start(ts_ms)
            self._next_start += self._gap()
        pending = self._pending
        due: list[tuple[int, int, Step, str, str]] = []
        while pending and pending[0][0] <= ts_ms and len(due) < count:
            due.append(heapq.heappop(pending))
        rng = self.rng
        payments = self.population.everyday(rng, count - len(due), ts_ms)
        # Scenario steps take random places among the everyday payments.
        fraud_at = sorted(zip(rng.sample(range(count), len(due)), due, strict=True))
        for position, (_, _, step, _, _) in fraud_at:
            payments.insert(position, (step.source, step.target, step.amount, step.currency))
        dumps, run, seq, everyday_label = orjson.dumps, self.run, self.seq, EVERYDAY_LABEL
        transactions: list[Record] = []
        labels: list[Record] = []
        for i, (source, target, amount, currency) in enumerate(payments, seq):
            tx_id = f"{run}-{i}"
            transactions.append((source.encode(), dumps({
                "id": tx_id, "ts": ts_ms, "source": source, "target": target,
                "amount": amount, "currency": currency,
            })))
            key = tx_id.encode()
            labels.append((key, everyday_label % (key, ts_ms)))
        for position, (_, _, _, scenario, case) in fraud_at:
            labels[position] = label(f"{run}-{seq + position}", ts_ms, scenario, case)
        self.seq = end
        return Batch(transactions, labels)

    @property
    def pending(self) -> int:
        """Steps of started scenarios that are not due yet."""
        return len(self._pending)
