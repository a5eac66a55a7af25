"""Event time across partitions: stream time per input partition, watermarks that travel
with re-keyed records, and the merge that takes them in event-time order. Pure.

The stateful detector has two stages (``stages``). The first reads the transactions
topic, one partition at a time: a partition's records come in its own order, and its
*stream time* is the newest ``ts`` it has shown. Its state is per partition, so the
order in which partitions are fetched changes nothing there.

The second stage reads the repartition topic, where every partition mixes the records
of every upstream partition in whatever order the first stage happened to process
them. So each forwarded record carries its upstream partition and that partition's
stream time (its *order*), and the first stage also sends progress markers
(``Progress``) to every repartition partition after each batch, saying how far each of
its partitions has got. The second stage then does what Kafka Streams' ``PartitionGroup``
and Flink's ``WatermarkOutputMultiplexer`` do (``Merge``):

- its watermark is the minimum over every upstream partition of the stream time heard
  from it; a partition whose owner says it has been silent for the idleness timeout
  does not count until it speaks again (Flink's ``withIdleness``);
- records wait until the watermark reaches their order, and are then taken oldest
  order first across all upstream partitions;
- lateness is judged against that order, so a record is late in the second stage
  exactly when it was late for its own partition, whichever partition ran ahead.

Records of equal order are taken in any order, and the windows make that harmless:
a record's figures count only the events of a strictly lower order (``windows``),
so payments at the same instant do not count each other. Hence the same input gives
every record the same figures whether it arrives live, paced, all at once or with its
partitions fetched in any order.

The merge keeps, per upstream partition, the repartition position of the last record
it released (its record's offset and its place in that record: ``repartition``); it
goes to the changelog with the rest of the state, so records consumed again after a
restart (their offsets were held back while they waited) are not judged twice.
"""

from __future__ import annotations

import heapq
from bisect import bisect_left, bisect_right
from collections.abc import Iterable
from itertools import groupby
from operator import le
from typing import Any, Generic, TypeVar

import msgspec

from services.detector.repartition import last_position

NEVER = -(2**63)  # the stream time of a partition nothing was heard from
CLOCK_KEY = "#clock"  # the changelog key of a partition's clock (rules' keys start "/")

Item = TypeVar("Item")


class Progress(msgspec.Struct, gc=False):
    """A progress marker on the repartition topic (a record without a key): how far the
    first stage's partitions have got, and which of them have gone idle."""

    watermarks: dict[int, int]  # upstream partition -> its stream time
    idle: list[int] = []


encode_progress = msgspec.json.Encoder().encode
decode_progress = msgspec.json.Decoder(Progress).decode


class SourceClock:
    """The first stage's view of one input partition: its stream time (the newest
    ``ts`` of its records so far, in their own order) and when it last had a record,
    by the machine's clock, for the idleness timeout."""

    __slots__ = ("changed", "heard_at", "time")

    def __init__(self, now: float, time: int = NEVER) -> None:
        self.time = time
        self.heard_at = now
        self.changed = False  # the stream time moved since the changelog last had it

    def advance(self, ts: int) -> int:
        """A record at ``ts``: the partition's stream time after it, the record's order."""
        if ts > self.time:
            self.time = ts
            self.changed = True
        return self.time

    def state(self) -> dict[str, int]:
        return {"time": self.time}

    def restore(self, state: dict[str, int]) -> None:
        self.time = max(self.time, state.get("time", NEVER))

    def idle(self, now: float, timeout: float) -> bool:
        return now - self.heard_at >= timeout


