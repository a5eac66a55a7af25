"""The label join: pairs the features a transaction was scored on with its label. Pure.

Labels come on their own topic (``labels.transactions``, value ``{"id", "fraud",
"scenario", ...}``), in their own partitions and at their own pace, so one may arrive
before the detector has seen its transaction or long after. Each side waits for the
other, by transaction id, in a bounded store: at most ``max_pending`` entries a side,
none older than ``max_age_ms`` of event time behind the newest time seen. What leaves
unpaired is counted, never silently lost: ``unlabelled`` features (normal for traffic
without ground truth), ``unmatched`` labels, and ``bad`` labels that could not be read.

It works a batch at a time: a side keeps each batch's rows as they came, numpy
arrays in arrival order, and a dict maps each id to its entry. Looking ids up, taking
and adding them runs in C (``map`` over the dict's own methods), and the rows move as
whole arrays: no Python object per transaction, no Python step per transaction where
a batch does, and no copy of what waits while it waits.
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


class _Block:
    """One batch's entries of a side, as they came: the rows of ``values`` and ``ts``,
    their ids, and which still wait (``live``; ``alive`` of them, none before
    ``start``). Its entries are numbered ``base``, ``base + 1``, ... in the side."""

    __slots__ = ("alive", "base", "ids", "live", "start", "ts", "values")

    def __init__(self, base: int, ids: list[str], ts: np.ndarray, values: np.ndarray) -> None:
        self.base, self.ids, self.ts, self.values = base, ids, ts, values
        self.live = np.ones(len(ids), dtype=bool)
        self.alive = len(ids)
        self.start = 0


class _Waiting:
    """One side of the join: entries waiting by id, oldest first.

    Each batch that comes is kept as it is, a block of rows; ``_index`` maps each
    waiting id to its number, which says its block (by bisection over the blocks'
    first numbers) and its row there. Entries that leave make holes; a block leaves
    once it is all holes and at the front. Nothing is copied while entries come and
    go in order; only when the holes outweigh the waiting entries do those move
    into one block (taken out of order, as labels take them, they would otherwise
    hold their blocks' memory until these reach the front).
    """

    slack = 4096  # holes a side may hold beyond as many as its waiting entries

    def __init__(self, width: int) -> None:
        self.width = width
        self._index: dict[str, int] = {}
        self._blocks: deque[_Block] = deque()
        self._firsts: np.ndarray | None = None  # the blocks' first numbers, when known
        self._next = 0  # the number of the next entry
        self._held = 0  # rows the blocks hold, holes included

    def __len__(self) -> int:
        return len(self._index)

    def take(self, ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Take the entries of ``ids`` that wait: which ids had one (a mask over
        ``ids``), and their rows, in the order of ``ids``."""
        found = list(map(self._index.pop, ids, repeat(None)))
        mask = np.fromiter(map(is_not, found, repeat(None)), dtype=bool, count=len(ids))
        numbers = np.fromiter(compress(found, mask), dtype=np.int64)
        out = np.empty((len(numbers), self.width))
        if not len(numbers):
            return mask, out
        where = np.searchsorted(self._block_firsts(), numbers, side="right") - 1
        if where[0] == where[-1] and (where == where[0]).all():  # the common case
            self._take_rows(int(where[0]), numbers, out, slice(None))
        else:
            order = np.argsort(where, kind="stable")
            cuts = np.flatnonzero(np.diff(where[order])) + 1
            for group in np.split(order, cuts):
                self._take_rows(int(where[group[0]]), numbers[group], out, group)
        if self._held - len(self._index) > max(len(self._index), self.slack):
            self._compact()
        return mask, out

    def _take_rows(self, block_at: int, numbers: np.ndarray, out: np.ndarray,
                   at: slice | np.ndarray) -> None:
        block = self._blocks[block_at]
        rows = numbers - block.base
        out[at] = block.values[rows]
        block.live[rows] = False
        block.alive -= len(rows)

    def add(self, ids: list[str], ts: np.ndarray, values: np.ndarray) -> None:
        """Entries to wait, newest last (the arrays become the side's own); an id
        that waits already takes its new values where it was (as a dict assignment
        keeps a key's place)."""
        index = self._index
        if not ids:
            return
        if not index.keys().isdisjoint(ids):
            self._add_each(ids, ts, values)
            return
        before, first = len(index), self._next
        index.update(zip(ids, range(first, first + len(ids)), strict=True))
        if len(index) - before < len(ids):  # an id twice in the batch: undo, go slowly
            deque(map(index.pop, ids, repeat(None)), 0)
            self._add_each(ids, ts, values)
            return
        self._append(_Block(first, ids, ts, values))

    def _append(self, block: _Block) -> None:
        self._blocks.append(block)
        self._firsts = None
        self._next += len(block.ids)
        self._held += len(block.ids)

    def _add_each(self, ids: list[str], ts: np.ndarray, values: np.ndarray) -> None:
        """``add`` for the rare batch with an id twice, or one that waits already:
        those take their new values in place; the new ones come as a block, each
        where it first came, with the values it came with last."""
        index, placed = self._index, dict[str, int]()
        fresh: list[int] = []  # for each new id, the position of its values in ``ids``
        for i, ident in enumerate(ids):
            number = index.get(ident)
            if number is not None:
                block = self._blocks[int(np.searchsorted(
                    self._block_firsts(), number, side="right")) - 1]
                block.ts[number - block.base] = ts[i]
                block.values[number - block.base] = values[i]
            elif ident in placed:
                fresh[placed[ident]] = i
            else:
                placed[ident] = len(fresh)
                fresh.append(i)
        if fresh:
            new = list(placed)
            index.update(zip(new, range(self._next, self._next + len(new)), strict=True))
            self._append(_Block(self._next, new, ts[fresh], values[fresh]))

    def _block_firsts(self) -> np.ndarray:
        if self._firsts is None:
            self._firsts = np.fromiter((block.base for block in self._blocks), np.int64,
                                       len(self._blocks))
        return self._firsts

    def _compact(self) -> None:
        """The waiting entries, in their order, into one block of their own."""
        blocks = [(block, np.flatnonzero(block.live)) for block in self._blocks]
        ids = [block.ids[row] for block, rows in blocks for row in rows.tolist()]
        block = _Block(self._next, ids,
                       np.concatenate([block.ts[rows] for block, rows in blocks]),
                       np.concatenate([block.values[rows] for block, rows in blocks]))
        self._index.update(zip(ids, range(self._next, self._next + len(ids)), strict=True))
        self._blocks.clear()
        self._held = 0
        self._append(block)

    def trim(self, most: int, oldest: int) -> int:
        """Drop entries, first in first out, beyond ``most`` or older than ``oldest``;
        how many. Entries arrive in about event-time order, so the oldest are at the
        front; one out of order waits until those before it leave, which the count
        bound caps."""
        excess = max(0, len(self._index) - most)  # to drop, whatever their time
        dropped = 0
        blocks, pop = self._blocks, self._index.pop
        while blocks:
            block = blocks[0]
            if not block.alive:  # all taken: nothing to look at
                blocks.popleft()
                self._firsts = None
                self._held -= len(block.ids)
                continue
            rows = np.flatnonzero(block.live[block.start:]) + block.start
            count = min(excess, len(rows))
            excess -= count
            old = block.ts[rows[count:]] < oldest
            cut = count + (len(old) if old.all() else int(np.argmin(old)))
            if cut:
                gone = rows[:cut]
                block.live[gone] = False
                block.alive -= cut
                ids = block.ids
                deque(map(pop, [ids[row] for row in gone.tolist()]), 0)
                dropped += cut
            if cut < len(rows):
                block.start = int(rows[cut])
                break
            blocks.popleft()
            self._firsts = None
            self._held -= len(block.ids)
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
        rows = np.empty((count, VERDICTS))
        rows[:, :WIDTH] = batch.matrix
        rows[:, WIDTH:] = np.nan if batch.verdicts is None else batch.verdicts
        found, labels = self._labels.take(batch.ids)
        ts = np.array(batch.ts, dtype=np.int64)
        if len(labels):
            waits = ~found
            self._features.add(list(compress(batch.ids, waits)), ts[waits], rows[waits])
        else:  # the common case: no label came first, the rows wait as they are
            self._features.add(list(batch.ids), ts, rows)
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
