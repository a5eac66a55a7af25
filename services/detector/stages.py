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
carried across inside the forwarded value (``Forwarded``).

Time is event time across partitions (``event_time``): each forwarded record carries
its source partition and that partition's stream time, the first stage sends progress
markers to every repartition partition, and the second stage takes records in the
order of their partitions' stream times once every partition has got that far. So a
target's figures do not depend on which source partition was fetched first.
"""

from __future__ import annotations

import gc
import math
import time
from collections.abc import Callable, Iterable, Iterator
from itertools import compress, repeat
from operator import not_
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

import msgspec
import numpy as np
from msgspec import UNSET, DecodeError

from services.detector.event_time import (
    CLOCK_KEY,
    Merge,
    Progress,
    SourceClock,
    decode_progress,
    encode_progress,
    progress_of,
)
from services.detector.features import (
    FeatureRows,
    dataset_features,
)
from services.detector.repartition import (
    figures_matrix,
    frame,
    is_framed,
    pack_figures,
    position,
    row_figures,
)
from services.detector.routing import (
    CUTOFF,
    VETO,
    Counters,
    Headers,
    Record,
    Routed,
    VerdictWriter,
    dead_letter_headers,
    decide,
    decide_columns,
    decider,
    identity_fields,
    irregular,
    score_batch,
    score_columns,
    threshold_hits,
)
from services.detector.rules import AmountThreshold, Hit, SourceRules, TargetRules
from services.detector.store import decode_state, encode_state
from services.transaction import MAX_BYTES, decode_schema, extend, too_large, why_refused

if TYPE_CHECKING:  # the model imports scikit-learn, which a detector without one never needs
    from services.detector.model import OnlineModel

# Records decoded and handed to the rules at once (``_RuleSet.restore_batch``): a few
# thousand, whose decoded states are freed together before the next are decoded.
RESTORE_BATCH = 2048
KEY_HEADER = "key"  # where detectors before ``Forwarded`` carried the transaction's own key

Rules = TypeVar("Rules", SourceRules, TargetRules)


class _Clock(Protocol):
    """What a partition's clock gives the changelog."""

    changed: bool

    def state(self) -> Any: ...
    def restore(self, state: Any) -> None: ...


Clock = TypeVar("Clock", bound=_Clock)


class PartitionedState(Generic[Rules, Clock]):
    """A rule set and a clock per partition an instance owns, created when the partition
    is given. The clock (``event_time``) goes to the changelog with the rules' state,
    under ``CLOCK_KEY``, whenever it changed."""

    def __init__(self, factory: Callable[[], Rules], clock: Callable[[], Clock]) -> None:
        self.factory: Callable[[], Rules] = factory
        self.clock_factory = clock
        self.partitions: dict[int, Rules] = {}
        self.clocks: dict[int, Clock] = {}

    def assign(self, partition: int, changelog: Iterable[tuple[bytes, bytes | None]]) -> int:
        """Take over ``partition``, its state rebuilt from its changelog records (oldest
        first; ``None`` values are deletions). Returns how many records were applied."""
        rules = self.partitions[partition] = self.factory()
        clock = self.clocks[partition] = self.clock_factory()
        applied = 0
        # A restore makes millions of objects that all live on: the cyclic collector
        # would trace them again and again as they pile up, and find nothing to free.
        collecting = gc.isenabled()
        gc.disable()
        try:
            keys: list[str] = []
            states: list[Any] = []
            for key, value in changelog:
                name = key.decode()
                state = None if value is None else decode_state(value)
                if name == CLOCK_KEY:
                    if state is not None:
                        clock.restore(state)
                else:
                    keys.append(name)
                    states.append(state)
                    if len(keys) >= RESTORE_BATCH:
                        rules.restore_batch(keys, states)
                        keys, states = [], []
                applied += 1
            rules.restore_batch(keys, states)
            rules.flush()
        finally:
            if collecting:
                gc.enable()
        return applied

    def revoke(self, partition: int) -> None:
        self.partitions.pop(partition, None)
        self.clocks.pop(partition, None)

    def owned(self) -> list[int]:
        return list(self.partitions)

    def get(self, partition: int) -> Rules:
        rules = self.partitions.get(partition)
        if rules is None:  # a record of a partition not announced: start it empty
            rules = self.partitions[partition] = self.factory()
            self.clocks[partition] = self.clock_factory()
        return rules

    def clock(self, partition: int) -> Clock:
        clock = self.clocks.get(partition)
        if clock is None:
            self.get(partition)
            clock = self.clocks[partition]
        return clock

    def changes(self) -> Iterator[tuple[int, bytes, bytes | None]]:
        """``(partition, key, value)`` for the changelog: what changed since last asked."""
        for partition, rules in self.partitions.items():
            for key, value in rules.encoded_changes():
                yield partition, key, value
            clock = self.clocks.get(partition)
            if clock is not None and clock.changed:
                clock.changed = False
                yield partition, CLOCK_KEY.encode(), encode_state(clock.state())


