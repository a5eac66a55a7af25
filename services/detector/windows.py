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
    integer objects of 32 bytes each besides its pointers."""

    __slots__ = ("orders", "tags", "times")

    def __init__(self, times: array[int] | None = None, tags: list[Any] | None = None,
                 orders: array[int] | None = None) -> None:
        self.times = array("q") if times is None else times
        self.tags: list[Any] = [] if tags is None else tags
        self.orders = array("q") if orders is None else orders


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

    def __len__(self) -> int:
        """How many keys hold events."""
        return len(self._keys)

    def _sweep(self, horizon: int) -> None:
        """Drop the keys whose events have all left every possible window."""
        self._swept_at = self.newest
        stale = [key for key, held in self._keys.items() if self._times(held)[-1] <= horizon]
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
    def _times(held: Any) -> array[int]:
        raise NotImplementedError

    @staticmethod
    def _state(held: Any) -> list[Any]:
        raise NotImplementedError

    @staticmethod
    def _load(state: Any) -> Any:
        raise NotImplementedError


class KeyedEvents(_KeyedWindow):
    """For every key, the events that may still fall in some record's window.

    ``add`` answers the question every windowed rule asks: which events of this key lie
    in ``(ts - length, ts]``, this one included? An event is kept until no record that
    is not late can have it in its window; keys with nothing left are dropped, so the
    state is bounded by the traffic of one window plus the grace period.
    """

    _keys: dict[str, _Events]

    def add(self, key: str, ts: int, tag: Any = None,
            order: int | None = None) -> list[Any] | None:
        """Record an event; the tags of the key's events in its window, oldest first,
        this one last. None for a late event, which is not recorded.

        With ``order`` (``event_time``), the window holds only the events of a lower
        order, and lateness is judged against the newest order taken."""
        stream = ts if order is None else order
        if stream > self.newest:
            self.newest = stream
        if ts < self.watermark:
            self.late += 1
            return None
        self._changed.add(key)
        events = self._keys.get(key)
        if events is None:
            events = self._keys[key] = _Events()
        times, tags, orders = events.times, events.tags, events.orders
        horizon = self.watermark - self.window.length_ms
        if times and times[0] <= horizon:  # nothing a timely record can still see
            drop = bisect_right(times, horizon)
            del times[:drop], tags[:drop], orders[:drop]
        if not times or ts >= times[-1]:  # in order: the usual case
            times.append(ts)
            tags.append(tag)
            orders.append(stream)
            end = len(times)
        else:
            end = bisect_right(times, ts)
            times.insert(end, ts)
            tags.insert(end, tag)
            orders.insert(end, stream)
            end += 1
        start = bisect_right(times, ts - self.window.length_ms, 0, end)
        if self.newest - self._swept_at > self.window.length_ms + self.window.grace_ms:
            self._sweep(horizon)
        if order is None or end - 1 <= start or max(orders[start:end - 1]) < order:
            return tags[start:end]  # no event of this order or later: all of them
        # Strictly lower orders only: the event itself is the last of the slice (bisect
        # put it after any of equal time).
        seen = [tag for tag, then in zip(tags[start:end - 1], orders[start:end - 1],
                                         strict=True) if then < order]
        seen.append(tag)
        return seen

    @staticmethod
    def _times(held: _Events) -> array[int]:
        return held.times

    @staticmethod
    def _state(held: _Events) -> list[Any]:
        if held.orders == held.times:
            return [held.times.tolist(), list(held.tags)]
        return [held.times.tolist(), list(held.tags), held.orders.tolist()]

    @staticmethod
    def _load(state: Any) -> _Events:
        times = array("q", state[0])  # written without orders: each event's order is its time
        tags = [intern(tag) if isinstance(tag, str) else tag for tag in state[1]]
        return _Events(times, tags, array("q", state[2]) if len(state) > 2 else times[:])


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
        window = self.window
        newest = self.newest
        if ts > newest:
            newest = self.newest = ts
        elif ts < newest - window.grace_ms:
            self.late += 1
            return None
        self._changed.add(key)
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
    def _times(held: array[int]) -> array[int]:
        return held

    @staticmethod
    def _state(held: array[int]) -> list[Any]:
        return [held.tolist(), [None] * len(held)]  # KeyedEvents' format, the tags all null

    @staticmethod
    def _load(state: Any) -> array[int]:
        return array("q", state[0])  # KeyedEvents' tags, if any, go
