"""Card testing in columns: ``rules.CardTesting`` for a whole batch in one compiled call.
Pure.

Each source's tiny payments (time, payee) are a linked list of nodes in one pool of
arrays, oldest first, as ``columns.WindowColumns`` holds the velocity window's times;
payees are numbers in a ``PayerTable``, a number going back to the free list once no
payment holds it. The kernel takes every record in turn as ``CardTesting.judge`` does:
a tiny payment joins its source's list, the list drops what no window of its newest
payment can see, the record's window ``(ts - window, ts]`` is counted (its distinct
payees, and its payments), and every ``window`` of event time the sources with nothing
left in any window are swept. A source beyond ``max_accounts`` forgets the oldest
sources first, as the reference's dict does.

The changelog holds the reference's state, ``[[ts, payee], ...]`` in the order its
lists keep (by time, then payee), so either reads the other's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from services.detector.columns import INT, EventPool, Slots, _Columns
from services.detector.distinct_columns import (
    PayerTable,
    _let_go,
    _next_stamp,
    gather_events,
    let_go_all,
)
from services.detector.kernels import (
    DONE,
    STOP_EVICT,
    STOP_GROW,
    W_FREE,
    W_NEWEST,
    W_SWEPT,
    W_UNUSED,
    _mark,
    _take,
    new_node,
    njit,  # numba's, once ``kernels`` has pointed its cache where it can write
)
from services.detector.msgpack_columns import joined
from services.detector.store import encode_state
from services.detector.windows import SlidingWindow

if TYPE_CHECKING:  # (``rules`` imports this module)
    from services.detector.rules import Hit, RuleSettings

SWEPT = 3  # ``counts``: whether a sweep let go of any source (its slot may be free)


@njit(cache=True, nogil=True)
def _empty(s, head, tail, size, tags, nxt, scalars,  # type: ignore[no-untyped-def]
           refs, zeroed, released, let_go):
    """Every payment of slot ``s`` let go."""
    let_go_all(s, head, size, tags, nxt, scalars, refs, zeroed, released, let_go)
    tail[s] = -1


@njit(cache=True, nogil=True)
def empty_slots(slots, head, tail, size, tags, nxt, scalars,  # type: ignore[no-untyped-def]
                refs, zeroed, released, let_go):
    """``_empty`` of each of ``slots`` that holds payments."""
    for j in range(slots.shape[0]):
        s = slots[j]
        if size[s] > 0:
            _empty(s, head, tail, size, tags, nxt, scalars, refs, zeroed, released, let_go)


@njit(cache=True, nogil=True)
def card_run(start, slots, ts, tiny, numbers,  # type: ignore[no-untyped-def]
             window, max_accounts, needed, share,
             head, tail, size, held_by, seq, times, tags, nxt, scalars,
             flags, changed, counts, refs, zeroed, released, let_go, marks, stamp,
             found, fired):
    """``CardTesting.judge`` of records ``start`` on: ``found`` each record's distinct
    payees in its window (0 for a source holding none), ``fired`` whether the rule
    fires. Returns ``(DONE, n)``, ``(STOP_GROW, record)`` (the pool is full) or
    ``(STOP_EVICT, record)`` (a new source past the cap). ``counts``: changed slots so
    far, sources held, the next insertion number, whether a sweep let any go."""
    n = slots.shape[0]
    capacity = times.shape[0]
    for i in range(start, n):
        s = slots[i]
        t = ts[i]
        if t > scalars[W_NEWEST]:
            scalars[W_NEWEST] = t
        newest = scalars[W_NEWEST]
        if tiny[i]:
            if scalars[W_FREE] < 0 and scalars[W_UNUSED] >= capacity:
                return STOP_GROW, i
            if size[s] == 0 and counts[1] >= max_accounts:
                return STOP_EVICT, i
            node = new_node(nxt, scalars)
            times[node] = t
            tags[node] = numbers[i]
            refs[numbers[i]] += 1
            nxt[node] = -1
            # In time order, as ``kernels.window_run`` links an event: written out in
            # each kernel, since a shared compiled helper, even inlined, cost some 50 ns
            # a record there.
            if size[s] == 0:
                _take(s, held_by, seq, counts)
                head[s] = tail[s] = node
            elif t >= times[tail[s]]:  # in order: the usual case
                nxt[tail[s]] = node
                tail[s] = node
            elif t < times[head[s]]:
                nxt[node] = head[s]
                head[s] = node
            else:  # after every payment at or before its time
                at = head[s]
                while nxt[at] >= 0 and times[nxt[at]] <= t:
                    at = nxt[at]
                nxt[node] = nxt[at]
                nxt[at] = node
            size[s] += 1
            _mark(s, flags, changed, counts)
        if size[s] > 0:
            # No window of its newest payment sees what is a window older.
            kept_from = times[tail[s]] - window
            if times[head[s]] <= kept_from:
                while times[head[s]] <= kept_from:
                    first = head[s]
                    head[s] = nxt[first]
                    size[s] -= 1
                    _let_go(first, tags, nxt, scalars, refs, zeroed, released, let_go)
                _mark(s, flags, changed, counts)
            edge = t - window
            mark = _next_stamp(stamp, marks)
            distinct = 0
            payments = 0
            at = head[s]
            while at >= 0 and times[at] <= t:
                if times[at] > edge:
                    payments += 1
                    payee = tags[at]
                    if marks[payee] != mark:
                        marks[payee] = mark
                        distinct += 1
                at = nxt[at]
            found[i] = distinct
            fired[i] = tiny[i] and distinct >= needed and distinct >= share * payments
        if newest - scalars[W_SWEPT] > window:
            # Drop the sources whose payments have all left every window.
            scalars[W_SWEPT] = newest
            horizon = newest - window
            for key in range(size.shape[0]):
                if size[key] > 0 and times[tail[key]] <= horizon:
                    _empty(key, head, tail, size, tags, nxt, scalars, refs, zeroed,
                           released, let_go)
                    held_by[key] = 0
                    counts[1] -= 1
                    counts[SWEPT] = 1
                    _mark(key, flags, changed, counts)
    return DONE, n


class CardColumns(EventPool):
    """``rules.CardTesting`` in columns (``EventPool``'s pool of nodes, each a tiny
    payment's time and payee number), judged a batch at a time (``judge_columns``)."""

    name = "card_testing"
    _pool = ("times", "tags", "nxt")

    def __init__(self, slots: Slots, settings: RuleSettings,
                 max_accounts: int = 200_000) -> None:
        super().__init__(slots, SlidingWindow(1, 0))  # (the window is the settings')
        self.settings = settings
        self.max_accounts = max_accounts
        self.tags = np.zeros(len(self.times), np.int32)
        self.payees = PayerTable()
        # The reference's newest time and last sweep start at 0, not NEVER.
        self.scalars[W_NEWEST] = self.scalars[W_SWEPT] = 0
        self.configure()

    def configure(self) -> None:
        """Take up a changed window; what a shortened one dropped does not come back."""
        self._window_ms = round(self.settings.card_test_window_s * 1000)

    def judge_columns(self, slots: np.ndarray, targets: list[str], amounts: np.ndarray,
                      ts: np.ndarray) -> tuple[np.ndarray, list[tuple[int, Hit]]]:
        """``CardTesting.judge_columns``: each record's distinct payees, and the hits by
        the record's place in the batch. Before the slots settle: a slot this lets go
        may not be taken again within the batch."""
        from services.detector.rules import Hit  # (rules imports this module)

        count = len(slots)
        found = np.zeros(count, INT)
        fired = np.zeros(count, np.bool_)
        if not count:
            return found, []
        settings, table = self.settings, self.payees
        tiny = amounts <= settings.card_test_amount
        numbers = np.full(count, -1, np.int32)
        paying = np.flatnonzero(tiny)
        if len(paying):
            numbers[paying] = table.numbers(list(map(targets.__getitem__, paying.tolist())))
        self._number_room(int(tiny.sum()))
        start = 0
        while True:
            code, start = card_run(
                start, slots, ts, tiny, numbers, self._window_ms, self.max_accounts,
                float(settings.card_test_payees), float(settings.card_test_distinct_share),
                self.head, self.tail, self.size, self.held_by, self.seq, self.times,
                self.tags, self.nxt, self.scalars, self.flags, self.changed_slots,
                self.counts, table.refs, table.zeroed, table.released, table.let_go,
                table.marks, table.stamp, found, fired)
            if code == DONE:
                break
            if code == STOP_GROW:
                self._grow_pool()
            else:  # STOP_EVICT
                self.forget_oldest()
        table.settle()
        if self.counts[SWEPT]:  # the sweep let sources go: their slots may be free
            self.counts[SWEPT] = 0
            self.slots.release_unheld()
        hits: list[tuple[int, Hit]] = []
        if fired.any():
            within = f"{settings.card_test_amount:g} within {self._window_ms / 60_000:g} min"
            hits = [(i, Hit(self.name, f"{int(found[i])} distinct payees paid at most "
                                       f"{within}"))
                    for i in np.flatnonzero(fired).tolist()]
        return found, hits

    def forget_oldest(self) -> None:
        held = self.held_by.astype(np.bool_)
        super().forget_oldest()
        # Mid-batch: the batch's payees are numbered already, so the numbers let go are
        # freed once it is done (``judge_columns``), not here.
        self._empty(np.flatnonzero(held & (self.held_by == 0)), settle=False)

    def _forget(self, slots: np.ndarray) -> None:
        self._empty(slots)
        self._drop(slots)

    def _empty(self, slots: np.ndarray, settle: bool = True) -> None:
        table = self.payees
        empty_slots(slots, self.head, self.tail, self.size, self.tags, self.nxt,
                    self.scalars, table.refs, table.zeroed, table.released, table.let_go)
        if settle:
            table.settle()

    # The store's state is its sources' alone: no ``""`` key, as the reference has none.
    take_changed_slots = _Columns.take_changed_slots
    restore = _Columns.restore

    def _restored(self, states: list[Any]) -> list[Any]:
        return [state or None for state in states]  # a source without payments is none

    def state_of(self, key: str) -> Any:
        """``[[ts, payee], ...]``, oldest first."""
        return self.states_of([key])[0]

    def states_of(self, keys: list[str]) -> list[Any]:
        return self._states_at(self._held_slots(keys))

    def _states_at(self, slots: np.ndarray) -> list[Any]:
        """The states of ``slots`` (-1: none held), as the reference keeps them: by time,
        and a time's payments by payee."""
        total = int(self.size[slots[slots >= 0]].sum())
        times, payees = np.empty(total, INT), np.empty(total, INT)
        ends = np.empty(len(slots), INT)
        gather_events(slots, self.head, self.size, self.times, self.times, self.tags,
                      self.nxt, times, times, payees, ends)
        names = self.payees.names
        pairs = [[t, names[p]] for t, p in zip(times.tolist(), payees.tolist(), strict=True)]
        states: list[Any] = []
        start = 0
        for end, slot in zip(ends.tolist(), slots.tolist(), strict=True):
            states.append(None if slot < 0 else sorted(pairs[start:end]))
            start = end
        return states

    def encoded_at(self, slots: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return joined([None if state is None else encode_state(state)
                       for state in self._states_at(self.held_at(slots))])

    def _apply(self, slots: np.ndarray, states: list[Any]) -> None:
        self._empty(slots)  # what a source held before
        nodes = self._place(slots, [[[t for t, _ in state]] for state in states])
        numbers = self.payees.numbers([payee for state in states for _, payee in state],
                                      shared=True)
        held, times_held = np.unique(numbers, return_counts=True)
        self.payees.refs[held] += times_held.astype(np.int32)
        self.tags[nodes] = numbers
        if len(nodes):
            self.scalars[W_NEWEST] = max(int(self.scalars[W_NEWEST]),
                                         int(self.times[self.tail[slots]].max()))


def warm() -> None:
    """Compile (or load from the cache) the kernels, as ``kernels.warm`` does."""
    from services.detector.rules import RuleSettings

    slots = Slots(4)
    store = CardColumns(slots, RuleSettings())
    store.judge_columns(slots.of(["k"]), ["p"], np.ones(1), np.zeros(1, INT))
    store.encoded_at(slots.known(["k"]))
    store._empty(np.array([0], INT))