class Forwarded(msgspec.Struct, array_like=True, gc=False):
    """A transaction on its way from the first stage to the second, in MessagePack as
    an array: no member's name on the wire, and the transaction's own key inside
    rather than in a header, which would cost per record in the client. The figures
    keep their names: decoding a map of a dozen short names (msgspec caches them)
    took 0.56 µs, where values by position, made a dict again for the rules, took
    1.42 µs, for 124 bytes less."""

    tx: bytes  # the transaction's bytes, id and ts filled in, any old detection gone
    id: str
    source: str
    target: str
    amount: float
    ts: int
    hits: list[Hit]
    figures: dict[str, float]
    # The source partition and its stream time after this record (``event_time``).
    partition: int
    order: int
    key: bytes | None  # the transaction's own key


class _JsonForwarded(msgspec.Struct, gc=False):
    """A forward as detectors before ``Forwarded`` wrote it, JSON with its key in the
    ``KEY_HEADER`` header: read still, for the records an upgrade finds on the topic."""

    tx: msgspec.Raw
    id: str
    source: str
    target: str
    amount: float
    ts: int
    hits: list[Hit]  # arrays in JSON, named tuples again when decoded
    figures: dict[str, float] = msgspec.field(name="features")  # as ``Forwarded`` names it
    # Absent from records of still older detectors, which are taken as they come.
    partition: int = -1
    order: int | None = None


class ForwardRow(msgspec.Struct, array_like=True, gc=False):
    """A forward in a framed record (``repartition.frame``):
    ``Forwarded``'s members, its figures by place, in the order the record names them
    once for all its rows: their float64s' bytes (``repartition.PACKED``), or in an
    earlier detector's frame a list of numbers."""

    tx: bytes
    id: str
    source: str
    target: str
    amount: float
    ts: int
    hits: list[Hit]
    figures: bytes | list[float]
    partition: int
    order: int
    key: bytes | None


# What waits in the second stage's merge: a lone forward, or a row with the names of
# its figures.
Waiting = Forwarded | tuple[ForwardRow, tuple[str, ...]]
_NO_HITS: list[Hit] = []  # a forward's hits where no rule fired (only ever encoded)

_decode_forwarded = msgspec.msgpack.Decoder(Forwarded).decode
_decode_rows = msgspec.msgpack.Decoder(tuple[int, int, list[str], list[ForwardRow]]).decode
_encode_forwarded = msgspec.msgpack.Encoder().encode
_decode_json_forwarded = msgspec.json.Decoder(_JsonForwarded).decode


_MSGPACK_ARRAY = frozenset((*range(0x90, 0xA0), 0xDC))  # fixarray, array 16
_JSON_OBJECT = 0x7B  # "{"


