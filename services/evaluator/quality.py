"""Detection quality: verdicts joined with ground truth, over a sliding window. Pure.

A verdict (a record of the legit or fraud topic: the transaction and its
``detection``) and a label (a record of the labels topic) meet by transaction id, in
whichever order they arrive. Each pair becomes an ``Outcome``: what the detector said,
what was true, the scenario and the rules that fired.

The window is the last ``seconds`` of event time, ending at the newest outcome's
``ts``. Event time rather than arrival time, so that the same topics give the same
figures however fast (or late) they are read, and a user who changes a setting sees
the figures of the transactions made since. Outcomes are summed per second, so the
window costs the same at 10 or 100,000 transactions per second.

Both waiting rooms are bounded: an item waits until the other stream has moved
``wait_ms`` of event time past it (its partner is then not coming) or until room is
needed for newer ones; either way it is counted as unmatched, never kept forever.
"""

from __future__ import annotations

import bisect
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Annotated, NamedTuple

import msgspec

Text = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
EventTime = Annotated[int, msgspec.Meta(ge=0, lt=2**53)]
OTHER_SCENARIO = "unnamed"  # a fraud label that names no scenario


class _Rule(msgspec.Struct, gc=False):
    rule: Text


class _Detection(msgspec.Struct, gc=False):
    fraud: bool
    rules: list[_Rule] = []
    score: float | None = None


class _Verdict(msgspec.Struct, gc=False):
    """The members of a verdict the evaluator reads; the rest is skipped in C."""

    id: Text
    ts: EventTime
    detection: _Detection
    amount: float = 0.0


class _Label(msgspec.Struct, gc=False):
    id: Text
    fraud: bool
    scenario: Text | None = None
    ts: EventTime | msgspec.UnsetType = msgspec.UNSET


_decode_verdict = msgspec.json.Decoder(_Verdict).decode
_decode_label = msgspec.json.Decoder(_Label).decode
_BAD = (msgspec.DecodeError, ValueError, TypeError)  # TypeError: a null value


class Verdict(NamedTuple):
    ts: int
    fraud: bool
    rules: tuple[str, ...]
    amount: float = 0.0
    score: float | None = None


class Label(NamedTuple):
    ts: int
    fraud: bool
    scenario: str | None


class Outcome(NamedTuple):
    """One transaction judged against the truth."""

    ts: int  # event time, ms
    predicted: bool  # the detector said fraud
    actual: bool  # it was fraud
    scenario: str | None  # which scenario it belonged to (None: everyday traffic)
    rules: tuple[str, ...]  # the rules that fired
    amount: float = 0.0
    score: float | None = None  # the model's, when it scored


def ratio(part: int, whole: int) -> float | None:
    """``part / whole``, or None when there is nothing to divide (not 0: unknown)."""
    return part / whole if whole else None


def f1(precision: float | None, recall: float | None) -> float | None:
    if precision is None or recall is None:
        return None
    return 2 * precision * recall / (precision + recall) if precision + recall else 0.0


class ConfusionFigures:
    """Precision, recall and F1 of a confusion matrix, for whatever holds its counts."""

    tp: int
    fp: int
    fn: int
    tn: int

    @property
    def joined(self) -> int:
        """Transactions with both a verdict and a label."""
        return self.tp + self.fp + self.fn + self.tn

    @property
    def precision(self) -> float | None:
        return ratio(self.tp, self.tp + self.fp)

    @property
    def recall(self) -> float | None:
        return ratio(self.tp, self.tp + self.fn)

    @property
    def f1(self) -> float | None:
        return f1(self.precision, self.recall)


class Axis(NamedTuple):
    """A setting the tuning curve sweeps: fraud when the value is at or above it.

    Outcomes are counted by the bin of their value (bin ``i`` holds ``edges[i]`` up to
    the next edge), so that precision and recall at each edge come from a few sums:
    ``rule`` fired at the setting ``edges[i]`` exactly on the bins from ``i`` on. What
    the verdict would be anyway, without ``rule`` (another rule fired and was not
    vetoed), is counted apart as ``other``: it stays fraud wherever the setting goes.
    """

    name: str
    rule: str  # the hit in a verdict that this setting makes
    edges: tuple[float, ...]

    def bin(self, value: float) -> int:
        return max(0, bisect.bisect_right(self.edges, value) - 1)


# Every 50 (the threshold keys' step) around the usual thresholds, coarser beyond.
AMOUNT_EDGES = (0.0, 1.0, 2.0, 5.0, 10.0, 20.0, *map(float, range(50, 2001, 50)),
                2_500.0, 3_000.0, 4_000.0, 5_000.0, 7_500.0, 10_000.0, 20_000.0, 50_000.0)
SCORE_EDGES = tuple(round(i / 100, 2) for i in range(100))
AXES = (Axis("amount", "amount_threshold", AMOUNT_EDGES), Axis("score", "model", SCORE_EDGES))


