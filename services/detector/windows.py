"""Sliding windows over event time, kept per key. Pure.

A window is a definition (``SlidingWindow``: how long it is and how late a record may
arrive) plus state (``KeyedEvents``: what each key saw within it). Time is the
transaction's own ``ts``, not the clock of the machine that reads it, so a replayed or
delayed stream gives the same verdicts as a live one.

Records may arrive out of order: one that is older than the stream time by up to the
grace period is put in its place in event time. One older than that is *late*: its
window has closed, so it changes no state, and callers are told so they can say why
it was judged without it. The stream time is the newest ``ts`` seen, or, where a
stage merges several partitions (``event_time``), the newest *order* it has taken:
each record's order is its own partition's stream time, so lateness does not depend
on which partition ran ahead.

With orders, payments of one order do not count each other: a record's window holds
the events of a strictly lower order, and itself. The merge takes records of one
order in no particular order, so this is what keeps its figures the same whatever
the interleaving.

State can be written to a changelog and read back (``changes`` / ``restore``), so an
instance that takes over a partition carries on where the last one stopped.
"""

from __future__ import annotations

from array import array
from bisect import bisect_right
from dataclasses import dataclass
from sys import intern
from typing import Any

from services.detector.store import ChangeTracking


@dataclass(frozen=True)
class SlidingWindow:
    """A window of ``length_ms`` ending at each record, and how late a record may be."""

    length_ms: int
    grace_ms: int = 0

    def __post_init__(self) -> None:
        if self.length_ms <= 0 or self.grace_ms < 0:
            raise ValueError(f"invalid window: {self.length_ms} ms, grace {self.grace_ms} ms")


class _Events:
    """One key's events, oldest first: times, what each event was about, and the order
    each was taken at (its time, where the caller gives none). Times and orders are
    arrays of machine integers: no object an event for either, where a list held two
    integer objects of 32 bytes each besides its pointers. Orders are None while each
    is its event's time, as most are: one array fewer to keep and for the collector
    to trace.

    For ``KeyedEvents.distinct``, once the key's window is big: ``counts`` holds how
    many events of each tag there are from index ``lo`` on (None: not kept), and
    ``top`` is at least the highest order held, so that a record of a higher order
    knows that no event of its window is to be left out."""

    __slots__ = ("counts", "lo", "orders", "tags", "times", "top")

    def __init__(self, times: array[int], tags: list[Any], orders: array[int] | None,
                 top: int) -> None:
        self.times = times
        self.tags = tags
        self.orders = orders
        self.top = top
        self.counts: dict[Any, int] | None = None
        self.lo = 0

    @classmethod
    def of(cls, few: _Few) -> _Events:
        """The events of a key that held them as a tuple (``_Few``), to take more."""
        if len(few) == 3:  # one event, of an order other than its time
            ts, tag, order = few
            return cls(array("q", (ts,)), [tag], None if order == ts else array("q", (order,)),
                       order)
        return cls(array("q", few[0::2]), list(few[1::2]), None, few[-2])

    @property
    def order_of(self) -> array[int]:
        """Each event's order."""
        return self.times if self.orders is None else self.orders

    def forget(self, drop: int) -> None:
        """Drop the ``drop`` oldest events, and them from the counts."""
        counts = self.counts
        if counts is not None:
            lo = self.lo
            if drop > lo:
                for tag in self.tags[lo:drop]:
                    _uncount(counts, tag)
                self.lo = 0
            else:
                self.lo = lo - drop
        del self.times[:drop], self.tags[:drop]
        if self.orders is not None:
            del self.orders[:drop]

    def insert(self, at: int, ts: int, tag: Any, order: int) -> None:
        """Put an event at index ``at``, counted if it is at ``lo`` or after."""
        orders = self.orders
        if orders is None and order != ts:
            orders = self.orders = self.times[:]
        self.times.insert(at, ts)
        self.tags.insert(at, tag)
        if orders is not None:
            orders.insert(at, order)
        if order > self.top:
            self.top = order
        counts = self.counts
        if counts is not None:
            if at >= self.lo:
                counts[tag] = counts.get(tag, 0) + 1
            else:
                self.lo += 1


# A key of a few events, as most keys are: ``(ts, tag, ts, tag, ...)``, oldest first,
# each event's order its time (``KeyedEvents.few`` of them at most); or one event of
# an order other than its time, ``(ts, tag, order)``. ``_Events`` took four objects
# (0.5 µs to make, against 30 ns) that the collector then traced for as long as the
# key lived, and 300 bytes for two events, where a tuple of them takes 70.
_Few = tuple[Any, ...]


