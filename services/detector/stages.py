"""The detector with stateful rules, split in two stages by key. Pure (no Kafka client).

Records arrive keyed by source, so the rules about a source (velocity, amount anomaly)
see all of its transactions in the instance that owns its partition. Fan-in is about
a target, whose payers are spread over every partition. As Kafka Streams does it, the
first stage re-keys each transaction by target onto an internal topic, and the second
stage, reading that topic's partitions, sees all of a target's transactions:

    transactions (key source) ─► SourceStage ─► repartition topic (key target)
                                      │                    │
                                      └─► dead letters     └─► TargetStage ─► legit / fraud

Each stage keeps its state per partition (``PartitionedState``): an instance that is
given a partition restores that partition's state from its changelog, and one that
loses it drops it. The final record keeps the transaction's own key (the source),
carried across in a header.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Generic, TypeVar

import msgspec
import numpy as np
import orjson
from msgspec import UNSET, DecodeError

from services.detector.features import FeatureRows, dataset_features
from services.detector.routing import (
    CUTOFF,
    VETO,
    Counters,
    Headers,
    Record,
    Routed,
    dead_letter_headers,
    decide,
    identity_fields,
    score_batch,
    verdict,
)
from services.detector.rules import AmountThreshold, Hit, SourceRules, TargetRules
from services.transaction import decode_schema, extend, why_refused

if TYPE_CHECKING:  # the model imports scikit-learn, which a detector without one never needs
    from services.detector.model import OnlineModel

KEY_HEADER = "key"  # the transaction's own key, across the repartition topic

Rules = TypeVar("Rules", SourceRules, TargetRules)


class PartitionedState(Generic[Rules]):
    """A rule set per partition an instance owns, created when the partition is given."""

    def __init__(self, factory: Callable[[], Rules]) -> None:
        self.factory: Callable[[], Rules] = factory
        self.partitions: dict[int, Rules] = {}

    def assign(self, partition: int, changelog: Iterable[tuple[bytes, bytes | None]]) -> int:
        """Take over ``partition``, its state rebuilt from its changelog records (oldest
        first; ``None`` values are deletions). Returns how many records were applied."""
        rules = self.partitions[partition] = self.factory()
        applied = 0
        for key, value in changelog:
            rules.restore(key.decode(), None if value is None else orjson.loads(value))
            applied += 1
        return applied

    def revoke(self, partition: int) -> None:
        self.partitions.pop(partition, None)

    def owned(self) -> list[int]:
        return list(self.partitions)

    def get(self, partition: int) -> Rules:
        rules = self.partitions.get(partition)
        if rules is None:  # a record of a partition not announced: start it empty
            rules = self.partitions[partition] = self.factory()
        return rules

    def changes(self) -> Iterator[tuple[int, bytes, bytes | None]]:
        """``(partition, key, value)`` for the changelog: what changed since last asked."""
        for partition, rules in self.partitions.items():
            for key, value in rules.encoded_changes():
                yield partition, key, value


class Forwarded(msgspec.Struct, gc=False):
    """A transaction on its way from the first stage to the second."""

    tx: msgspec.Raw  # the transaction's bytes, id and ts filled in, any old detection gone
    id: str
    source: str
    target: str
    amount: float
    ts: int
    hits: list[Hit]  # arrays in JSON, named tuples again when decoded
    features: dict[str, float]


_decode_forwarded = msgspec.json.Decoder(Forwarded).decode
_encode_forwarded = msgspec.json.Encoder().encode


class SourceStage:
    """Validates, runs the rules about sources, and re-keys each transaction by target."""

    def __init__(self, rules: Callable[[], SourceRules], instance: str) -> None:
        self.state = PartitionedState(rules)
        self.instance = instance
        self.dead_letters = 0

    def configure(self) -> None:
        """Take up changed rule settings in every partition's rules."""
        for rules in self.state.partitions.values():
            rules.configure()

    def process(self, records: Iterable[Record]) -> tuple[
            list[tuple[bytes, bytes, Headers]], list[tuple[bytes | None, bytes | None, Headers]]]:
        """``(forwards, dead letters)``: forwards as ``(target, value, headers)``."""
        forwards: list[tuple[bytes, bytes, Headers]] = []
        dead: list[tuple[bytes | None, bytes | None, Headers]] = []
        for record in records:
            raw = record.value()
            try:
                tx = decode_schema(raw)  # type: ignore[arg-type]
            except (DecodeError, ValueError, TypeError):
                dead.append((record.key(), raw, dead_letter_headers(
                    record, why_refused(raw), self.instance)))
                continue
            assert raw is not None
            ts = tx.ts if tx.ts is not UNSET else max(0, record.timestamp()[1])
            hits: list[Hit] = []
            features: dict[str, float] = {}
            self.state.get(record.partition() or 0).evaluate(
                tx.source, tx.target, tx.amount, ts, hits, features)
            body = extend(raw, tx, identity_fields(tx, record))
            ident = tx.id if tx.id is not UNSET else \
                f"{record.topic()}-{record.partition()}-{record.offset()}"
            value = _encode_forwarded(Forwarded(
                msgspec.Raw(body), ident, tx.source, tx.target, tx.amount, ts, hits, features))
            key = record.key()
            forwards.append((tx.target.encode(), value,
                             [] if key is None else [(KEY_HEADER, key)]))
        self.dead_letters += len(dead)
        return forwards, dead


