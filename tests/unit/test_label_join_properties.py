"""The label join against a model of it made of plain dicts: whatever the batches,
ids, times and bounds, the same examples in the same order, the same counters and the
same entries left waiting. Property-based (Hypothesis)."""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from services.detector.features import WIDTH, BatchFeatures
from services.detector.labels import LabelJoin

IDS = st.sampled_from([f"t{i}" for i in range(12)])  # few: ids meet again, and twice a batch


class DictJoin:
    """The join's promise, written as plainly as it reads: each side a dict in arrival
    order (a key that waits keeps its place and takes new values), trimmed from the
    front beyond the count bound, then while the oldest is too old."""

    def __init__(self, max_pending: int, max_age_ms: int) -> None:
        self.max_pending, self.max_age_ms = max_pending, max_age_ms
        self.newest = -(2**63)
        self.features: dict[str, tuple[int, list[float]]] = {}
        self.labels: dict[str, tuple[int, int]] = {}
        self.joined = self.unlabelled = self.unmatched = 0

    def remember(self, ids: list[str], ts: list[int],
                 rows: list[list[float]]) -> list[tuple[list[float], int]]:
        out = []
        for ident, stamp, row in zip(ids, ts, rows, strict=True):
            if ident in self.labels:
                out.append((row, self.labels.pop(ident)[1]))
            else:
                self.features[ident] = (stamp, row)
        if ids:
            self.advance(max(ts))
        self.joined += len(out)
        return out

    def take_labels(self, labels: list[tuple[str, bool, int | None]]
                    ) -> list[tuple[list[float], int]]:
        out, newest, waited = [], self.newest, False
        for ident, fraud, stamp in labels:
            if ident in self.features:
                out.append((self.features.pop(ident)[1], int(fraud)))
                continue
            # A label without a time takes the newest seen, as labels before it moved it.
            stamp = max(newest, 0) if stamp is None else stamp
            newest = max(newest, stamp)
            self.labels[ident] = (stamp, int(fraud))
            waited = True
        self.advance(newest if waited else self.newest)
        self.joined += len(out)
        return out

    def advance(self, ts: int) -> None:
        self.newest = max(self.newest, ts)
        oldest = self.newest - self.max_age_ms
        self.unlabelled += self.trim(self.features, oldest)
        self.unmatched += self.trim(self.labels, oldest)

    def trim(self, side: dict[str, Any], oldest: int) -> int:
        dropped = 0
        for ident in list(side):
            if len(side) > self.max_pending or side[ident][0] < oldest:
                del side[ident]
                dropped += 1
            else:
                break
        return dropped


def label_bytes(ident: str, fraud: bool, ts: int | None) -> bytes:
    stamp = "" if ts is None else f',"ts":{ts}'
    return f'{{"id":"{ident}","fraud":{"true" if fraud else "false"}{stamp}}}'.encode()


STEPS = st.lists(st.one_of(
    st.tuples(st.just("scored"), st.lists(st.tuples(IDS, st.integers(0, 60)), max_size=8)),
    st.tuples(st.just("labels"), st.lists(st.tuples(
        IDS, st.booleans(), st.none() | st.integers(0, 60)), max_size=8)),
), max_size=30)


@settings(max_examples=400, deadline=None)
@given(STEPS, st.integers(1, 6), st.integers(0, 40), st.booleans())
def test_the_join_keeps_the_promise_of_plain_dicts(steps: list[Any], most: int, age: int,
                                                    compact: bool) -> None:
    join, model = LabelJoin(max_pending=most, max_age_ms=age), DictJoin(most, age)
    if compact:  # the waiting entries move together at the first hole, not the 4,097th
        join._features.slack = join._labels.slack = 0
    serial = 0
    for kind, entries in steps:
        if kind == "scored":
            ids = [ident for ident, _ in entries]
            ts = [stamp for _, stamp in entries]
            rows = []
            for _ in entries:  # every row its own values: which row paired shows
                serial += 1
                rows.append([float(serial)] * WIDTH)
            matrix = np.array(rows).reshape(len(rows), WIDTH)
            got = join.remember(BatchFeatures(ids, ts, matrix))
            want = model.remember(ids, ts, rows)
        else:
            got = join.labels([label_bytes(*entry) for entry in entries])
            want = model.take_labels(entries)
        assert got.matrix.tolist() == [row for row, _ in want]
        assert got.labels.tolist() == [fraud for _, fraud in want]
        assert join.waiting == (len(model.features), len(model.labels))
        assert join.counters() == {"joined": model.joined, "unlabelled": model.unlabelled,
                                   "unmatched": model.unmatched, "bad": 0}
    # What waits is what the model holds: each id pairs with its own row.
    left = sorted(model.features)
    got = join.labels([label_bytes(ident, True, None) for ident in left])
    assert got.matrix.tolist() == [model.features[ident][1] for ident in left]


def test_what_left_does_not_hold_memory() -> None:
    """Rows that were taken, out of order or not, or dropped, leave their blocks: what a
    side holds stays within twice what waits (and a few thousand holes)."""
    join, serial = LabelJoin(max_pending=3_000, max_age_ms=10**9), 0
    for n in range(60):
        ids = [f"t{serial + i}" for i in range(500)]
        serial += 500
        join.remember(BatchFeatures(ids, [n] * 500, np.zeros((500, WIDTH))))
        # Labels for every other transaction of the batch, newest first, and none
        # for the rest: those age out by count.
        join.labels([label_bytes(ident, False, n) for ident in reversed(ids[::2])])
        side = join._features
        assert len(side) <= 3_000
        assert side._held <= 2 * len(side) + side.slack + 500
        assert side._held == sum(len(block.ids) for block in side._blocks)
    # Every unlabelled transaction still waits or was counted as it left.
    assert join.waiting[0] + join.counters()["unlabelled"] == 60 * 250