def _uncount(counts: dict[Any, int], tag: Any) -> None:
    left = counts[tag] - 1
    if left:
        counts[tag] = left
    else:
        del counts[tag]


class _KeyedWindow(ChangeTracking):
    """What every keyed window keeps besides its events: the newest event time, the
    late count, the keys to write to the changelog, and the sweep of keys whose events
    have all left every possible window. Subclasses say how a key's events are held."""

    def __init__(self, window: SlidingWindow) -> None:
        self.window = window
        self.newest = -(2**63)  # the newest event time seen
        self.late = 0  # events refused because their window had closed
        self._keys: dict[str, Any] = {}
        self._swept_at = self.newest
        self._changed: set[str] = set()  # keys to write to the changelog

    @property
    def watermark(self) -> int:
        """Events older than this are late."""
        return self.newest - self.window.grace_ms

    def _admit(self, key: str, ts: int, stream: int) -> bool:
        """An event at ``ts`` of stream time (or order) ``stream``: the newest stream time
        moves on; False (counted late) if it is older than the watermark, else the key
        is changed."""
        if stream > self.newest:
            self.newest = stream
        if ts < self.newest - self.window.grace_ms:
            self.late += 1
            return False
        self._changed.add(key)
        return True

    def __len__(self) -> int:
        """How many keys hold events."""
        return len(self._keys)

    def _sweep(self, horizon: int) -> None:
        """Drop the keys whose events have all left every possible window."""
        self._swept_at = self.newest
        stale = [key for key, held in self._keys.items() if self._last(held) <= horizon]
        for key in stale:
            del self._keys[key]
        self._changed.update(stale)

    def take_changed(self) -> set[str]:
        """The keys changed since the last call and, if any, ``""``: the newest event
        time goes with them."""
        changed = super().take_changed()
        if changed:
            changed.add("")
        return changed

    def state_of(self, key: str) -> Any:
        """``[times, tags]`` of a key, the same format for every keyed window; the
        newest event time for ``""``."""
        if key == "":
            return self.newest
        held = self._keys.get(key)
        return None if held is None else self._state(held)

    def restore(self, key: str, state: Any) -> None:
        """Take back what ``changes`` gave, oldest first; the newest record wins."""
        if key == "":
            self.newest = self._swept_at = max(self.newest, state)
        elif state is None:
            self._keys.pop(key, None)
        else:
            self._keys[key] = self._load(state)

    @staticmethod
    def _last(held: Any) -> int:
        """The time of the newest event held."""
        raise NotImplementedError

    @staticmethod
    def _state(held: Any) -> list[Any]:
        raise NotImplementedError

    def _load(self, state: Any) -> Any:
        raise NotImplementedError


