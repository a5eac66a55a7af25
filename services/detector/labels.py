"""The label join: pairs the features a transaction was scored on with its label. Pure.

Labels come on their own topic (``labels.transactions``, value ``{"id", "fraud",
"scenario", ...}``), in their own partitions and at their own pace, so one may arrive
before the detector has seen its transaction or long after. Each side waits for the
other, by transaction id, in a bounded store: at most ``max_pending`` entries a side,
none older than ``max_age_ms`` of event time behind the newest time seen. What leaves
unpaired is counted, never silently lost: ``unlabelled`` features (normal for traffic
without ground truth), ``unmatched`` labels, and ``bad`` labels that could not be read.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from typing import Any, NamedTuple

import msgspec
import numpy as np

from services.detector.features import WIDTH, BatchFeatures


class Label(msgspec.Struct):
    """The members of a label the join reads."""

    id: str
    fraud: bool
    ts: int | msgspec.UnsetType = msgspec.UNSET


_decode_label = msgspec.json.Decoder(Label).decode


class Examples(NamedTuple):
    """Labelled rows for the model to learn from (label 1: fraud) and, for rows that
    came with their verdicts, whether a rule fired and the model's score (NaN: none)."""

    matrix: np.ndarray
    labels: np.ndarray
    hits: np.ndarray | None = None
    scores: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.labels)


def _examples(rows: list[tuple[float, ...]], labels: list[int]) -> Examples:
    matrix = np.asarray(rows, dtype=float) if rows else np.zeros((0, WIDTH))
    labelled = np.asarray(labels, dtype=np.int8)
    if matrix.shape[1] == WIDTH:
        return Examples(matrix, labelled)
    # Rows that waited with their verdicts (``BatchFeatures.verdicts``) in two more columns.
    return Examples(matrix[:, :WIDTH], labelled, matrix[:, WIDTH] > 0, matrix[:, WIDTH + 1])


class LabelJoin:
    """Features and labels waiting for each other by id. See the module."""

    def __init__(self, max_pending: int = 200_000, max_age_ms: int = 30 * 60_000) -> None:
        if max_pending < 1 or max_age_ms < 0:
            raise ValueError(f"invalid label join bounds: {max_pending} entries, "
                             f"{max_age_ms} ms")
        self.max_pending = max_pending
        self.max_age_ms = max_age_ms
        self.newest = -(2**63)  # the newest event time seen on either side
        self.joined = 0
        self.unlabelled = 0  # features dropped before their label came
        self.unmatched = 0  # labels dropped before their transaction's features came
        self.bad = 0  # labels that could not be read
        # id -> (event time, row) and id -> (event time, fraud), oldest first.
        # (An OrderedDict drops its oldest entry in constant time; a dict's front fills
        # with holes that each later look past.)
        self._features: OrderedDict[str, tuple[int, tuple[float, ...]]] = OrderedDict()
        self._labels: OrderedDict[str, tuple[int, int]] = OrderedDict()

    @property
    def waiting(self) -> tuple[int, int]:
        """``(features, labels)`` waiting for their other half."""
        return len(self._features), len(self._labels)

    def counters(self) -> dict[str, int]:
        return {"joined": self.joined, "unlabelled": self.unlabelled,
                "unmatched": self.unmatched, "bad": self.bad}

    def remember(self, batch: BatchFeatures) -> Examples:
        """Keep a scored batch's rows until their labels come; the examples whose
        labels were already waiting."""
        rows, labels = [], []
        waiting, features = self._labels, self._features
        # Rows as tuples of floats: Python's collector stops tracing those once it has
        # seen them, where a list waiting here a batch or two would be promoted to its
        # oldest generation and bring the next full collection nearer.
        matrix = batch.matrix if batch.verdicts is None else \
            np.hstack((batch.matrix, batch.verdicts))
        rows_in = map(tuple, matrix.tolist())
        for tx_id, ts, row in zip(batch.ids, batch.ts, rows_in, strict=True):
            label = waiting.pop(tx_id, None)
            if label is None:
                features[tx_id] = (ts, row)
            else:
                rows.append(row)
                labels.append(label[1])
        if batch.ts:
            self._advance(max(batch.ts))
        self.joined += len(labels)
        return _examples(rows, labels)

    def labels(self, values: Iterable[bytes | None]) -> Examples:
        """Read labels (the topic's record values); the examples whose features were
        already waiting. The others wait for their transaction."""
        rows, labels = [], []
        waiting, pending = self._features, self._labels
        newest = self.newest
        for value in values:
            try:
                label = _decode_label(value)  # type: ignore[arg-type]
            except (msgspec.DecodeError, ValueError, TypeError):  # TypeError: a null value
                self.bad += 1
                continue
            fraud = 1 if label.fraud else 0
            found = waiting.pop(label.id, None)
            if found is None:
                ts = label.ts if label.ts is not msgspec.UNSET else max(newest, 0)
                pending[label.id] = (ts, fraud)
                newest = max(newest, ts)
            else:
                rows.append(found[1])
                labels.append(fraud)
        self._advance(newest)
        self.joined += len(labels)
        return _examples(rows, labels)

    def _advance(self, ts: int) -> None:
        """Move event time on to ``ts`` and drop what is too old or too many."""
        self.newest = max(self.newest, ts)
        self.unlabelled += _trim(self._features, self.max_pending,
                                 self.newest - self.max_age_ms)
        self.unmatched += _trim(self._labels, self.max_pending, self.newest - self.max_age_ms)


def _trim(store: OrderedDict[str, tuple[int, Any]], most: int, oldest: int) -> int:
    """Drop entries, first in first out, beyond ``most`` or older than ``oldest``; how
    many. Entries arrive in about event-time order, so the oldest are at the front; one
    out of order waits until those before it leave, which the count bound caps."""
    dropped = 0
    while store:
        ts = store[next(iter(store))][0]
        if len(store) <= most and ts >= oldest:
            break
        store.popitem(last=False)
        dropped += 1
    return dropped
