"""The event-time merge takes each upstream partition's records as a sorted run and
merges the runs; it must release exactly what a heap of every record would, in the
same order, with the same bookkeeping, whatever the records' order."""

from __future__ import annotations

import heapq
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from services.detector.event_time import NEVER, Merge, Progress


class HeapMerge:
    """The merge as a heap of every record: the reference."""

    def __init__(self, upstream: int | None, limit: int) -> None:
        self.upstream, self.limit = upstream, limit
        self.heard: dict[int, int] = {}
        self.idle: set[int] = set()
        self.done: dict[int, int] = {}
        self.time = NEVER
        self.forced = self.behind = 0
        self.waiting: list[tuple[int, int, int, str]] = []

    def hear(self, marker: Progress) -> None:
        for partition, time in marker.watermarks.items():
            self.heard[partition] = max(time, self.heard.get(partition, NEVER))
        self.idle = (self.idle - set(marker.watermarks)) | set(marker.idle)

    def push(self, partition: int, order: int, offset: int, item: str) -> None:
        if partition >= 0:
            self.heard[partition] = max(order, self.heard.get(partition, NEVER))
            self.idle.discard(partition)
        if order < self.time:
            self.behind += 1
        heapq.heappush(self.waiting, (order, offset, partition, item))

    def watermark(self) -> int | None:
        if self.upstream is None:
            return None
        times = [self.heard.get(p, NEVER) for p in range(self.upstream) if p not in self.idle]
        return min(times) if times else None

    def release(self) -> list[tuple[int, str]]:
        mark, out = self.watermark(), []
        while self.waiting and (mark is None or self.waiting[0][0] <= mark
                                or len(self.waiting) > self.limit):
            order, offset, partition, item = heapq.heappop(self.waiting)
            if mark is not None and order > mark:
                self.forced += 1
            if partition >= 0:
                self.done[partition] = offset
            self.time = max(self.time, order)
            out.append((order, item))
        return out


def _state(merge: Any) -> tuple[Any, ...]:
    return (dict(merge.heard), set(merge.idle), dict(merge.done), merge.time,
            merge.forced, merge.behind)


# Steps: a record from an upstream partition (its order a step on from that
# partition's last, or now and then back), a progress marker, or a release.
_step = st.one_of(
    st.tuples(st.just("push"), st.integers(-1, 3), st.integers(-3, 6)),
    # Records read together (a framed record's rows): ``push_all`` on one side.
    st.tuples(st.just("push_all"), st.lists(st.tuples(st.integers(-1, 3),
                                                      st.integers(-3, 6)), max_size=8)),
    st.tuples(st.just("hear"), st.dictionaries(st.integers(0, 3), st.integers(0, 60)),
              st.lists(st.integers(0, 3), max_size=2)),
    st.tuples(st.just("release")),
)


@settings(max_examples=400, deadline=None)
@given(st.sampled_from([None, 1, 2, 4]), st.integers(1, 12), st.lists(_step, max_size=80))
def test_the_runs_release_what_a_heap_would(upstream: int | None, limit: int,
                                            steps: list[tuple[Any, ...]]) -> None:
    runs: Merge[str] = Merge(upstream, limit)
    heap = HeapMerge(upstream, limit)
    last: dict[int, int] = {}
    offset = 0
    for step in steps:
        if step[0] in ("push", "push_all"):
            drawn = [step[1:]] if step[0] == "push" else step[1]
            together = []
            for partition, delta in drawn:
                order = last.get(partition, 0) + delta
                last[partition] = max(order, last.get(partition, 0))
                item = f"{partition}@{order}#{offset}"
                together.append((order, offset, partition, item))
                heap.push(partition, order, offset, item)
                offset += 1
            if step[0] == "push":
                order, at, partition, item = together[0]
                runs.push(partition, order, at, item)
            else:
                runs.push_all(together)
        elif step[0] == "hear":
            marker = Progress(step[1], step[2])
            runs.hear(marker)
            heap.hear(marker)
        else:
            assert runs.release() == heap.release()
        assert len(runs) == len(heap.waiting)
        assert runs.oldest_position() == min((e[1] for e in heap.waiting), default=None)
        assert _state(runs) == _state(heap)
    runs.upstream = heap.upstream = None  # everything goes
    assert runs.release() == heap.release()
    assert _state(runs) == _state(heap)
    assert len(runs) == 0


def test_take_gives_the_whole_entries() -> None:
    merge: Merge[str] = Merge(upstream=None)
    merge.push(1, 20, 0, "b")
    merge.push(0, 10, 1, "a")
    assert merge.take() == [(10, 1, 0, "a"), (20, 0, 1, "b")]
    assert merge.done == {0: 1, 1: 0}