class KeyedEvents(_KeyedWindow):
    """For every key, the events that may still fall in some record's window.

    ``add`` answers the question every windowed rule asks: which events of this key lie
    in ``(ts - length, ts]``, this one included? An event is kept until no record that
    is not late can have it in its window; keys with nothing left are dropped, so the
    state is bounded by the traffic of one window plus the grace period.

    ``distinct`` answers fan-in's question, how many distinct tags that window holds,
    without a slice of it a record: for a target paid hundreds of times an hour, a few
    events' work where the slice took the window's.
    """

    _keys: dict[str, _Events | _Few]
    # A key's window this big or more keeps its tags counted (``distinct``); below it, a
    # set of the slice costs less than the counts' upkeep and their dict.
    counted_from = 8
    # Events a key holds as a tuple (``_Few``) at most; beyond, a tuple's integer
    # objects for its times cost more than ``_Events``' arrays.
    few = 4

    def add(self, key: str, ts: int, tag: Any = None,
            order: int | None = None) -> list[Any] | None:
        """Record an event; the tags of the key's events in its window, oldest first,
        this one last. None for a late event, which is not recorded.

        With ``order`` (``event_time``), the window holds only the events of a lower
        order, and lateness is judged against the newest order taken."""
        stream = ts if order is None else order
        if not self._admit(key, ts, stream):
            return None
        held = self._keys.get(key)
        if held is None:
            events = self._keys[key] = _Events(array("q"), [], None, stream)
        elif isinstance(held, tuple):
            events = self._keys[key] = _Events.of(held)
        else:
            events = held
        times, tags = events.times, events.tags
        horizon = self.watermark - self.window.length_ms
        if times and times[0] <= horizon:  # nothing a timely record can still see
            events.forget(bisect_right(times, horizon))
        if not times or ts >= times[-1]:  # in order: the usual case
            events.insert(len(times), ts, tag, stream)
            end = len(times)
        else:
            end = bisect_right(times, ts)
            events.insert(end, ts, tag, stream)
            end += 1
        start = bisect_right(times, ts - self.window.length_ms, 0, end)
        if self.newest - self._swept_at > self.window.length_ms + self.window.grace_ms:
            self._sweep(horizon)
        return _seen(tags, events.order_of, start, end, order)

    def distinct(self, key: str, ts: int, tag: Any = None,
                 order: int | None = None) -> int | None:
        """``add``, but only how many distinct tags its answer holds: None for a late
        event, as there.

        Where ``add`` slices every event of the window for each record, a key whose
        window is big keeps its tags counted from the start of the newest record's
        window on, and a record newer than any of its key, of a higher order than any
        (the usual case), moves that start along: a few events a record, not the
        window. Any other record is answered from the slice, as ``add`` does."""
        stream = ts if order is None else order
        if not self._admit(key, ts, stream):
            return None
        window = self.window
        newest = self.newest
        length = window.length_ms
        horizon = newest - window.grace_ms - length
        held = self._keys.get(key)
        if held.__class__ is tuple:
            if len(held) == 3:  # one event of its own order
                if held[0] <= horizon:  # gone from every window
                    held = None
            elif stream == ts and ts >= held[-2] and (order is None or held[-2] < order):
                # Of its own time, after every event held (the usual case): the events
                # still in some window, this one last, as a tuple while they are few.
                at, size = 0, len(held)
                while at < size and held[at] <= horizon:
                    at += 2
                if size - at < 2 * self.few:
                    held = self._keys[key] = (*held[at:], ts, tag)
                    if newest - self._swept_at > length + window.grace_ms:
                        self._sweep(horizon)
                    edge = ts - length
                    return len({held[j + 1] for j in range(0, len(held), 2)
                                if held[j] > edge})
        if held is None:
            # Most keys: one event, this one (any other is gone from every window).
            self._keys[key] = (ts, tag) if stream == ts else (ts, tag, stream)
            if newest - self._swept_at > length + window.grace_ms:
                self._sweep(horizon)
            return 1
        if isinstance(held, tuple):
            events = self._keys[key] = _Events.of(held)
        else:
            events = held
        times, tags = events.times, events.tags
        if times and times[0] <= horizon:  # nothing a timely record can still see
            events.forget(bisect_right(times, horizon))
        if times and ts < times[-1]:  # out of order: placed, then sliced
            end = bisect_right(times, ts)
            events.insert(end, ts, tag, stream)
            return self._distinct_sliced(events, ts, end + 1, order)
        # In order: ``insert`` at the end, inline.
        fast = order is None or events.top < order  # no event of this order or later
        if stream > events.top:
            events.top = stream
        orders = events.orders
        if orders is not None:
            orders.append(stream)
        elif stream != ts:  # the first order other than its event's time
            orders = events.orders = times[:]
            orders.append(stream)
        times.append(ts)
        tags.append(tag)
        counts = events.counts
        if counts is not None:
            counts[tag] = counts.get(tag, 0) + 1
        if not fast:
            return self._distinct_sliced(events, ts, len(times), order)
        end = len(times)
        start = bisect_right(times, ts - length, 0, end)
        if newest - self._swept_at > length + window.grace_ms:
            self._sweep(horizon)
        if counts is None:
            if end - start < self.counted_from:
                return len(set(tags[start:end]))
            counts = events.counts = {}
            events.lo = end  # nothing counted yet: the loop below counts the window
        lo = events.lo
        if lo < start:
            for old in tags[lo:start]:
                _uncount(counts, old)
        elif start < lo:
            for new in tags[start:lo]:
                counts[new] = counts.get(new, 0) + 1
        events.lo = start
        return len(counts)

    def _distinct_sliced(self, events: _Events, ts: int, end: int,
                         order: int | None) -> int:
        """``distinct`` of a record placed at ``end - 1``, from the slice of its window."""
        window = self.window
        start = bisect_right(events.times, ts - window.length_ms, 0, end)
        if self.newest - self._swept_at > window.length_ms + window.grace_ms:
            self._sweep(self.watermark - window.length_ms)
        return len(set(_seen(events.tags, events.order_of, start, end, order)))

    @staticmethod
    def _last(held: _Events | _Few) -> int:
        if isinstance(held, tuple):
            return held[0] if len(held) == 3 else held[-2]
        return held.times[-1]

    @staticmethod
    def _state(held: _Events | _Few) -> list[Any]:
        if isinstance(held, tuple):
            if len(held) == 3:
                ts, tag, order = held
                return [[ts], [tag], [order]]
            return [list(held[0::2]), list(held[1::2])]
        if held.orders is None or held.orders == held.times:
            return [held.times.tolist(), list(held.tags)]
        return [held.times.tolist(), list(held.tags), held.orders.tolist()]

    def _load(self, state: Any) -> _Events | _Few:
        if len(state) == 2 and len(state[0]) == 1:  # one event of its own time: most keys
            tag = state[1][0]
            return state[0][0], intern(tag) if tag.__class__ is str else tag
        try:  # names, as fan-in's payers are: one copy of each
            tags = list(map(intern, state[1]))
        except TypeError:  # tags of another kind (None: a window of times alone)
            tags = [intern(tag) if isinstance(tag, str) else tag for tag in state[1]]
        size = len(tags)
        # written without orders: each event's order is its time
        if (len(state) < 3 or state[2] == state[0]) and 0 < size <= self.few:
            few: list[Any] = [None] * (2 * size)
            few[0::2] = state[0]  # oldest first, as written
            few[1::2] = tags
            return tuple(few)
        times = array("q", state[0])
        orders = array("q", state[2]) if len(state) > 2 else None
        if orders == times:
            orders = None
        if len(times) == 1 and orders is not None:
            return times[0], tags[0], orders[0]
        return _Events(times, tags, orders,
                       max(times if orders is None else orders, default=-(2**63)))