class Merge(Generic[Item]):
    """The second stage's input for one repartition partition: what it has heard from
    every upstream partition, and the records waiting for the watermark.

    ``upstream`` is how many partitions the first stage reads; None takes every record
    as soon as it comes, in order within each call (for a single process that feeds the
    stages itself, in order). ``limit`` bounds the records waiting: beyond it the oldest
    are taken even though some partition is behind (counted in ``forced``), so that one
    stalled upstream partition cannot exhaust memory.
    """

    def __init__(self, upstream: int | None, limit: int = 200_000) -> None:
        self.upstream = upstream
        self.limit = limit
        self.heard: dict[int, int] = {}  # upstream partition -> its stream time
        self.idle: set[int] = set()
        self.done: dict[int, int] = {}  # upstream partition -> last position released
        self._restored: dict[int, int] = {}  # the same, as the changelog had it
        self.time = NEVER  # the newest order released: the stage's stream time
        self.forced = 0  # taken before the watermark reached them (``limit``)
        self.behind = 0  # came with an order the stage had passed (after idleness)
        self.changed = False  # the clock changed since the changelog last had it
        # The records waiting, as ``(order, position, partition, item)``. An upstream
        # partition's records come in their own order, so each partition's list is a
        # sorted run: a push appends, and a release merges the runs' heads (a k-way
        # merge; a heap of every record cost a push and a pop of log n comparisons a
        # record). Those that come out of order in their partition (after a rewind
        # upstream, or from a detector that did not say) wait in a heap of their own.
        self._runs: dict[int, list[tuple[int, int, int, Item]]] = {}
        self._unordered: list[tuple[int, int, int, Item]] = []
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def hear(self, marker: Progress) -> None:
        """A progress marker: stream times heard, and which partitions went idle."""
        heard = self.heard
        for partition, time in marker.watermarks.items():
            if time > heard.get(partition, NEVER):
                heard[partition] = time
                self.changed = True
        idle = set(marker.idle)
        # A marker speaks for the partitions its sender owns: those it names and does
        # not call idle are active again.
        self.idle = (self.idle - set(marker.watermarks)) | idle

    def push(self, partition: int, order: int, position: int, item: Item) -> bool:
        """A record from upstream ``partition`` at ``order``, read at ``position`` of this
        partition (``repartition.position``: any number that grows as the partition is
        read); False (and dropped) if it was released before a restart."""
        if partition >= 0:
            if position <= self._restored.get(partition, -1):
                return False
            if order > self.heard.get(partition, NEVER):
                self.heard[partition] = order
            self.idle.discard(partition)
        if order < self.time:
            self.behind += 1
        entry = (order, position, partition, item)
        run = self._runs.get(partition)
        if run is None:
            self._runs[partition] = [entry]
        elif not run or order > run[-1][0] or (order == run[-1][0] and position > run[-1][1]):
            run.append(entry)
        else:
            heapq.heappush(self._unordered, entry)
        self._count += 1
        return True

    def push_all(self, entries: list[tuple[int, int, int, Item]]) -> None:
        """``push`` of records read together, ``(order, position, partition, item)`` in
        the order read (a framed record's rows): each upstream partition's stretch in
        order at once, its bookkeeping once, rather than a call a record."""
        for partition, stretch in groupby(entries, key=_partition):
            group = list(stretch)
            if partition >= 0 and partition in self._restored:  # released before a restart
                done = self._restored[partition]
                group = [entry for entry in group if entry[1] > done]
                if not group:
                    continue
            orders = [entry[0] for entry in group]
            if not all(map(le, orders, orders[1:])):  # not in order: a record at a time
                for order, position, upstream, item in group:
                    self.push(upstream, order, position, item)
                continue
            if partition >= 0:
                if orders[-1] > self.heard.get(partition, NEVER):
                    self.heard[partition] = orders[-1]
                self.idle.discard(partition)
            if orders[0] < self.time:
                self.behind += bisect_left(orders, self.time)
            run = self._runs.get(partition)
            if run is None:
                self._runs[partition] = group
            elif not run or group[0][:2] > run[-1][:2]:
                run.extend(group)
            else:  # behind the run's last: as ``push`` would put each
                for entry in group:
                    if not run or entry[:2] > run[-1][:2]:
                        run.append(entry)
                    else:
                        heapq.heappush(self._unordered, entry)
            self._count += len(group)

    def watermark(self) -> int | None:
        """The order up to which every record has come; None when nothing holds it
        (no upstream count given, or every upstream partition idle)."""
        if self.upstream is None:
            return None
        lowest: int | None = None
        heard, idle = self.heard, self.idle
        for partition in range(self.upstream):
            if partition in idle:
                continue
            time = heard.get(partition, NEVER)
            if lowest is None or time < lowest:
                lowest = time
        return lowest

    def holding(self) -> int | None:
        """The upstream partition that holds the watermark back, if any."""
        mark = self.watermark()
        if mark is None:
            return None
        for partition in range(self.upstream or 0):
            if partition not in self.idle and self.heard.get(partition, NEVER) == mark:
                return partition
        return None

    def release(self) -> list[tuple[int, Item]]:
        """The records the watermark has reached, as ``(order, item)``, oldest order
        first (and, for one order, in the order they were read)."""
        return [(entry[0], entry[3]) for entry in self.take()]

    def take(self) -> list[tuple[int, int, int, Item]]:
        """``release``, as ``(order, position, partition, item)``."""
        if not self._count:
            return []
        mark = self.watermark()
        chunks: list[list[tuple[int, int, int, Item]]] = []
        for partition, run in self._runs.items():
            if not run:
                continue
            if mark is None or run[-1][0] <= mark:
                chunks.append(run)
                self._runs[partition] = []
            elif run[0][0] <= mark:
                end = bisect_right(run, mark, key=_order)
                chunks.append(run[:end])
                del run[:end]
        unordered = self._unordered
        unordered_taken = bool(unordered) and (mark is None or unordered[0][0] <= mark)
        if unordered_taken:
            chunk = []
            while unordered and (mark is None or unordered[0][0] <= mark):
                chunk.append(heapq.heappop(unordered))
            chunks.append(chunk)
        # Only sorted runs, one a partition: each partition's last record released is
        # its run's last taken.
        runs_only = len(chunks) - (1 if unordered_taken else 0)
        taken = sum(len(chunk) for chunk in chunks)
        beyond = self._count - taken - self.limit
        if beyond > 0:  # beyond the limit: the oldest go, though the watermark is behind
            chunks.append(self._force(beyond))
            self.forced += beyond
        if not chunks:
            return []
        if len(chunks) == 1:
            out = chunks[0]
        else:
            out = [entry for chunk in chunks for entry in chunk]
            out.sort()  # runs, merged: Timsort finds each and merges them
        done = self.done
        if runs_only == len(chunks):
            for chunk in chunks:
                if chunk[-1][2] >= 0:
                    done[chunk[-1][2]] = chunk[-1][1]
        else:
            for _, position, partition, _ in out:
                if partition >= 0:
                    done[partition] = position
        if out[-1][0] > self.time:
            self.time = out[-1][0]
        self._count -= len(out)
        self.changed = True
        return out

    def _force(self, count: int) -> list[tuple[int, int, int, Item]]:
        """The ``count`` oldest records waiting, taken out; the rest stay, as runs."""
        rest = [entry for run in self._runs.values() for entry in run] + self._unordered
        rest.sort()
        self._runs = {partition: [] for partition in self._runs}
        self._unordered = []
        for entry in rest[count:]:  # in order overall, so in order in each partition
            self._runs.setdefault(entry[2], []).append(entry)
        return rest[:count]

    def oldest_position(self) -> int | None:
        """The lowest position of a record still waiting: the partition's committed
        offset may not pass its record's, or a restart would skip it."""
        return min((entry[1] for run in (*self._runs.values(), self._unordered)
                    for entry in run), default=None)

    def state(self) -> dict[str, Any]:
        return {"time": self.time, "heard": _pairs(self.heard), "at": _pairs(self.done)}

    def restore(self, state: dict[str, Any]) -> None:
        self.time = max(self.time, state.get("time", NEVER))
        for partition, time in state.get("heard", ()):
            self.heard[partition] = max(time, self.heard.get(partition, NEVER))
        # Positions; a detector before them wrote "done", the offset of the last record
        # released (each record one forward): all of that record is done.
        done = [(partition, at) for partition, at in state.get("at", ())] + [
            (partition, last_position(offset)) for partition, offset in state.get("done", ())]
        for partition, at in done:
            self.done[partition] = max(at, self.done.get(partition, -1))
            self._restored[partition] = self.done[partition]


def _order(entry: tuple[int, int, int, Any]) -> int:
    return entry[0]


def _partition(entry: tuple[int, int, int, Any]) -> int:
    return entry[2]


def _pairs(mapping: dict[int, int]) -> list[list[int]]:
    return [[key, value] for key, value in sorted(mapping.items())]


def progress_of(clocks: Iterable[tuple[int, SourceClock]], now: float,
                idle_after: float) -> Progress:
    """What the first stage tells every repartition partition about its partitions."""
    watermarks: dict[int, int] = {}
    idle: list[int] = []
    for partition, clock in clocks:
        if clock.time != NEVER:
            watermarks[partition] = clock.time
        if clock.idle(now, idle_after):
            idle.append(partition)
            watermarks.setdefault(partition, NEVER)
    return Progress(watermarks, idle)
