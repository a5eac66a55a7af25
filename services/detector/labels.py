"""The label join: pairs the features a transaction was scored on with its label. Pure.

Labels come on their own topic (``labels.transactions``, value ``{"id", "fraud",
"scenario", ...}``), in their own partitions and at their own pace, so one may arrive
before the detector has seen its transaction or long after. Each side waits for the
other, by transaction id, in a bounded store: at most ``max_pending`` entries a side,
none older than ``max_age_ms`` of event time behind the newest time seen. What leaves
unpaired is counted, never silently lost: ``unlabelled`` features (normal for traffic
without ground truth), ``unmatched`` labels, and ``bad`` labels that could not be read.

It works a batch at a time: a side's entries are rows of numpy arrays in arrival
order, and a dict maps each id to its row. Looking ids up, taking and adding them
runs in C (``map`` over the dict's own methods), and the rows move as whole arrays:
no Python object per transaction, no Python step per transaction where a batch does.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from itertools import compress, repeat
from operator import attrgetter, is_, is_not
from typing import NamedTuple

import msgspec
import numpy as np

from services.detector.features import WIDTH, BatchFeatures


class Label(msgspec.Struct, gc=False):
    """The members of a label the join reads (no container: the collector need not
    track a thousand of them a batch)."""

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


VERDICTS = WIDTH + 2  # a row with how it was judged: whether a rule fired, the score


def _examples(rows: np.ndarray, labels: np.ndarray) -> Examples:
    """Examples from joined rows of ``VERDICTS`` columns; the verdicts' columns are
    NaN for rows scored without them, and left out when no row has them."""
    hits, scores = rows[:, WIDTH], rows[:, WIDTH + 1]
    if not len(rows) or np.isnan(hits).all():
        return Examples(rows[:, :WIDTH], labels)
    return Examples(rows[:, :WIDTH], labels, hits > 0, scores)


class _Waiting:
    """One side of the join: entries waiting by id, oldest first.

    Rows ``[start, end)`` of the arrays hold the entries in arrival order, with the
    holes that taken or dropped ones leave (``live`` false); ``_index`` maps each
    waiting id to its row. When the arrays are full, the waiting rows move to the
    front (and the arrays grow, while more than half of them wait).
    """

    def __init__(self, width: int, capacity: int = 4096) -> None:
        self.width = width
        self._index: dict[str, int] = {}
        self._ids: list[str | None] = [None] * capacity
        self.ts = np.zeros(capacity, dtype=np.int64)
        self.values = np.zeros((capacity, width))
        self.live = np.zeros(capacity, dtype=bool)
        self.start = self.end = 0  # rows before ``start`` are all holes

    def __len__(self) -> int:
        return len(self._index)

    def take(self, ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Take the entries of ``ids`` that wait: which ids had one (a mask over
        ``ids``), and their rows, in the order of ``ids``."""
        found = list(map(self._index.pop, ids, repeat(None)))
        mask = np.fromiter(map(is_not, found, repeat(None)), dtype=bool, count=len(ids))
        rows = np.fromiter(compress(found, mask), dtype=np.int64)
        self.live[rows] = False
        return mask, self.values[rows]

    def add(self, ids: Sequence[str], ts: np.ndarray, values: np.ndarray) -> None:
        """Entries to wait, newest last; an id that waits already takes its new
        values where it was (as a dict assignment keeps a key's place)."""
        if len(set(ids)) < len(ids) or not self._index.keys().isdisjoint(ids):
            self._add_each(ids, ts, values)
            return
        count = len(ids)
        self._room(count)
        end = self.end + count
        self.ts[self.end:end], self.values[self.end:end] = ts, values
        self.live[self.end:end] = True
        self._ids[self.end:end] = ids
        self._index.update(zip(ids, range(self.end, end), strict=True))
        self.end = end

    def _add_each(self, ids: Sequence[str], ts: np.ndarray, values: np.ndarray) -> None:
        """``add`` for the rare batch with an id twice, or one that waits already."""
        for i, ident in enumerate(ids):
            row = self._index.get(ident)
            if row is None:
                self._room(1)
                row = self.end
                self._index[ident], self._ids[row], self.live[row] = row, ident, True
                self.end += 1
            self.ts[row], self.values[row] = ts[i], values[i]

    def _room(self, count: int) -> None:
        """Room for ``count`` more rows at the end."""
        capacity = len(self.live)
        if self.end + count <= capacity:
            return
        keep = np.flatnonzero(self.live[self.start:self.end]) + self.start
        waiting = len(keep)
        if 2 * (waiting + count) > capacity:
            capacity = max(2 * capacity, 1 << (2 * (waiting + count) - 1).bit_length())
        ts, values, live = np.zeros(capacity, dtype=np.int64), \
            np.zeros((capacity, self.width)), np.zeros(capacity, dtype=bool)
        ts[:waiting], values[:waiting], live[:waiting] = self.ts[keep], self.values[keep], True
        ids = [self._ids[row] for row in keep.tolist()]
        self._ids = ids + [None] * (capacity - waiting)
        self._index = dict(zip(ids, range(waiting), strict=True))  # type: ignore[arg-type]
        self.ts, self.values, self.live = ts, values, live
        self.start, self.end = 0, waiting

    def trim(self, most: int, oldest: int) -> int:
        """Drop entries, first in first out, beyond ``most`` or older than ``oldest``;
        how many. Entries arrive in about event-time order, so the oldest are at the
        front; one out of order waits until those before it leave, which the count
        bound caps."""
        rows = np.flatnonzero(self.live[self.start:self.end]) + self.start
        excess = max(0, len(rows) - most)
        old = self.ts[rows[excess:]] < oldest
        dropped = excess + (len(old) if old.all() else int(np.argmin(old)))
        if dropped:
            gone = rows[:dropped]
            self.live[gone] = False
            deque(map(self._index.pop, [self._ids[row] for row in gone.tolist()]), 0)
        self.start = int(rows[dropped]) if dropped < len(rows) else self.end
        return dropped