class SourceStage:
    """Validates, runs the rules about sources, and re-keys each transaction by target.

    Its state is per partition and each partition's records come in their own order,
    so how the partitions' records interleave changes nothing here. Each partition's
    stream time travels with its forwards, and in the progress markers
    (``progress``) that tell every repartition partition how far it has got.
    """

    def __init__(self, rules: Callable[[], SourceRules], instance: str,
                 idle_after: float = 2.0) -> None:
        self.state: PartitionedState[SourceRules, SourceClock] = PartitionedState(
            rules, lambda: SourceClock(time.monotonic()))
        self.instance = instance
        self.idle_after = idle_after  # seconds without a record: a partition is idle
        self.dead_letters = 0
        self._told: Progress | None = None  # the last progress marker made

    def configure(self) -> None:
        """Take up changed rule settings in every partition's rules."""
        for rules in self.state.partitions.values():
            rules.configure()

    def process(self, records: Iterable[Record]) -> tuple[
            list[tuple[bytes, bytes, Headers | None]],
            list[tuple[bytes | None, bytes | None, Headers]]]:
        """``(forwards, dead letters)``: forwards as ``(target, value, headers)``, a
        ``Forwarded`` each, the headers None (the key travels in the value)."""
        forwards: list[tuple[bytes, bytes, Headers | None]] = []
        taken, batches, dead = self._decoded(records)
        orders = [0] * len(taken)
        judged: list[tuple[list[Hit], dict[str, float]]] = [([], {})] * len(taken)
        for partition, (rules, indices) in batches.items():
            advance = self.state.clock(partition).advance
            mine = [taken[i] for i in indices]
            for i, (_, _, _, ts, _) in zip(indices, mine, strict=True):
                orders[i] = advance(ts)
            for i, verdict in zip(indices, rules.evaluate_batch(
                    [tx.source for _, _, tx, _, _ in mine], [tx.target for _, _, tx, _, _ in mine],
                    [tx.amount for _, _, tx, _, _ in mine], [ts for _, _, _, ts, _ in mine]),
                    strict=True):
                judged[i] = verdict
        encode = _encode_forwarded  # a local: the loop runs per record
        for (record, raw, tx, ts, partition), order, (hits, features) in zip(
                taken, orders, judged, strict=True):
            body = extend(raw, tx, identity_fields(tx, record))
            ident = tx.id if tx.id is not UNSET else \
                f"{record.topic()}-{record.partition()}-{record.offset()}"
            # ``Forwarded``'s members in its order: the same bytes, without the struct.
            value = encode((body, ident, tx.source, tx.target, tx.amount, ts, hits, features,
                            partition, order, record.key()))
            forwards.append((tx.target.encode(), value, None))
        return forwards, dead

    def process_framed(self, records: Iterable[Record], partitions: int) -> tuple[
            list[tuple[int, bytes]], list[tuple[bytes | None, bytes | None, Headers]]]:
        """``process``, its forwards framed for ``partitions`` repartition partitions
        (``repartition.frame``): ``(partition, value)`` records. The rules give
        their figures in columns, and the forwards carry them by place, named once a
        record: no dict a record on either side."""
        taken, batches, dead = self._decoded(records)
        rows: list[tuple[Any, ...]] = []
        targets: list[bytes] = []
        names: tuple[str, ...] | None = None
        for partition, (rules, indices) in batches.items():
            if not indices:
                continue
            mine = [taken[i] for i in indices]
            txs = [tx for _, _, tx, _, _ in mine]
            times = [ts for _, _, _, ts, _ in mine]
            ts = np.array(times, np.int64)
            orders = self._advance(self.state.clock(partition), ts)
            sources = [tx.source for tx in txs]
            payees = [tx.target for tx in txs]
            amounts = [tx.amount for tx in txs]
            judged = rules.judge_columns(sources, payees, amounts, times, ts=ts)
            found = tuple(judged.figures)
            if names is None:
                names = found
            elif found != names:  # never so within one detector's rules
                raise ValueError(f"figures {found} beside {names} in one batch")
            hits = [_NO_HITS] * len(mine)
            for at, fired in judged.hits.items():
                hits[at] = fired
            # The transactions' bytes and ids as they are, but where a record lacks
            # its id or time, or holds a detection: ``extend`` writes those.
            raws = [raw for _, raw, _, _, _ in mine]
            ids = [tx.id for tx in txs]
            bare = ids.count(UNSET) > 0 or [tx.ts for tx in txs].count(UNSET) > 0
            for i in irregular(txs, raws, bare):
                record, raw, tx, _, _ = mine[i]
                raws[i] = extend(raw, tx, identity_fields(tx, record))
                if tx.id is UNSET:
                    ids[i] = f"{record.topic()}-{record.partition()}-{record.offset()}"
            # ``ForwardRow``'s members in its order, each record's figures by place.
            rows.extend(zip(raws, ids, sources, payees, amounts, times, hits,
                            pack_figures(list(judged.figures.values()), len(mine)),
                            repeat(partition), orders, [m[0].key() for m in mine]))
            targets.extend([payee.encode() for payee in payees])
        if names is None:
            return [], dead
        return frame(targets, rows, names, partitions), dead

    @staticmethod
    def _advance(clock: SourceClock, ts: np.ndarray) -> list[int]:
        """``clock.advance`` of each of a partition's records in turn, at once: each
        record's order, the partition's stream time after it."""
        orders = np.maximum.accumulate(np.maximum(ts, clock.time))
        newest = int(orders[-1])
        if newest > clock.time:
            clock.time = newest
            clock.changed = True
        return orders.tolist()

    def _decoded(self, records: Iterable[Record]) -> tuple[
            list[tuple[Record, bytes, Any, int, int]], dict[int, tuple[SourceRules, list[int]]],
            list[tuple[bytes | None, bytes | None, Headers]]]:
        """The records that hold a transaction, as ``(record, bytes, transaction, time,
        partition)``; each partition's rules and its records' places among them; the
        dead letters."""
        dead: list[tuple[bytes | None, bytes | None, Headers]] = []
        now = time.monotonic()
        taken: list[tuple[Record, bytes, Any, int, int]] = []
        batches: dict[int, tuple[SourceRules, list[int]]] = {}
        for record in records:
            raw = record.value()
            partition = record.partition() or 0
            batch = batches.get(partition)
            if batch is None:
                batch = batches[partition] = (self.state.get(partition), [])
                self.state.clock(partition).heard_at = now
            try:
                if raw is not None and len(raw) > MAX_BYTES:  # its forward would not go
                    raise ValueError
                tx = decode_schema(raw)  # type: ignore[arg-type]
            except (DecodeError, ValueError, TypeError):
                dead.append((record.key(), raw, dead_letter_headers(
                    record, too_large(raw) or why_refused(raw), self.instance)))
                continue
            assert raw is not None
            ts = tx.ts if tx.ts is not UNSET else max(0, record.timestamp()[1])
            batch[1].append(len(taken))
            taken.append((record, raw, tx, ts, partition))
        self.dead_letters += len(dead)
        return taken, batches, dead

    def progress(self, now: float | None = None) -> bytes | None:
        """A progress marker for every repartition partition, when there is news since
        the last one: how far each owned partition has got, and which went idle."""
        marker = progress_of(self.state.clocks.items(),
                             time.monotonic() if now is None else now, self.idle_after)
        if not marker.watermarks or marker == self._told:
            return None
        self._told = marker
        return encode_progress(marker)


