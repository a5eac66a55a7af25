"""The detector's core: records in, routed records out. Pure (no Kafka client).

Each consumed record becomes exactly one output: to ``legit`` or ``fraud`` with the
transaction and a ``detection`` object saying why, or to ``dlq`` with its original
bytes and the reason in headers. Nothing raises on data.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import compress, repeat
from operator import not_
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, cast

import numpy as np
import orjson
from msgspec import UNSET, DecodeError

from services.detector.features import (
    BatchFeatures,
    FeatureRows,
    columns_matrix,
    dataset_features,
)
from services.detector.rules import AmountThreshold, Hit, StatefulRules
from services.transaction import (
    MAX_BYTES,
    Transaction,
    decode_schema,
    extend,
    too_large,
    why_refused,
)

if TYPE_CHECKING:  # the model imports scikit-learn, which the threshold path never needs
    from services.detector.model import OnlineModel

LEGIT, FRAUD, DLQ = "legit", "fraud", "dlq"
MODEL = "model"  # the name of the model's hit in a verdict
# The model's score at or above which a transaction is fraud on its own, and under
# which a rule's hit alone does not make it fraud; chosen with bench/quality.py.
CUTOFF = 0.2
VETO = 0.05
Headers = list[tuple[str, str | bytes | None]]  # as Producer.produce takes them
# Who decided a verdict with a model (``decider``), and whether the model's verdict
# counted: ``DECIDERS[BY_RULES]`` and so on.
DECIDERS = (("rules", True), ("model", True), ("model_veto", True))
BY_RULES, BY_MODEL, BY_VETO = 0, 1, 2


class Record(Protocol):
    """What the router needs of a consumed record (a confluent-kafka Message fits)."""

    def key(self) -> bytes | None: ...
    def value(self) -> bytes | None: ...
    def topic(self) -> str | None: ...
    def partition(self) -> int | None: ...
    def offset(self) -> int | None: ...
    def timestamp(self) -> tuple[int, int]: ...
    # A consumed record's headers are a list of (str, bytes); confluent-kafka's stubs
    # also allow the dict and str values ``produce`` takes, so a Message fits only this.
    def headers(self) -> Any: ...


@dataclass
class Counters:
    legit: int = 0
    fraud: int = 0
    dlq: int = 0

    def as_dict(self) -> dict[str, int]:
        return {"legit": self.legit, "fraud": self.fraud, "dlq": self.dlq}


class Routed(NamedTuple):
    """A batch's outputs: ``(key, value)`` for legit and fraud, and ``(key, value,
    headers)`` for dead letters. With a model, also the features the batch was scored
    on, for the label join (``LabelJoin.remember``)."""

    legit: list[tuple[bytes | None, bytes]]
    fraud: list[tuple[bytes | None, bytes]]
    dlq: list[tuple[bytes | None, bytes | None, Headers]]
    features: BatchFeatures | None = None


@dataclass
class Router:
    """Routes by the amount threshold and, when given, the stateful rules and a model.

    With the threshold alone there are only two verdicts, built once per threshold and
    appended to each record's bytes; with rules, each verdict names the rules that fired
    and the figures they judged by (``features``); with a model too, its ``score``
    (null until a first model is trained), a ``model`` hit at or above ``cutoff``, and
    the verdict from ``decide``. The model decides here from its first version, as
    ``bench/quality.py`` measures a warmed-up one; the service's second stage lets it
    decide only once it beats the rules (``trust``).
    """

    instance: str
    threshold: float = 900.0
    counters: Counters = field(default_factory=Counters)
    # Rules beyond the threshold; None keeps the stateless fast path.
    rules: StatefulRules | None = None
    # The online model, which scores from the rules' figures (so it needs rules); a
    # score at or above ``cutoff`` makes the verdict fraud, one under ``veto`` clears
    # a rule's hit (``decide``).
    model: OnlineModel | None = None
    cutoff: float = CUTOFF
    veto: float = VETO

    def __post_init__(self) -> None:
        if self.model is not None and self.rules is None:
            raise ValueError("a model scores from the rules' figures: it needs rules")
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
        taken = records if isinstance(records, list) else list(records)
        raws = cast(list[bytes], [record.value() for record in taken])  # None fails the decode
        oversize = _oversize(raws)
        for record, raw in zip(taken, raws, strict=True):
            try:
                if oversize and raw is not None and len(raw) > MAX_BYTES:
                    raise ValueError  # its verdict would be too large to send
                tx = schema_decode(raw)
            except (DecodeError, ValueError, TypeError):  # TypeError: a null value
                dlq_out((record.key(), raw, self.dead_letter_headers(
                    record, too_large(raw) or why_refused(raw))))
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
        """``route`` with every rule on: each verdict is built for its own transaction.

        The rules judge the batch at once and give their figures in columns
        (``StatefulRules.judge_columns``); with a model, they make its matrix, and the
        batch is scored in one call. The verdicts follow, decided and written a column
        at a time: no object a record beyond the decoded transaction.
        """
        routed = Routed([], [], [])
        taken, raws, txs = self._decode(records, routed)
        # Unset for a bare record, until the lines below set them.
        times: list[Any] = [tx.ts for tx in txs]
        ids: list[Any] = [tx.id for tx in txs]
        # A bare tutorial record (a count compares by identity first: a pass in C).
        bare = bool(times.count(UNSET) or ids.count(UNSET))
        if bare:  # its time is when it was produced, its id where it came from
            times = [max(0, record.timestamp()[1]) if ts is UNSET else ts
                     for ts, record in zip(times, taken, strict=True)]
            ids = [f"{record.topic()}-{record.partition()}-{record.offset()}"
                   if tx_id is UNSET else tx_id for tx_id, record in zip(ids, taken, strict=True)]
        amounts = [tx.amount for tx in txs]
        amounts_of = np.array(amounts, np.float64)
        judged = rules.judge_columns([tx.source for tx in txs], [tx.target for tx in txs],
                                     amounts, times, amounts_of=amounts_of)
        hits = judged.hits
        fired = threshold_hits(hits, amounts_of, self.rule)
        scores, batch = score_columns(self.model, ids, times, amounts_of, judged.figures, raws)
        routed = routed._replace(features=batch)
        # Here the model decides from its first version (see the class).
        fraud, said, by = decide_columns(self.model is not None, hits, fired, scores,
                                         self.cutoff, self.veto)
        writer = VerdictWriter(self.threshold, self.instance,
                               None if self.model is None else (self.cutoff, self.veto))
        values = writer.records(raws, fraud, hits, scores, judged.figures, said, by)
        for i in irregular(txs, raws, bare):
            # A bare record, or one with a detection already: ``extend`` writes it.
            tx, record = txs[i], taken[i]
            detection = writer.detection(
                hits.get(i, []), {name: column[i].item() for name, column in
                                  judged.figures.items()},
                None if scores is None else scores[i], bool(fraud[i]),
                None if said is None or by is None else said[by[i]])
            values[i] = extend(raws[i], tx, identity_fields(tx, record) + b',"detection":'
                               + detection)
        pairs = list(zip([record.key() for record in taken], values, strict=True))
        fraud_of = fraud.tolist()
        routed.fraud.extend(compress(pairs, fraud_of))
        routed.legit.extend(compress(pairs, map(not_, fraud_of)))
        return routed

    def _decode(self, records: Iterable[Record], routed: Routed
                ) -> tuple[list[Record], list[bytes], list[Transaction]]:
        """The records that hold a transaction, their bytes and it, in order; the
        others go to the dead letters. Every record at once first (a loop in C), one by
        one only for a batch with one that is not a transaction."""
        taken = records if isinstance(records, list) else list(records)
        raws = cast(list[bytes], [record.value() for record in taken])  # None: refused
        if not _oversize(raws):
            try:
                return taken, raws, list(map(decode_schema, raws))
            except (DecodeError, ValueError, TypeError):  # TypeError: a null value
                pass
        kept: list[Record] = []
        kept_raws: list[bytes] = []
        txs: list[Transaction] = []
        for record, raw in zip(taken, raws, strict=True):
            try:
                if raw is not None and len(raw) > MAX_BYTES:
                    raise ValueError  # its verdict would be too large to send
                tx = decode_schema(raw)
            except (DecodeError, ValueError, TypeError):
                routed.dlq.append((record.key(), raw, self.dead_letter_headers(
                    record, too_large(raw) or why_refused(raw))))
                continue
            kept.append(record)
            kept_raws.append(raw)
            txs.append(tx)
        return kept, kept_raws, txs

    def dead_letter_headers(self, record: Record, reason: str) -> Headers:
        return dead_letter_headers(record, reason, self.instance)


def threshold_hits(hits: dict[int, list[Hit]], amounts: np.ndarray,
                   rule: AmountThreshold) -> np.ndarray:
    """The threshold's hit, first, in the hits (by place) of the amounts at or over it;
    then whether any rule fired on each record."""
    over = np.flatnonzero(amounts >= rule.threshold).tolist()
    if over:
        hit = Hit(rule.name, rule.reason)
        for i in over:
            hits[i] = [hit, *hits.get(i, ())]
    fired = np.zeros(len(amounts), np.bool_)
    fired[list(hits)] = True
    return fired


def score_columns(model: OnlineModel | None, ids: list[str], times: list[int],
                  amounts: np.ndarray, figures: Mapping[str, np.ndarray], raws: list[bytes]
                  ) -> tuple[list[float] | None, BatchFeatures | None]:
    """The model's rounded score of every row, from the rules' figures in columns (None
    while there is no model or none trained yet), and the rows, for the label join."""
    if model is None or not ids:
        return None, None
    dataset: list[tuple[int, list[float]]] = []
    if b'"V1"' in b"\n".join(raws):  # one search a batch: most hold none
        for i, raw in enumerate(raws):
            values = dataset_features(raw)
            if values is not None:
                dataset.append((i, values))
    batch = BatchFeatures(ids, times, columns_matrix(amounts, figures, dataset))
    scored = model.score(batch.matrix)
    return None if scored is None else rounded_scores(scored), batch


def decide_columns(with_model: bool, hits: dict[int, list[Hit]], fired: np.ndarray,
                   scores: list[float] | None, cutoff: float, veto: float,
                   decides: bool = True, alone: bool = True
                   ) -> tuple[np.ndarray, Sequence[tuple[str, bool]] | None, np.ndarray | None]:
    """``decide`` and ``decider`` for a batch in columns: whether each is fraud, who may
    have decided (``said``) and who did (an index into it; both None without a model).
    ``decides``: whether the score counts at all; ``alone``: whether it may raise an
    alarm no rule raised (``ModelTrust``). The model's hit joins the hits of the records
    it makes fraud on its own."""
    if not with_model:
        return fired, None, None
    if scores is None or not decides:  # the rules decide
        return fired, (("rules", decides),), np.zeros(len(fired), np.intp)
    # Without its lone alarms, no score reaches the cutoff the model decides by.
    cutoff = cutoff if alone else math.inf
    score = np.array(scores, np.float64)
    lone = score >= cutoff
    fraud = lone | (fired & (score >= veto))
    by = np.where(lone, BY_MODEL, np.where(fired & (score < veto), BY_VETO, BY_RULES))
    for i in np.flatnonzero(lone).tolist():
        hits[i] = [*hits.get(i, ()), Hit(MODEL, f"score {scores[i]:.2f} >= {cutoff:g}")]
    return fraud, DECIDERS, by


def dead_letter_headers(record: Record, reason: str, instance: str) -> Headers:
    """Why a record is a dead letter and where it came from, as headers."""
    return [
        ("dlq.reason", reason.encode()),
        ("dlq.topic", (record.topic() or "").encode()),
        ("dlq.partition", str(record.partition()).encode()),
        ("dlq.offset", str(record.offset()).encode()),
        ("dlq.instance", instance.encode()),
    ]


def score_batch(model: OnlineModel | None, rows: FeatureRows,
                count: int) -> tuple[list[float | None], BatchFeatures | None]:
    """Every row's score in one call (None each while there is no model or none
    trained yet), and the rows, for the label join."""
    if model is None or not count:
        return [None] * count, None
    batch = rows.batch()
    scored = model.score(batch.matrix)
    if scored is None:
        return [None] * count, batch
    return cast("list[float | None]", rounded_scores(scored)), batch


def rounded_scores(scores: np.ndarray) -> list[float]:
    """``round(score, 4)`` of every score, as Python rounds (the verdicts' bytes), in
    a few vectorised steps instead of a call a score (0.27 µs each).

    ``rint(score * 1e4) / 1e4`` is what ``round`` gives whenever the product is not
    within its own rounding error of a half: the integer is then the one ``round``
    picks, and the division, exact operands correctly rounded, is the double nearest
    to it over 10,000, as ``round`` returns. The few near a half go through ``round``.
    """
    with np.errstate(all="ignore"):  # what is not a number goes through ``round``
        scaled = scores * 1e4
        out = np.rint(scaled) / 1e4
        # Near a half, or not a probability (where the product's error grows).
        near = (np.abs(scaled - np.floor(scaled) - 0.5) < 1e-6) | ~(np.abs(scores) <= 1.0)
    if near.any():
        out[near] = [round(score, 4) for score in scores[near].tolist()]
    scored: list[float] = out.tolist()
    return scored


def decide(hits: list[Hit], score: float | None, cutoff: float = CUTOFF,
           veto: float = VETO) -> tuple[bool, list[Hit]]:
    """The verdict from the rules' hits and the model's score: ``(fraud, hits)``, the
    hits with the model's own when its score makes the case.

    - no score (no model, or none trained yet): fraud when any rule fired;
    - a score at or above ``cutoff``: fraud, whatever the rules say;
    - below: fraud when a rule fired, unless the score is under ``veto``. A rule sees
      one figure against a fixed bar; the model sees them all against what labelled
      traffic taught it, so a large payment from an account that always pays large
      ones, or a busy account's busy minute, is let through when the model is sure.
      The hits stay in the verdict, so it still says what looked odd.
    """
    if score is None:
        return bool(hits), hits
    if score >= cutoff:
        return True, [*hits, Hit(MODEL, f"score {score:.2f} >= {cutoff:g}")]
    return bool(hits) and score >= veto, hits


def decider(fired: bool, score: float | None, cutoff: float, veto: float,
            decides: bool = True) -> str:
    """Who made a verdict (``decide``): ``"model"`` when its score was at or above the
    cutoff, ``"model_veto"`` when it let a rule's hit through, else ``"rules"``."""
    if score is None or not decides:
        return "rules"
    if score >= cutoff:
        return "model"
    return "model_veto" if fired and score < veto else "rules"


def verdict(hits: list[Hit], features: dict[str, float], score: float | None,
            threshold: float, instance: str, fraud: bool | None = None,
            model: tuple[float, float, str, bool] | None = None) -> bytes:
    """The ``detection`` object: which rules fired and why, and whether it is fraud
    (by default: when any rule fired; ``decide`` says otherwise with a model). With a
    model, ``(cutoff, veto, decided_by, model_trusted)`` in force for this verdict.

    The reference for its bytes: the loops that write one a record use
    ``VerdictWriter``, which writes the same without building a dict."""
    fraud = bool(hits) if fraud is None else fraud
    detection: dict[str, object] = {
        "fraud": fraud, "rules": [{"rule": rule, "reason": reason} for rule, reason in hits],
        "score": score, "features": features, "threshold": threshold, "instance": instance}
    if model is not None:
        detection.update(zip(("cutoff", "veto", "decided_by", "model_trusted"), model,
                             strict=True))
    return orjson.dumps(detection)


class VerdictWriter:
    """Writes what ``verdict`` does, byte for byte, without a dict a record: the members
    that hold for a batch (threshold, instance, and with a model the cutoff and veto)
    are made once. ``detection`` writes one, from ``heads``, ``rules``, ``score``,
    ``features`` and ``tail``."""

    heads = (b'{"fraud":false,"rules":', b'{"fraud":true,"rules":')  # by ``fraud``

    def __init__(self, threshold: float, instance: str,
                 model: tuple[float, float] | None = None) -> None:
        common = (b',"threshold":' + orjson.dumps(threshold)
                  + b',"instance":' + orjson.dumps(instance))
        self._model = None if model is None else (
            common + b',"cutoff":' + orjson.dumps(model[0])
            + b',"veto":' + orjson.dumps(model[1]))
        # What follows the features, by (decided_by, model_trusted); None: no model.
        self._tails: dict[tuple[str, bool] | None, bytes] = {None: common + b"}"}
        self._openings = tuple(b',"detection":' + head for head in self.heads)

    @staticmethod
    def rules(hits: list[Hit]) -> bytes:
        if not hits:
            return b"[]"
        dumps = orjson.dumps
        return b"[" + b",".join([b'{"rule":' + dumps(rule) + b',"reason":' + dumps(reason)
                                 + b"}" for rule, reason in hits]) + b"]"

    @staticmethod
    def score(score: float | None) -> bytes:
        """The score, and the name of the features that follow it."""
        if score is None:
            return b',"score":null,"features":'
        return b',"score":' + orjson.dumps(score) + b',"features":'

    features = staticmethod(orjson.dumps)

    def tail(self, said: tuple[str, bool] | None) -> bytes:
        """The members after the features, to the object's end; ``said`` is
        ``(decided_by, model_trusted)`` with a model."""
        tail = self._tails.get(said)
        if tail is None:
            if self._model is None or said is None:
                raise ValueError("who decided is said only with a model")
            decided_by, trusted = said
            tail = self._tails[said] = (
                self._model + b',"decided_by":' + orjson.dumps(decided_by)
                + b',"model_trusted":' + orjson.dumps(trusted) + b"}")
        return tail

    def detection(self, hits: list[Hit], features: dict[str, float], score: float | None,
                  fraud: bool, said: tuple[str, bool] | None = None) -> bytes:
        """The ``detection`` object, as ``verdict`` writes it."""
        return b"".join((self.heads[fraud], self.rules(hits), self.score(score),
                         orjson.dumps(features), self.tail(said)))

    def record(self, tx: bytes, hits: list[Hit], features: dict[str, float],
               score: float | None, fraud: bool,
               said: tuple[str, bool] | None = None) -> bytes:
        """``tx``, a JSON object, with ``detection`` as its last member: what joining
        ``tx[:-1]``, ``,"detection":``, ``detection(...)`` and ``}`` makes, in one join,
        the common members written without a call."""
        tail = self._tails.get(said)
        return b"".join((
            tx[:-1], self._openings[fraud], self.rules(hits) if hits else b"[]",
            b',"score":null,"features":' if score is None else self.score(score),
            orjson.dumps(features), self.tail(said) if tail is None else tail, b"}"))

    def records(self, txs: list[bytes], fraud: np.ndarray, hits: Mapping[int, list[Hit]],
                scores: list[float] | None, figures: Mapping[str, np.ndarray],
                said: Sequence[tuple[str, bool]] | None = None,
                by: np.ndarray | None = None) -> list[bytes]:
        """``record`` of every transaction of a batch, from its verdicts in columns:
        whether each is fraud, the hits of those with any (by place), the scores (None:
        no score for any), the figures (one array a figure) and, with a model, who
        decided each (``said[by[i]]``). Each column's values are written by one call
        for the batch, and the records by one kernel (``verdict_bytes``)."""
        # numba's, which the classic path (``route`` with no rule) never loads
        from services.detector import verdict_bytes

        count = len(txs)
        if not count:
            return []
        score_at = b',"score":' if scores is not None else b',"score":null'
        # The pieces of the records: a head by fraud or not, one for each record with
        # hits; a prefix a column; a tail by who decided.
        parts = [self._openings[False] + b"[]" + score_at,
                 self._openings[True] + b"[]" + score_at]
        heads = fraud.astype(np.int64)
        if hits:
            # The same hits come again and again in a batch (the threshold's, a burst's
            # records): each head is written once.
            written: dict[tuple[bool, tuple[Hit, ...]], int] = {}
            fraud_of = fraud.tolist()
            for i, found in hits.items():
                said_of = (fraud_of[i], tuple(found))
                piece = written.get(said_of)
                if piece is None:
                    piece = written[said_of] = len(parts)
                    parts.append(self._openings[said_of[0]] + self.rules(found) + score_at)
                heads[i] = piece
        prefixes: list[int] = []
        columns: list[bytes] = []
        dumps, numpy = orjson.dumps, orjson.OPT_SERIALIZE_NUMPY
        if scores is not None:
            prefixes.append(len(parts))
            parts.append(b"")
            columns.append(dumps(scores, option=numpy))
        opening = b',"features":{'
        for name, column in figures.items():
            prefixes.append(len(parts))
            parts.append(opening + dumps(name) + b":")
            columns.append(dumps(np.ascontiguousarray(column), option=numpy))
            opening = b","
        ending = b"}" if figures else b',"features":{}'
        if said is None or by is None:
            tails = np.full(count, len(parts), np.int64)
            parts.append(ending + self.tail(None) + b"}")
        else:
            tails = np.asarray(by, np.int64) + len(parts)
            parts.extend(ending + self.tail(who) + b"}" for who in said)
        return verdict_bytes.joined(txs, parts, heads, prefixes, tails, columns)


def _oversize(raws: list[bytes]) -> bool:
    """Whether a batch holds a record over ``transaction.MAX_BYTES`` (a pass in C)."""
    return max(map(len, filter(None, raws)), default=0) > MAX_BYTES


def identity_fields(tx: Transaction, record: Record) -> bytes:
    """The ``id``/``ts`` members a bare tutorial record lacks, taken from its origin."""
    extra = b""
    if tx.id is UNSET:
        extra += b',"id":' + orjson.dumps(
            f"{record.topic()}-{record.partition()}-{record.offset()}")
    if tx.ts is UNSET:
        extra += b',"ts":' + str(max(0, record.timestamp()[1])).encode()
    return extra


def irregular(txs: list[Transaction], raws: list[bytes], bare: bool) -> list[int]:
    """The records ``VerdictWriter.records`` cannot write by appending to their bytes:
    a bare tutorial record (``bare``: whether there is one), one with a detection
    already, or one whose bytes do not end with its object's "}"."""
    if not bare and [tx.detection for tx in txs].count(UNSET) == len(txs) and \
            all(map(bytes.endswith, raws, repeat(b"}"))):
        return []
    return [i for i, (tx, raw) in enumerate(zip(txs, raws, strict=True))
            if tx.id is UNSET or tx.ts is UNSET or tx.detection is not UNSET
            or raw[-1] != 125]  # 125 is "}"