@dataclass
class Curve:
    """Labelled outcomes binned along one axis (see ``Axis``)."""

    fraud: list[int]  # per bin: frauds the setting alone decides
    legit: list[int]
    other: list[int] = field(default_factory=lambda: [0, 0])  # [frauds, legit] fraud anyway
    unbinned: list[int] = field(default_factory=lambda: [0, 0])  # no value (no score)

    @classmethod
    def empty(cls, axis: Axis) -> Curve:
        return cls([0] * len(axis.edges), [0] * len(axis.edges))

    def merge(self, other: Curve) -> None:
        for mine, theirs in ((self.fraud, other.fraud), (self.legit, other.legit),
                             (self.other, other.other), (self.unbinned, other.unbinned)):
            for i, n in enumerate(theirs):
                mine[i] += n


@dataclass
class Tally(ConfusionFigures):
    """Counts of outcomes: the confusion matrix, per scenario and per rule."""

    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0
    # scenario -> [frauds, caught]
    scenarios: dict[str, list[int]] = field(default_factory=dict)
    # rule -> [fired, fired on a fraud]
    rules: dict[str, list[int]] = field(default_factory=dict)
    # axis name -> what the tuning curve along it needs
    curves: dict[str, Curve] = field(
        default_factory=lambda: {axis.name: Curve.empty(axis) for axis in AXES})

    def add(self, outcome: Outcome) -> None:
        if outcome.actual:
            if outcome.predicted:
                self.tp += 1
            else:
                self.fn += 1
            counts = self.scenarios.setdefault(outcome.scenario or OTHER_SCENARIO, [0, 0])
            counts[0] += 1
            counts[1] += outcome.predicted
        elif outcome.predicted:
            self.fp += 1
        else:
            self.tn += 1
        for rule in outcome.rules:
            counts = self.rules.setdefault(rule, [0, 0])
            counts[0] += 1
            counts[1] += outcome.actual
        for axis in AXES:
            curve = self.curves[axis.name]
            value = outcome.amount if axis.name == "amount" else outcome.score
            if outcome.predicted and any(rule != axis.rule for rule in outcome.rules):
                curve.other[0 if outcome.actual else 1] += 1
            elif value is None:
                curve.unbinned[0 if outcome.actual else 1] += 1
            else:
                (curve.fraud if outcome.actual else curve.legit)[axis.bin(value)] += 1

    def merge(self, other: Tally) -> None:
        self.tp += other.tp
        self.fp += other.fp
        self.fn += other.fn
        self.tn += other.tn
        for mine, theirs in ((self.scenarios, other.scenarios), (self.rules, other.rules)):
            for name, (a, b) in theirs.items():
                counts = mine.setdefault(name, [0, 0])
                counts[0] += a
                counts[1] += b
        for name, curve in other.curves.items():
            self.curves[name].merge(curve)


def tally(outcomes: Iterable[Outcome]) -> Tally:
    total = Tally()
    for outcome in outcomes:
        total.add(outcome)
    return total


class Window:
    """Outcomes of the last ``seconds`` of event time, summed per second."""

    def __init__(self, seconds: int) -> None:
        if seconds < 1:
            raise ValueError("a window lasts at least one second")
        self.seconds = seconds
        self._buckets: dict[int, Tally] = {}
        self.end: int | None = None  # the newest second seen
        self.late = 0  # outcomes older than the window when they arrived

    def add(self, outcome: Outcome) -> bool:
        """Count ``outcome``; False (and counted as late) when it is already too old."""
        second = outcome.ts // 1000
        if self.end is None or second > self.end:
            self.end = second
            oldest = second - self.seconds + 1
            for gone in [s for s in self._buckets if s < oldest]:
                del self._buckets[gone]
        elif second <= self.end - self.seconds:
            self.late += 1
            return False
        bucket = self._buckets.get(second)
        if bucket is None:
            bucket = self._buckets[second] = Tally()
        bucket.add(outcome)
        return True

    def tally(self) -> Tally:
        total = Tally()
        for bucket in self._buckets.values():
            total.merge(bucket)
        return total

    def span_ms(self) -> tuple[int, int] | None:
        """``(start, end)`` of the window in ms, end exclusive; None before any outcome."""
        if self.end is None:
            return None
        return (self.end - self.seconds + 1) * 1000, (self.end + 1) * 1000


@dataclass
class JoinCounters:
    joined: int = 0
    unmatched_verdicts: int = 0  # a verdict whose label never came
    unmatched_labels: int = 0  # a label whose verdict never came
    duplicates: int = 0  # a second verdict or label for an id (at-least-once delivery)