class TargetStage:
    """Runs the rules about targets, the threshold and the model, and gives each
    transaction its verdict, under its own key again.

    The model, when there is one, scores the whole batch in one call once the rules
    have seen every record (their figures are its features); ``Routed.features`` then
    holds those rows, for the label join that teaches the model.

    ``upstream`` is how many partitions the first stage reads: records then wait for
    every one of them to get as far (``event_time.Merge``). None takes each call's
    records at once, in order, for a process that feeds both stages in order itself.
    """

    def __init__(self, rules: Callable[[], TargetRules], instance: str,
                 threshold: float = 900.0, model: OnlineModel | None = None,
                 cutoff: float = CUTOFF, veto: float = VETO,
                 upstream: int | None = None) -> None:
        self.upstream = upstream
        self.state: PartitionedState[TargetRules, Merge[Waiting]] = PartitionedState(
            rules, lambda: Merge(self.upstream))
        self.instance = instance
        self.counters = Counters()
        self.model = model
        self.cutoff = cutoff  # see routing.decide
        self.veto = veto
        # Whether the model's score decides with the rules (routing.decide) or is only
        # shown while the rules decide: the detector's ModelTrust says which.
        self.model_decides = True
        # Whether, deciding, it may raise an alarm no rule raised (ModelTrust.alone).
        self.model_alone = True
        # The figures' names of the first framed forward read, and whether anything
        # else was ever pushed (a lone forward of an earlier detector, other names):
        # until then, what the merges release needs no look to be judged in columns.
        self._names: tuple[str, ...] | None = None
        self._mixed = False
        self.set_threshold(threshold)

    def set_threshold(self, threshold: float) -> None:
        self.rule = AmountThreshold(threshold)

    def configure(self) -> None:
        """Take up changed rule settings in every partition's rules."""
        for rules in self.state.partitions.values():
            rules.configure()

    def process(self, records: Iterable[Record]) -> Routed:
        """Verdicts for the records the watermark lets through: those read now, and
        those read before that waited for it (``event_time.Merge``)."""
        routed = Routed([], [], [])
        touched: dict[int, Merge[Waiting]] = {}
        merge_of = self.state.clock
        decode, msgpack_array = _decode_forwarded, _MSGPACK_ARRAY  # locals: per record
        for record in records:
            raw = record.value()
            partition = record.partition() or 0
            merge = touched.get(partition)
            if merge is None:
                merge = touched[partition] = merge_of(partition)
            try:
                if record.key() is None:  # a progress marker of the first stage
                    merge.hear(decode_progress(raw))  # type: ignore[arg-type]
                    continue
                if raw and is_framed(raw):  # a batch's forwards to this partition
                    _, _, listed, rows = _decode_rows(raw)
                    names = tuple(listed)
                    if self._names is None:
                        self._names = names
                    elif names != self._names:
                        self._mixed = True
                    at = position(record.offset() or 0, 0)
                    merge.push_all([(row.order, at + place, row.partition, (row, names))
                                    for place, row in enumerate(rows)])
                    continue
                first = raw[0] if raw else None
                if first in msgpack_array:
                    forwarded = decode(raw)  # type: ignore[arg-type]
                elif first == _JSON_OBJECT:
                    forwarded = _read_json_forward(raw, record)  # type: ignore[arg-type]
                else:
                    raise ValueError("neither MessagePack nor JSON")
            except (DecodeError, ValueError, TypeError) as exc:
                # Only the first stage writes here; anything else is a foreign record.
                routed.dlq.append((record.key(), raw, dead_letter_headers(
                    record, f"not a forwarded transaction: {exc}", self.instance)))
                continue
            self._mixed = True
            merge.push(forwarded.partition, forwarded.order, position(record.offset() or 0, 0),
                       forwarded)
        released = [(partition, merge.take()) for partition, merge in touched.items()]
        batches = [(partition, entries) for partition, entries in released if entries]
        if batches and not self._mixed:
            assert self._names is not None  # rows were pushed, all with these names
            routed = self._judge_rows(batches, self._names, routed)
        elif batches:
            named = {item[1] for _, entries in batches for _, _, _, item in entries
                     if type(item) is tuple}
            if len(named) == 1 and all(type(item) is tuple for _, entries in batches
                                       for _, _, _, item in entries):
                routed = self._judge_rows(batches, named.pop(), routed)
            else:  # forwards of older detectors among them: one a record
                routed = self._judge([(partition, [
                    (order, at, upstream, _as_forwarded(item))
                    for order, at, upstream, item in entries])
                    for partition, entries in batches], routed)
        self.counters.legit += len(routed.legit)
        self.counters.fraud += len(routed.fraud)
        self.counters.dlq += len(routed.dlq)
        return routed

    def _judge_rows(self, released: list[tuple[int, list[tuple[int, int, int, Any]]]],
                    names: tuple[str, ...], routed: Routed) -> Routed:
        """``_judge`` in columns, for rows whose figures ``names`` names: the payers'
        figures a matrix, the rules about targets, the model's matrix, the verdicts and
        their bytes made a column at a time (as ``Router`` routes with rules)."""
        threshold, model = self.rule.threshold, self.model
        keys: list[bytes | None] = []
        txs: list[bytes] = []
        ids: list[str] = []
        times: list[int] = []
        amounts: list[float] = []
        hits: dict[int, list[Hit]] = {}
        pieces: list[dict[str, np.ndarray]] = []
        for partition, entries in released:
            rows: list[ForwardRow] = [item[0] for _, _, _, item in entries]
            base = len(txs)
            count = len(rows)
            matrix = figures_matrix([row.figures for row in rows], len(names))
            payers = {name: matrix[:, at] for at, name in enumerate(names)}
            targets = [row.target for row in rows]
            sources = [row.source for row in rows]
            ts = [row.ts for row in rows]
            rules = self.state.get(partition)
            new_account = payers.get("new_account")
            new = np.zeros(count, np.bool_) if new_account is None else new_account != 0.0
            suspect = None if rules.fan_in is None else \
                rules.fan_in.mule_like_columns(payers, new)
            judged = rules.judge_columns(targets, sources, ts, new, suspect,
                                         [order for order, _, _, _ in entries],
                                         ts=np.array(ts, np.int64))
            pieces.append({**payers, **judged.figures})
            for at, row in enumerate(rows):
                if row.hits:
                    hits[base + at] = row.hits
            for at, found in judged.hits.items():
                hits.setdefault(base + at, []).extend(found)
            keys.extend([row.key for row in rows])
            txs.extend([row.tx for row in rows])
            ids.extend([row.id for row in rows])
            times.extend(ts)
            amounts.extend([row.amount for row in rows])
        count = len(txs)
        if not count:
            return routed
        figures = pieces[0] if len(pieces) == 1 else {
            name: np.concatenate([piece[name] for piece in pieces]) for name in pieces[0]}
        amounts_of = np.array(amounts, np.float64)
        fired = threshold_hits(hits, amounts_of, self.rule)
        scores, batch = score_columns(model, ids, times, amounts_of, figures, txs)
        if batch is not None:  # with how each was judged, for grading (NaN: no score)
            routed = routed._replace(features=batch._replace(verdicts=np.column_stack((
                fired.astype(float),
                np.full(count, np.nan) if scores is None else np.array(scores, float)))))
        fraud, said, by = decide_columns(model is not None, hits, fired, scores, self.cutoff,
                                         self.veto, self.model_decides, self.model_alone)
        writer = VerdictWriter(threshold, self.instance,
                               None if model is None else (self.cutoff, self.veto))
        values = writer.records(txs, fraud, hits, scores, figures, said, by)
        pairs = list(zip(keys, values, strict=True))
        fraud_of = fraud.tolist()
        routed.fraud.extend(compress(pairs, fraud_of))
        routed.legit.extend(compress(pairs, map(not_, fraud_of)))
        return routed

    def _judge(self, released: list[tuple[int, list[tuple[int, int, int, Forwarded]]]],
               routed: Routed) -> Routed:
        """The rules about targets, the threshold and the model, for records in the
        order the watermark released them: ``(order, offset, upstream partition,
        forward)`` by repartition partition; a record at a time."""
        threshold, model = self.rule.threshold, self.model
        threshold_hit = Hit(self.rule.name, self.rule.reason)
        rows = FeatureRows()
        judged: list[tuple[bytes | None, bytes, dict[str, float], list[Hit]]] = []
        fired: list[bool] = []  # with a model: whether a rule fired on each scored one
        for partition, entries in released:
            if not entries:
                continue
            # The rules about targets take the partition's records as one batch.
            forwards = [forwarded for _, _, _, forwarded in entries]
            self.state.get(partition).evaluate_batch(
                [forwarded.target for forwarded in forwards],
                [forwarded.source for forwarded in forwards],
                [forwarded.ts for forwarded in forwards],
                [forwarded.hits for forwarded in forwards],
                [forwarded.figures for forwarded in forwards],
                [order for order, _, _, _ in entries])
            for forwarded in forwards:
                hits, features = forwarded.hits, forwarded.figures
                if forwarded.amount >= threshold:
                    hits.insert(0, threshold_hit)
                tx = forwarded.tx
                if model is not None:
                    # The search dataset_features starts with, first: most records fail it.
                    rows.add(forwarded.id, forwarded.ts, forwarded.amount, features,
                             dataset_features(tx) if b'"V1"' in tx else None)
                    fired.append(bool(hits))  # for grading, once labels come
                judged.append((forwarded.key, tx, features, hits))
        scores, batch = score_batch(model, rows, len(judged))
        cutoff, veto = self.cutoff, self.veto
        decides = self.model_decides
        # Without its lone alarms, no score reaches the cutoff the model decides by.
        deciding_cutoff = cutoff if self.model_alone else math.inf
        writer = VerdictWriter(threshold, self.instance,
                               None if model is None else (cutoff, veto))
        write = writer.record
        # Who decides when no score counts (none yet, or the model not trusted):
        # the rules, which is what decider and decide say then, without the calls.
        by_rules = None if model is None else ("rules", decides)
        legit, fraud_out = routed.legit.append, routed.fraud.append
        for (key, tx, features, hits), score in zip(judged, scores, strict=True):
            if score is None or not decides:
                said, fraud = by_rules, bool(hits)
            else:
                said = (decider(bool(hits), score, deciding_cutoff, veto, decides), decides)
                fraud, hits = decide(hits, score, deciding_cutoff, veto)
            (fraud_out if fraud else legit)((key, write(tx, hits, features, score, fraud,
                                                        said)))
        if batch is not None:  # None scores (no model trained yet) become NaN
            routed = routed._replace(features=batch._replace(verdicts=np.column_stack(
                (np.array(fired, dtype=float), np.array(scores, dtype=float)))))
        return routed

    def waiting(self) -> int:
        """Records read that wait for the watermark, over every owned partition."""
        return sum(len(merge) for merge in self.state.clocks.values())


def _as_forwarded(item: Waiting) -> Forwarded:
    """A waiting record as a ``Forwarded``, its figures by name."""
    if type(item) is not tuple:
        return item  # type: ignore[return-value]
    row, names = item
    return Forwarded(row.tx, row.id, row.source, row.target, row.amount, row.ts, row.hits,
                     dict(zip(names, row_figures(row.figures), strict=True)), row.partition,
                     row.order, row.key)


def _read_json_forward(raw: bytes, record: Record) -> Forwarded:
    """A forward of a detector before ``Forwarded``, as the forward it stands for: its
    key from the header, and its ``ts`` as its order when it has none."""
    old = _decode_json_forwarded(raw)
    return Forwarded(bytes(old.tx), old.id, old.source, old.target, old.amount, old.ts,
                     old.hits, old.figures, old.partition,
                     old.ts if old.order is None else old.order, _original_key(record))


def _original_key(record: Record) -> bytes | None:
    for name, value in record.headers() or ():
        if name == KEY_HEADER:
            return value
    return None