def _seen(tags: list[Any], orders: array[int], start: int, end: int,
          order: int | None) -> list[Any]:
    """The tags of a record's window ``[start, end)``, the record last: with ``order``,
    only the events of a lower order, and the record."""
    if order is None or end - 1 <= start or max(orders[start:end - 1]) < order:
        return tags[start:end]  # no event of this order or later: all of them
    # Strictly lower orders only: the event itself is the last of the slice (bisect put
    # it after any of equal time).
    seen = [tag for tag, then in zip(tags[start:end - 1], orders[start:end - 1],
                                     strict=True) if then < order]
    seen.append(tags[end - 1])
    return seen


class KeyedTimes(_KeyedWindow):
    """``KeyedEvents`` for a rule that needs only how many events of a key lie in its
    window (velocity), not what they were about.

    Each key holds one list of times and nothing else. A velocity window churns through
    keys (most accounts pay once in a minute, so most records make a key and a minute
    later it goes), and each object that lives that long is one more for Python's
    collector to trace in its full collections: a third of ``KeyedEvents``' objects a
    key, and no list of tags sliced per record. The changelog is ``KeyedEvents``' own
    format (tags all null), so either can read the other's.
    """

    _keys: dict[str, array[int]]

    def count(self, key: str, ts: int) -> int | None:
        """Record an event; how many events of the key lie in its window, this one
        included. None for a late event, which is not recorded."""
        if not self._admit(key, ts, ts):
            return None
        window = self.window
        newest = self.newest
        times = self._keys.get(key)
        if times is None:
            times = self._keys[key] = array("q", (ts,))
            end = 1
        else:
            horizon = newest - window.grace_ms - window.length_ms
            if times[0] <= horizon:  # nothing a timely record can still see
                del times[:bisect_right(times, horizon)]
            if not times or ts >= times[-1]:  # in order: the usual case
                times.append(ts)
                end = len(times)
            else:
                end = bisect_right(times, ts)
                times.insert(end, ts)
                end += 1
        if newest - self._swept_at > window.length_ms + window.grace_ms:
            self._sweep(newest - window.grace_ms - window.length_ms)
        return end - bisect_right(times, ts - window.length_ms, 0, end)

    @staticmethod
    def _last(held: array[int]) -> int:
        return held[-1]

    @staticmethod
    def _state(held: array[int]) -> list[Any]:
        return [held.tolist(), [None] * len(held)]  # KeyedEvents' format, the tags all null

    @staticmethod
    def _load(state: Any) -> array[int]:
        return array("q", state[0])  # KeyedEvents' tags, if any, go