class Join:
    """Verdicts and labels paired by transaction id, whichever comes first."""

    def __init__(self, wait_ms: int, max_pending: int) -> None:
        self.wait_ms = wait_ms
        self.max_pending = max_pending
        self.counters = JoinCounters()
        # Insertion order is close to event-time order: the oldest wait at the front.
        self._verdicts: OrderedDict[str, Verdict] = OrderedDict()
        self._labels: OrderedDict[str, Label] = OrderedDict()
        self._done: OrderedDict[str, None] = OrderedDict()  # recently joined ids
        self._verdict_time = 0  # the newest event time seen on each side
        self._label_time = 0

    @property
    def pending(self) -> tuple[int, int]:
        """``(verdicts, labels)`` waiting for their partner."""
        return len(self._verdicts), len(self._labels)

    def add_verdict(self, tx_id: str, verdict: Verdict) -> Outcome | None:
        self._verdict_time = max(self._verdict_time, verdict.ts)
        label = self._labels.pop(tx_id, None)
        outcome = None
        if label is None:
            self._wait(tx_id, verdict, self._verdicts)
        else:
            outcome = self._joined(tx_id, verdict, label)
        self.expire()
        return outcome

    def add_label(self, tx_id: str, label: Label) -> Outcome | None:
        self._label_time = max(self._label_time, label.ts)
        verdict = self._verdicts.pop(tx_id, None)
        outcome = None
        if verdict is None:
            self._wait(tx_id, label, self._labels)
        else:
            outcome = self._joined(tx_id, verdict, label)
        self.expire()
        return outcome

    def _wait(self, tx_id: str, item: Verdict | Label, room: OrderedDict) -> None:
        if tx_id in room or tx_id in self._done:
            self.counters.duplicates += 1
            return
        room[tx_id] = item

    def _joined(self, tx_id: str, verdict: Verdict, label: Label) -> Outcome:
        self.counters.joined += 1
        self._done[tx_id] = None
        if len(self._done) > self.max_pending:
            self._done.popitem(last=False)
        return Outcome(verdict.ts, verdict.fraud, label.fraud, label.scenario, verdict.rules,
                       verdict.amount, verdict.score)

    def expire(self) -> None:
        """Give up on what waited too long or for which there is no more room."""
        counters = self.counters
        counters.unmatched_verdicts += _expire(self._verdicts, self._label_time - self.wait_ms,
                                               self.max_pending)
        counters.unmatched_labels += _expire(self._labels, self._verdict_time - self.wait_ms,
                                             self.max_pending)


def _expire(room: OrderedDict, before_ms: int, limit: int) -> int:
    gone = 0
    while room:
        first = next(iter(room.values()))
        if len(room) <= limit and first.ts >= before_ms:
            break
        room.popitem(last=False)
        gone += 1
    return gone


@dataclass
class Totals:
    """Since the evaluator started, beyond the window."""

    bad_verdicts: int = 0  # records of the legit/fraud topics that are not verdicts
    bad_labels: int = 0
    future: int = 0  # stamped too far ahead of the clock to be believed


class Evaluator:
    """Raw records in, a window of quality figures out: the service's whole core.

    A record stamped more than ``FUTURE_MS`` ahead of ``clock`` is set aside (counted
    as ``future``): one such record would otherwise move the window's end, and the
    join's clocks, past everything real, freezing the figures.
    """

    FUTURE_MS = 300_000

    def __init__(self, window_seconds: int = 60, wait_ms: int = 30_000,
                 max_pending: int = 100_000, clock: Callable[[], float] = time.time) -> None:
        self.join = Join(wait_ms, max_pending)
        self.window = Window(window_seconds)
        self.totals = Totals()
        self.clock = clock

    def _from_the_future(self, ts: int) -> bool:
        if ts > self.clock() * 1000 + self.FUTURE_MS:
            self.totals.future += 1
            return True
        return False

    def verdict(self, raw: bytes | None) -> None:
        try:
            v = _decode_verdict(raw)  # type: ignore[arg-type]
        except _BAD:
            self.totals.bad_verdicts += 1
            return
        if self._from_the_future(v.ts):
            return
        rules = tuple(rule.rule for rule in v.detection.rules)
        outcome = self.join.add_verdict(v.id, Verdict(v.ts, v.detection.fraud, rules, v.amount,
                                                      v.detection.score))
        if outcome is not None:
            self.window.add(outcome)

    def label(self, raw: bytes | None, record_ts_ms: int = 0) -> None:
        """A label; ``record_ts_ms`` stands in for a label without ``ts``."""
        try:
            lb = _decode_label(raw)  # type: ignore[arg-type]
        except _BAD:
            self.totals.bad_labels += 1
            return
        ts = lb.ts if lb.ts is not msgspec.UNSET else max(0, record_ts_ms)
        if self._from_the_future(ts):
            return
        scenario = lb.scenario if lb.fraud else None
        outcome = self.join.add_label(lb.id, Label(ts, lb.fraud, scenario))
        if outcome is not None:
            self.window.add(outcome)

    def counters(self) -> dict[str, int]:
        """Totals since start: what was joined, what could not be, what was refused."""
        join = self.join.counters
        waiting_verdicts, waiting_labels = self.join.pending
        return {"joined": join.joined, "unmatched_verdicts": join.unmatched_verdicts,
                "unmatched_labels": join.unmatched_labels, "duplicates": join.duplicates,
                "pending_verdicts": waiting_verdicts, "pending_labels": waiting_labels,
                "late": self.window.late, "bad_verdicts": self.totals.bad_verdicts,
                "bad_labels": self.totals.bad_labels, "future": self.totals.future}
