"""The newest records of one output topic, kept undecoded in preallocated columns. Pure.

At 50,000 records a second a tuple per record kept would give the garbage collector
tens of thousands of objects to walk, and the feed worker a list to build under its
lock. Here a batch is a few slice assignments into a ring: the values (bytes, which
the collector does not track) in one list, partitions, offsets and arrival times in
typed arrays.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterator, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Seen:
    """One record as the feed consumed it: where it was read, and when."""

    value: bytes
    partition: int
    offset: int
    arrived_ms: int


class RecentRecords:
    """A ring of the newest ``size`` records: ``add`` a batch, read them newest first."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._values: list[bytes | None] = [None] * size
        self._partitions = array("l", bytes(array("l").itemsize * size))
        self._offsets = array("q", bytes(8 * size))
        self._arrived = array("q", bytes(8 * size))
        self._written = 0  # records ever added; the next goes at _written % size

    def __len__(self) -> int:
        return min(self._written, self.size)

    def add(self, values: Sequence[bytes | None], partitions: Sequence[int],
            offsets: Sequence[int], arrived_ms: int) -> None:
        """A batch, oldest first; only its newest ``size`` are kept. ``partitions`` and
        ``offsets`` go with ``values`` one for one (a None value is kept, never shown)."""
        count = len(values)
        skip = max(0, count - self.size)
        start = (self._written + skip) % self.size
        done = skip
        while done < count:
            n = min(count - done, self.size - start)
            self._values[start:start + n] = values[done:done + n]
            self._partitions[start:start + n] = array("l", partitions[done:done + n])
            self._offsets[start:start + n] = array("q", offsets[done:done + n])
            self._arrived[start:start + n] = array("q", [arrived_ms]) * n
            done += n
            start = 0
        self._written += count

    def newest(self, limit: int | None = None) -> Iterator[Seen]:
        """Up to ``limit`` records (all kept when None), newest first."""
        kept = len(self)
        for back in range(min(kept, kept if limit is None else limit)):
            at = (self._written - 1 - back) % self.size
            value = self._values[at]
            if value is not None:
                yield Seen(value, self._partitions[at], self._offsets[at], self._arrived[at])

    def copy(self) -> RecentRecords:
        """A copy to be searched away from the feed's lock: a few flat copies, cheap."""
        twin = RecentRecords.__new__(RecentRecords)
        twin.size, twin._written = self.size, self._written
        twin._values = self._values[:]
        twin._partitions = self._partitions[:]
        twin._offsets = self._offsets[:]
        twin._arrived = self._arrived[:]
        return twin
