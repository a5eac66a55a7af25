"""The stateful detector's two stages in one process, with its topics played by lists:
transactions spread over partitions by key, the repartition topic with its progress
markers, instances that share the partitions, and restarts from the changelogs.

It is the service's own code (``SourceStage``, ``TargetStage``, their state and
merge) driven the way ``StatefulDetector`` drives them, minus the client: so a test or
a benchmark can deliver the same records in any order (live-paced, all at once, one
partition after the other, split over instances, with a restart in the middle) and
compare the verdicts, without a broker.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from services.detector.model import OnlineModel
from services.detector.repartition import FRAME_KEY, offset_of
from services.detector.rules import RuleSettings, SourceRules, TargetRules
from services.detector.stages import SourceStage, TargetStage
from services.detector.stateful import InternalTopics, StatefulDetector

TRANSACTIONS = "queueing.transactions"
REPARTITION = "by-target-repartition"
NEVER_IDLE = float("inf")  # no partition goes idle until ``finish``


@dataclass
class LocalRecord:
    """A record as a consumer hands it over (what the stages read of one)."""

    _topic: str
    _partition: int
    _offset: int
    _key: bytes | None
    _value: bytes | None
    _headers: list[tuple[str, bytes]] | None = None
    _ts: int = 0

    def key(self) -> bytes | None:
        return self._key

    def value(self) -> bytes | None:
        return self._value

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def headers(self) -> list[tuple[str, bytes]] | None:
        return self._headers

    def timestamp(self) -> tuple[int, int]:
        return 1, self._ts


def stages_in_process(model: bool, clock: list[float]) -> StatefulDetector:
    """Both stages as the service builds them, every rule, with or without the model
    (it retrains in line, on ``clock``: seconds of event time); no client is made. For
    a process that feeds the stages itself, in order, one partition."""
    settings = RuleSettings()
    online = OnlineModel(background=False, clock=lambda: clock[0]) if model else None
    source = SourceStage(lambda: SourceRules(settings, novelty=model), "bench")
    target = TargetStage(lambda: TargetRules(settings, novelty=model), "bench",
                         model=online)
    return StatefulDetector("unused:9092", "transactions", InternalTopics.of("bench"),
                            source, target, settings)


def partition_of(key: bytes | None, partitions: int) -> int:
    return 0 if key is None else zlib.crc32(key) % partitions


@dataclass
class _Instance:
    source: SourceStage
    target: TargetStage


@dataclass
class LocalTopology:
    """Both stages over ``partitions`` partitions shared by ``instances`` instances
    (partition ``p`` belongs to instance ``p % instances``), every step a commit.

    ``verdicts`` maps each transaction's id to what the second stage said of it: a
    transaction judged twice raises, so a restart that repeats work is caught.
    """

    source_rules: Callable[[], SourceRules]
    target_rules: Callable[[], TargetRules]
    partitions: int = 4
    instances: int = 1
    threshold: float = 900.0
    model: Callable[[], OnlineModel] | None = None
    # A batch's forwards to one partition as one record, as the service sends them
    # (``repartition``); False: a record a forward, as older detectors did.
    framed: bool = True
    transactions: list[list[LocalRecord]] = field(init=False)
    repartition: list[list[LocalRecord]] = field(init=False)
    verdicts: dict[str, dict[str, Any]] = field(init=False, default_factory=dict)
    dead_letters: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        self.transactions = [[] for _ in range(self.partitions)]
        self.repartition = [[] for _ in range(self.partitions)]
        self._read_source = [0] * self.partitions
        self._read_target = [0] * self.partitions
        # What each partition's state wrote, as its changelog topic would hold it.
        self._source_log: list[list[tuple[bytes, bytes | None]]] = \
            [[] for _ in range(self.partitions)]
        self._target_log: list[list[tuple[bytes, bytes | None]]] = \
            [[] for _ in range(self.partitions)]
        self._members = [self._start(n) for n in range(self.instances)]

    def _start(self, n: int) -> _Instance:
        """Instance ``n``, its partitions' state read back from their changelogs."""
        member = _Instance(
            SourceStage(self.source_rules, f"i{n}", idle_after=NEVER_IDLE),
            TargetStage(self.target_rules, f"i{n}", self.threshold,
                        None if self.model is None else self.model(),
                        upstream=self.partitions))
        for partition in self._owned(n):
            member.source.state.assign(partition, self._source_log[partition])
            member.target.state.assign(partition, self._target_log[partition])
        return member

    def _owned(self, n: int) -> list[int]:
        return [p for p in range(self.partitions) if p % self.instances == n]

    def send(self, records: Iterable[tuple[bytes, bytes]]) -> None:
        """Produce ``(key, value)`` transactions, each to its key's partition."""
        for key, value in records:
            partition = partition_of(key, self.partitions)
            log = self.transactions[partition]
            ts = orjson.loads(value).get("ts", 0) if value.startswith(b"{") else 0
            log.append(LocalRecord(TRANSACTIONS, partition, len(log), key, value,
                                   None, ts if isinstance(ts, int) else 0))

    def pending(self) -> bool:
        return any(self._read_source[p] < len(self.transactions[p]) or
                   self._read_target[p] < len(self.repartition[p])
                   for p in range(self.partitions))

    def step_source(self, partition: int, most: int) -> int:
        """The owner of transactions partition ``partition`` processes up to ``most``
        records of it; returns how many."""
        start = self._read_source[partition]
        batch = self.transactions[partition][start:start + most]
        if not batch:
            return 0
        self._read_source[partition] = start + len(batch)
        member = self._members[partition % self.instances]
        if self.framed:
            framed, dead = member.source.process_framed(batch, self.partitions)
            for destination, value in framed:
                self._forward(destination, FRAME_KEY, value, None)
        else:
            forwards, dead = member.source.process(batch)
            for key, value, headers in forwards:
                self._forward(partition_of(key, self.partitions), key, value, headers)
        self.dead_letters += len(dead)
        self._tell(member)
        self._commit(member)
        return len(batch)

    def step_target(self, partition: int, most: int) -> int:
        """The owner of repartition partition ``partition`` processes up to ``most``
        records of it; returns how many."""
        start = self._read_target[partition]
        batch = self.repartition[partition][start:start + most]
        if not batch:
            return 0
        self._read_target[partition] = start + len(batch)
        member = self._members[partition % self.instances]
        routed = member.target.process(batch)
        self.dead_letters += len(routed.dlq)
        for fraud, outputs in ((False, routed.legit), (True, routed.fraud)):
            for _, value in outputs:
                tx = orjson.loads(value)
                if tx["id"] in self.verdicts:
                    raise AssertionError(f"{tx['id']} judged twice")
                detection = tx["detection"]
                self.verdicts[tx["id"]] = {
                    "fraud": fraud, "rules": [hit["rule"] for hit in detection["rules"]],
                    "features": detection.get("features", {})}
        self._commit(member)
        return len(batch)

    def restart(self, n: int) -> None:
        """Instance ``n`` dies and comes back: its state is what the changelogs hold,
        and it reads its repartition partitions again from their committed offsets
        (records that waited for the watermark were not committed)."""
        old = self._members[n]
        for partition in self._owned(n):
            merge = old.target.state.clocks.get(partition)
            oldest = None if merge is None else merge.oldest_position()
            if oldest is not None:
                self._read_target[partition] = offset_of(oldest)
        self._members[n] = self._start(n)

    def finish(self) -> None:
        """Every partition has gone quiet: the idleness timeout passes, the markers say
        so, and everything still waiting is judged."""
        for partition in range(self.partitions):
            self.step_source(partition, 1 << 30)
        for member in self._members:
            self._tell(member, now=NEVER_IDLE)
        for partition in range(self.partitions):
            self.step_target(partition, 1 << 30)

    def run(self, steps: Iterable[tuple[str, int, int]]) -> dict[str, dict[str, Any]]:
        """``("source" | "target", partition, most)`` steps, then whatever is left
        partition by partition, then ``finish``; the verdicts."""
        for kind, partition, most in steps:
            if kind == "source":
                self.step_source(partition % self.partitions, most)
            elif kind == "target":
                self.step_target(partition % self.partitions, most)
            elif kind == "restart":
                self.restart(partition % self.instances)
        self.finish()
        return self.verdicts

    def _forward(self, partition: int, key: bytes | None, value: bytes,
                 headers: list[tuple[str, bytes]] | None) -> None:
        log = self.repartition[partition]
        log.append(LocalRecord(REPARTITION, partition, len(log), key, value, headers))

    def _tell(self, member: _Instance, now: float = 0.0) -> None:
        marker = member.source.progress(now)
        if marker is not None:
            for partition in range(self.partitions):
                self._forward(partition, None, marker, None)

    def _commit(self, member: _Instance) -> None:
        for partition, key, value in member.source.state.changes():
            self._source_log[partition].append((key, value))
        for partition, key, value in member.target.state.changes():
            self._target_log[partition].append((key, value))