class TargetStage:
    """Runs the rules about targets, the threshold and the model, and gives each
    transaction its verdict, under its own key again.

    The model, when there is one, scores the whole batch in one call once the rules
    have seen every record (their figures are its features); ``Routed.features`` then
    holds those rows, for the label join that teaches the model.
    """

    def __init__(self, rules: Callable[[], TargetRules], instance: str,
                 threshold: float = 900.0, model: OnlineModel | None = None,
                 cutoff: float = CUTOFF, veto: float = VETO) -> None:
        self.state = PartitionedState(rules)
        self.instance = instance
        self.counters = Counters()
        self.model = model
        self.cutoff = cutoff  # see routing.decide
        self.veto = veto
        # Whether the model's score decides with the rules (routing.decide) or is only
        # shown while the rules decide: the detector's ModelTrust says which.
        self.model_decides = True
        self.set_threshold(threshold)

    def set_threshold(self, threshold: float) -> None:
        self.rule = AmountThreshold(threshold)

    def configure(self) -> None:
        """Take up changed rule settings in every partition's rules."""
        for rules in self.state.partitions.values():
            rules.configure()

    def process(self, records: Iterable[Record]) -> Routed:
        routed = Routed([], [], [])
        threshold, model = self.rule.threshold, self.model
        threshold_hit = Hit(self.rule.name, self.rule.reason)
        rows = FeatureRows()
        judged: list[tuple[Record, bytes, dict[str, float], list[Hit]]] = []
        fired: list[bool] = []  # with a model: whether a rule fired on each scored one
        rules_of = self.state.get  # locals: this loop runs per record
        for record in records:
            raw = record.value()
            try:
                forwarded = _decode_forwarded(raw)  # type: ignore[arg-type]
            except (DecodeError, ValueError, TypeError) as exc:
                # Only the first stage writes here; anything else is a foreign record.
                routed.dlq.append((record.key(), raw, dead_letter_headers(
                    record, f"not a forwarded transaction: {exc}", self.instance)))
                continue
            hits, features = forwarded.hits, forwarded.features
            rules_of(record.partition() or 0).evaluate(
                forwarded.target, forwarded.source, forwarded.ts, hits, features)
            if forwarded.amount >= threshold:
                hits.insert(0, threshold_hit)
            tx = bytes(forwarded.tx)
            if model is not None:
                rows.add(forwarded.id, forwarded.ts, forwarded.amount, features,
                         dataset_features(tx))
                fired.append(bool(hits))  # for grading, once labels come
            judged.append((record, tx, features, hits))
        scores, batch = score_batch(model, rows, len(judged))
        cutoff, veto, instance = self.cutoff, self.veto, self.instance
        decides = self.model_decides
        legit, fraud_out = routed.legit.append, routed.fraud.append
        for (record, tx, features, hits), score in zip(judged, scores, strict=True):
            fraud, hits = decide(hits, score if decides else None, cutoff, veto)
            detection = verdict(hits, features, score, threshold, instance, fraud)
            value = b"".join((tx[:-1], b',"detection":', detection, b"}"))
            (fraud_out if fraud else legit)((_original_key(record), value))
        if batch is not None:  # None scores (no model trained yet) become NaN
            routed = routed._replace(features=batch._replace(verdicts=np.column_stack(
                (np.array(fired, dtype=float), np.array(scores, dtype=float)))))
        self.counters.legit += len(routed.legit)
        self.counters.fraud += len(routed.fraud)
        self.counters.dlq += len(routed.dlq)
        return routed


def _original_key(record: Record) -> bytes | None:
    for name, value in record.headers() or ():
        if name == KEY_HEADER:
            return value
    return None