_ids_of, _fraud_of, _ts_of = attrgetter("id"), attrgetter("fraud"), attrgetter("ts")


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
        # Scored rows with their verdicts' two columns, and labels (1: fraud).
        self._features = _Waiting(VERDICTS)
        self._labels = _Waiting(1)

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
        count = len(batch.ids)
        rows = np.full((count, VERDICTS), np.nan)
        rows[:, :WIDTH] = batch.matrix
        if batch.verdicts is not None:
            rows[:, WIDTH:] = batch.verdicts
        found, labels = self._labels.take(batch.ids)
        ts = np.asarray(batch.ts, dtype=np.int64)
        waits = ~found
        self._features.add(list(compress(batch.ids, waits)), ts[waits], rows[waits])
        if count:
            self._advance(int(ts.max()))
        self.joined += len(labels)
        return _examples(rows[found], labels[:, 0].astype(np.int8))

    def labels(self, values: Iterable[bytes | None]) -> Examples:
        """Read labels (the topic's record values); the examples whose features were
        already waiting. The others wait for their transaction."""
        read = self._read(values)
        ids = list(map(_ids_of, read))
        found, rows = self._features.take(ids)
        fraud = np.fromiter(map(_fraud_of, read), dtype=np.int8, count=len(read))
        waits = ~found
        if waits.any():
            # A label without a time takes the newest seen so far, as a label that
            # waits moves event time on: a running maximum over those that wait.
            stamps = list(map(_ts_of, compress(read, waits)))
            unset = np.fromiter(map(is_, stamps, repeat(msgspec.UNSET)), dtype=bool,
                                count=len(stamps))
            given = np.array([0 if ts is msgspec.UNSET else ts for ts in stamps]
                             if unset.any() else stamps, dtype=np.int64)
            before = np.maximum.accumulate(np.concatenate(([self.newest], given)))[:-1]
            ts = np.where(unset, np.maximum(before, 0), given)
            self._labels.add(list(compress(ids, waits)), ts, fraud[waits, None])
            self._advance(max(self.newest, int(ts.max())))
        else:
            self._advance(self.newest)
        self.joined += len(rows)
        return _examples(rows, fraud[found])

    def _read(self, values: Iterable[bytes | None]) -> list[Label]:
        """The labels that can be read, counting the others as bad."""
        values = list(values)
        try:
            return list(map(_decode_label, values))  # type: ignore[arg-type]
        except (msgspec.DecodeError, ValueError, TypeError):  # TypeError: a null value
            pass
        read = []
        for value in values:
            try:
                read.append(_decode_label(value))  # type: ignore[arg-type]
            except (msgspec.DecodeError, ValueError, TypeError):
                self.bad += 1
        return read

    def _advance(self, ts: int) -> None:
        """Move event time on to ``ts`` and drop what is too old or too many."""
        self.newest = max(self.newest, ts)
        oldest = self.newest - self.max_age_ms
        self.unlabelled += self._features.trim(self.max_pending, oldest)
        self.unmatched += self._labels.trim(self.max_pending, oldest)
