"""The detector's core: records in, routed records out. Pure (no Kafka client).

Each consumed record becomes exactly one output: to ``legit`` or ``fraud`` with the
transaction and a ``detection`` object saying why, or to ``dlq`` with its original
bytes and the reason in headers. Nothing raises on data.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

import orjson
from msgspec import UNSET, DecodeError

from services.detector.rules import AmountThreshold, Hit, StatefulRules
from services.transaction import (
    Transaction,
    decode_schema,
    extend,
    why_refused,
)

LEGIT, FRAUD, DLQ = "legit", "fraud", "dlq"
Headers = list[tuple[str, bytes]]


class Record(Protocol):
    """What the router needs of a consumed record (a confluent-kafka Message fits)."""

    def key(self) -> bytes | None: ...
    def value(self) -> bytes | None: ...
    def topic(self) -> str | None: ...
    def partition(self) -> int | None: ...
    def offset(self) -> int | None: ...
    def timestamp(self) -> tuple[int, int]: ...
    def headers(self) -> list[tuple[str, bytes]] | None: ...


@dataclass
class Counters:
    legit: int = 0
    fraud: int = 0
    dlq: int = 0

    def as_dict(self) -> dict[str, int]:
        return {"legit": self.legit, "fraud": self.fraud, "dlq": self.dlq}


class Routed(NamedTuple):
    """A batch's outputs: ``(key, value)`` for legit and fraud, and ``(key, value,
    headers)`` for dead letters."""

    legit: list[tuple[bytes | None, bytes]]
    fraud: list[tuple[bytes | None, bytes]]
    dlq: list[tuple[bytes | None, bytes | None, Headers]]


@dataclass
class Router:
    """Routes by the amount threshold and, when given, the stateful rules.

    With the threshold alone there are only two verdicts, built once per threshold and
    appended to each record's bytes; with rules, each verdict names the rules that fired
    and the figures they judged by (``features``).
    """

    instance: str
    threshold: float = 900.0
    counters: Counters = field(default_factory=Counters)
    # Rules beyond the threshold; None keeps the stateless fast path.
    rules: StatefulRules | None = None

    def __post_init__(self) -> None:
        self.set_threshold(self.threshold)

    def set_threshold(self, threshold: float) -> None:
        self.threshold = threshold
        self.rule = AmountThreshold(threshold)  # its name and reason go into the verdict
        self._legit = self._detection(fraud=False, rules=[])
        self._fraud = self._detection(
            fraud=True, rules=[{"rule": self.rule.name, "reason": self.rule.reason}]
        )

    def _detection(self, fraud: bool, rules: list[dict[str, str]]) -> bytes:
        body = orjson.dumps({"fraud": fraud, "rules": rules, "score": None,
                             "threshold": self.threshold, "instance": self.instance})
        return b',"detection":' + body + b"}"  # the record's own "}" included

    def route(self, records: Iterable[Record]) -> Routed:
        """Every record's output, by destination, each list in consumption order."""
        if self.rules is None:
            routed = self._route_by_threshold(records)
        else:
            routed = self._route_with_rules(records, self.rules)
        self.counters.legit += len(routed.legit)
        self.counters.fraud += len(routed.fraud)
        self.counters.dlq += len(routed.dlq)
        return routed

    def _route_by_threshold(self, records: Iterable[Record]) -> Routed:
        """The threshold alone: two verdicts, built once, appended to the records' bytes."""
        routed = Routed([], [], [])
        legit_out, fraud_out, dlq_out = routed.legit.append, routed.fraud.append, \
            routed.dlq.append
        threshold = self.threshold  # AmountThreshold.fires, inlined: this runs per record
        legit, fraud = self._legit, self._fraud
        schema_decode, unset = decode_schema, UNSET  # locals: this loop runs per record
        for record in records:
            raw = record.value()
            try:
                tx = schema_decode(raw)  # type: ignore[arg-type]
            except (DecodeError, ValueError, TypeError):  # TypeError: a null value
                dlq_out((record.key(), raw, self.dead_letter_headers(record, why_refused(raw))))
                continue
            if tx.amount >= threshold:
                suffix, out = fraud, fraud_out
            else:
                suffix, out = legit, legit_out
            if tx.id is unset or tx.ts is unset:
                suffix = identity_fields(tx, record) + suffix
            if tx.detection is unset and raw[-1] == 125:  # 125 is "}"
                out((record.key(), raw[:-1] + suffix))  # what extend does, in one step
            else:
                out((record.key(), extend(raw, tx, suffix[:-1])))
        return routed

    def _route_with_rules(self, records: Iterable[Record], rules: StatefulRules) -> Routed:
        """``route`` with every rule on: each verdict is built for its own transaction."""
        routed = Routed([], [], [])
        threshold = self.threshold
        for record in records:
            raw = record.value()
            try:
                tx = decode_schema(raw)  # type: ignore[arg-type]
            except (DecodeError, ValueError, TypeError):
                routed.dlq.append((record.key(), raw, self.dead_letter_headers(
                    record, why_refused(raw))))
                continue
            ts = tx.ts if tx.ts is not UNSET else max(0, record.timestamp()[1])
            hits, features = rules.evaluate(tx.source, tx.target, tx.amount, ts)
            if tx.amount >= threshold:
                hits.insert(0, Hit(self.rule.name, self.rule.reason))
            detection = verdict(hits, features, None, threshold, self.instance)
            fields = identity_fields(tx, record) + b',"detection":' + detection
            out = routed.fraud if hits else routed.legit
            out.append((record.key(), extend(raw, tx, fields)))  # type: ignore[arg-type]
        return routed

    def dead_letter_headers(self, record: Record, reason: str) -> Headers:
        return dead_letter_headers(record, reason, self.instance)


def dead_letter_headers(record: Record, reason: str, instance: str) -> Headers:
    """Why a record is a dead letter and where it came from, as headers."""
    return [
        ("dlq.reason", reason.encode()),
        ("dlq.topic", (record.topic() or "").encode()),
        ("dlq.partition", str(record.partition()).encode()),
        ("dlq.offset", str(record.offset()).encode()),
        ("dlq.instance", instance.encode()),
    ]


def verdict(hits: list[Hit], features: dict[str, float], score: float | None,
            threshold: float, instance: str) -> bytes:
    """The ``detection`` object: fraud when any rule fired, which ones and why."""
    return orjson.dumps({"fraud": bool(hits), "rules": [hit._asdict() for hit in hits],
                         "score": score, "features": features, "threshold": threshold,
                         "instance": instance})


def identity_fields(tx: Transaction, record: Record) -> bytes:
    """The ``id``/``ts`` members a bare tutorial record lacks, taken from its origin."""
    extra = b""
    if tx.id is UNSET:
        extra += b',"id":' + orjson.dumps(
            f"{record.topic()}-{record.partition()}-{record.offset()}")
    if tx.ts is UNSET:
        extra += b',"ts":' + str(max(0, record.timestamp()[1])).encode()
    return extra
