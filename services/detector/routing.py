"""The detector's core: records in, routed records out. Pure (no Kafka client).

Each consumed record becomes exactly one output: to ``legit`` or ``fraud`` with the
transaction and a ``detection`` object saying why, or to ``dlq`` with its original
bytes and the reason in headers. Nothing raises on data.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from services.detector.rules import AmountThreshold
from services.transaction import InvalidTransaction, decode, extend

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


@dataclass
class Counters:
    legit: int = 0
    fraud: int = 0
    dlq: int = 0

    def as_dict(self) -> dict[str, int]:
        return {"legit": self.legit, "fraud": self.fraud, "dlq": self.dlq}


@dataclass
class Router:
    """Routes by the amount threshold; its output suffixes are built once per threshold."""

    instance: str
    threshold: float = 900.0
    counters: Counters = field(default_factory=Counters)

    def __post_init__(self) -> None:
        self.set_threshold(self.threshold)

    def set_threshold(self, threshold: float) -> None:
        self.threshold = threshold
        self.rule = AmountThreshold(threshold)
        self._legit = self._detection(fraud=False, rules=[])
        self._fraud = self._detection(
            fraud=True, rules=[{"rule": self.rule.name, "reason": self.rule.reason}]
        )

    def _detection(self, fraud: bool, rules: list[dict[str, str]]) -> bytes:
        body = orjson.dumps({"fraud": fraud, "rules": rules, "score": None,
                             "threshold": self.threshold, "instance": self.instance})
        return b',"detection":' + body

    def route(self, records: Iterable[Record]) -> list[tuple[str, bytes | None, bytes | None,
                                                           Headers | None]]:
        """``(destination, key, value, headers)`` for every record, in order."""
        out: list[tuple[str, bytes | None, bytes | None, Headers | None]] = []
        append = out.append
        fires = self.rule.fires
        legit, fraud = self._legit, self._fraud
        n_fraud = n_legit = n_dlq = 0
        for record in records:
            raw = record.value()
            try:
                tx = decode(raw)
            except InvalidTransaction as exc:
                n_dlq += 1
                append((DLQ, record.key(), raw, self.dead_letter_headers(record, str(exc))))
                continue
            assert raw is not None
            extra = b"" if "id" in tx and "ts" in tx else _identity(tx, record)
            if fires(tx):
                n_fraud += 1
                append((FRAUD, record.key(), extend(raw, tx, extra + fraud), None))
            else:
                n_legit += 1
                append((LEGIT, record.key(), extend(raw, tx, extra + legit), None))
        self.counters.legit += n_legit
        self.counters.fraud += n_fraud
        self.counters.dlq += n_dlq
        return out

    def dead_letter_headers(self, record: Record, reason: str) -> Headers:
        return [
            ("dlq.reason", reason.encode()),
            ("dlq.topic", (record.topic() or "").encode()),
            ("dlq.partition", str(record.partition()).encode()),
            ("dlq.offset", str(record.offset()).encode()),
            ("dlq.instance", self.instance.encode()),
        ]


def _identity(tx: dict[str, Any], record: Record) -> bytes:
    """The ``id``/``ts`` members a bare tutorial record lacks, taken from its origin."""
    extra = b""
    if "id" not in tx:
        extra += b',"id":' + orjson.dumps(
            f"{record.topic()}-{record.partition()}-{record.offset()}")
    if "ts" not in tx:
        extra += b',"ts":' + str(max(0, record.timestamp()[1])).encode()
    return extra
