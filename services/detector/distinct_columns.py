"""Fan-in's windows in columns: ``windows.KeyedEvents.distinct`` for a whole batch in one
compiled call. Pure.

Each target's events (time, order, payer) are a linked list of nodes in one pool of
arrays, as ``columns.WindowColumns`` holds the velocity window's times; payers are
numbers in a ``PayerTable`` that fan-in's three windows share, a number going back to
the free list once no event holds it. The window, the lateness, what a touch forgets,
the sweep and the changelog (``[times, payers]``, ``[times, payers, orders]`` where an
order differs from its time, the newest order under ``""``) are ``KeyedEvents``', which
the tests hold these to, record for record.

A record's answer is the number of distinct payers among its window's events of a
lower order, and itself. A key whose window is big keeps its payers counted from the
start of its newest window on (``tally``: how many events of each payer), so that a
record newer than any of its key, of a higher order than any, moves that start along
(a few events' work) rather than looking at each event of the window; any other
record looks at its window's events, as ``KeyedEvents`` slices them.

A changed target's state goes to the changelog as MessagePack written by a kernel
straight from the pool (``encode_parts``), the payers' names from a pool of their
own MessagePack: the bytes msgspec writes for the same lists, without the lists. A
window of ``SETTLE_FROM`` events or more goes as two records (``changelog_at``): its
settled events in a record of their own, written again only when the events born
since outgrow √(2nr) (a window of n, r events a change), and, in the key's record,
those born since, which a list in the order of their births (``later``) reaches
without a walk of the window. A change then writes some √(2nr) events, not n: an
hour's window had every change of a busy target write the whole hour again.
"""

from __future__ import annotations

from itertools import chain
from sys import intern
from typing import Any

import numpy as np

from services.detector.columns import INT, SLOT, EventPool, PayeeTable, Slots
from services.detector.kernels import (
    DONE,
    NEVER,
    STOP_GROW,
    W_FREE,
    W_LATE,
    W_NEWEST,
    W_SWEPT,
    W_UNUSED,
    _mark,
    new_node,
    njit,  # numba's, once ``kernels`` has pointed its cache where it can write
)
from services.detector.msgpack_columns import (
    HEADER_BYTES,
    NUMBER_BYTES,
    put_array,
    put_int,
    put_linked,
    put_name,
    written,
)
from services.detector.name_index import grown as _grown
from services.detector.windows import SlidingWindow

# A window this big keeps its payers counted: below it, looking at each event costs
# less than the tally's entries (some 50 bytes each). A window's events lie apart in
# the pool, a wait on memory each: at 64, a busy hour's walks cost 2.5 times what the
# tally does at 8 (``docs/performance.md``).
COUNTED_FROM = 8
# A key's window this big goes to the changelog in two records (``changelog_at``):
# below it, writing the whole window costs less than a second record. (At 32, the
# changes of bench.changelog's tenth minute cost 17.0 µs a transaction, 15.1 at 8.)
SETTLE_FROM = 8
SHIFT = 32  # a tally's key: slot << SHIFT | payer


class PayerTable(PayeeTable):
    """``PayeeTable`` for fan-in's windows, with what their kernel needs beside each
    number: the last record whose scan saw it (``marks``, against ``stamp``, which
    every scan of the three windows moves on) and whether it is already listed as let
    go (``zeroed``; ``released``, ``let_go`` of them) since the table last settled.

    The windows of a batch run one after the other, and a payer one of them lets go
    may be one a later one takes: numbers are freed once all of them have run
    (``settle``), never in between."""

    def __init__(self, capacity: int = 1024) -> None:
        super().__init__(capacity)
        # Beside each number, in as few bits as hold it: a million payers, a few bytes
        # each. (A stamp past 32 bits starts the marks anew: ``_next_stamp``.)
        self.stamp = np.zeros(1, INT)
        self.let_go = np.zeros(1, INT)
        self.marks = np.full(capacity, -1, np.int32)
        self.zeroed = np.zeros(capacity, np.uint8)
        self.released = np.zeros(capacity, np.int32)
        self.tied = np.zeros(capacity, np.int32)  # a scan's own count a payer, zero after

    def _grow(self, size: int) -> None:
        super()._grow(size)
        self.marks = _grown(self.marks, size, -1)
        self.zeroed = _grown(self.zeroed, size, 0)
        self.released = np.zeros(size, np.int32)
        self.tied = np.zeros(size, np.int32)

    def settle(self) -> None:
        """Free the numbers the kernels listed as held by no event any longer."""
        count = int(self.let_go[0])
        if count:
            listed = self.released[:count]
            self.zeroed[listed] = 0
            self.let_go[0] = 0
            self.release(listed.tolist())


@njit(cache=True, nogil=True)
def _count(tally, s, payer, nd):  # type: ignore[no-untyped-def]
    key = (s << SHIFT) | payer
    held = tally.get(key, 0)
    if held == 0:
        nd[s] += 1
    tally[key] = held + 1


@njit(cache=True, nogil=True)
def _uncount(tally, s, payer, nd):  # type: ignore[no-untyped-def]
    key = (s << SHIFT) | payer
    held = tally[key] - 1
    if held == 0:
        del tally[key]
        nd[s] -= 1
    else:
        tally[key] = held


@njit(cache=True, nogil=True)
def _next_stamp(stamp, marks):  # type: ignore[no-untyped-def]
    """A stamp no mark holds: the next, or, past what a mark holds, 0 with every mark
    cleared."""
    stamp[0] += 1
    if stamp[0] >= 2**31 - 1:
        marks[:] = -1
        stamp[0] = 0
    return stamp[0]


@njit(cache=True, nogil=True)
def _let_go(node, payers, nxt, scalars, refs, zeroed, released,  # type: ignore[no-untyped-def]
            let_go):
    """A node back to the pool, its payer held by one event fewer."""
    p = payers[node]
    refs[p] -= 1
    if refs[p] == 0 and zeroed[p] == 0:
        zeroed[p] = 1
        released[let_go[0]] = p
        let_go[0] += 1
    nxt[node] = scalars[W_FREE]
    scalars[W_FREE] = node


@njit(cache=True, nogil=True)
def let_go_all(s, head, size, payers, nxt, scalars,  # type: ignore[no-untyped-def]
               refs, zeroed, released, let_go):
    """Every event of slot ``s`` back to the pool, its payer held by one event fewer."""
    at = head[s]
    for _ in range(size[s]):
        following = nxt[at]
        _let_go(at, payers, nxt, scalars, refs, zeroed, released, let_go)
        at = following
    size[s] = 0
    head[s] = -1


@njit(cache=True, nogil=True)
def _empty(s, head, size, lo, nd, payers, nxt, scalars,  # type: ignore[no-untyped-def]
           refs, zeroed, released, let_go, tally):
    """Every event of slot ``s`` let go, and its tally with them."""
    at = lo[s]
    while at >= 0:
        _uncount(tally, s, payers[at], nd)
        at = nxt[at]
    let_go_all(s, head, size, payers, nxt, scalars, refs, zeroed, released, let_go)
    lo[s] = -1
    nd[s] = 0


@njit(cache=True, nogil=True)
def empty_slots(slots, head, size, lo, nd, payers, nxt,  # type: ignore[no-untyped-def]
                scalars, refs, zeroed, released, let_go, tally):
    """``_empty`` of each of ``slots`` that holds events (a restore over held state)."""
    for j in range(slots.shape[0]):
        s = slots[j]
        if size[s] > 0:
            _empty(s, head, size, lo, nd, payers, nxt, scalars, refs, zeroed, released,
                   let_go, tally)


@njit(cache=True, nogil=True)
def _tied_alone(s, g, at, edge, answer, payers, times, nxt, tied,  # type: ignore[no-untyped-def]
                tally):
    """``answer`` (the distinct payers of a counted window, ties included) less the
    payers that only ties pay, ``at`` on (the key's events of the record's order, the
    last of its list), plus the record's own payer ``g`` where it is one of them.
    ``tied``: zero for every payer, before and after."""
    first = at
    while at >= 0:  # each payer's events among the ties in the window
        if times[at] > edge:
            tied[payers[at]] += 1
        at = nxt[at]
    alone = False
    at = first
    while at >= 0:
        if times[at] > edge:
            p = payers[at]
            if tied[p] > 0:
                if tally[(s << SHIFT) | p] == tied[p]:  # none of a lower order
                    answer -= 1
                    if p == g:
                        alone = True
                tied[p] = 0
        at = nxt[at]
    return answer + 1 if alone else answer


@njit(cache=True, nogil=True)
def _fresh(s, node, fresh_head, fresh_tail, fresh_n, later):  # type: ignore[no-untyped-def]
    """``node``, born last, at the end of slot ``s``'s events born since its settled
    record."""
    if fresh_n[s] == 0:
        fresh_head[s] = node
    else:
        later[fresh_tail[s]] = node
    fresh_tail[s] = node
    fresh_n[s] += 1


@njit(cache=True, nogil=True)
def _unfresh(s, node, fresh_head, fresh_tail, fresh_n, later):  # type: ignore[no-untyped-def]
    """``node`` out of slot ``s``'s events born since its settled record (the window
    dropped it): the first of them, mostly, as the oldest event goes first."""
    if fresh_head[s] == node:
        fresh_head[s] = later[node]
        before = -1
    else:
        before = fresh_head[s]
        while later[before] != node:
            before = later[before]
        later[before] = later[node]
    if fresh_tail[s] == node:
        fresh_tail[s] = before
    fresh_n[s] -= 1


@njit(cache=True, nogil=True)
def distinct_run(start, slots, ts, orders, by_order, tags,  # type: ignore[no-untyped-def]
                 length, grace, counted_from, head, tail, size, lo, nd, top, tie,
                 settled, fresh_head, fresh_tail, fresh_n, held_by, times, ords, payers,
                 nxt, born, later, births, scalars, flags, changed, counts, refs, zeroed,
                 released, let_go, marks, tied, stamp, tally, out):
    """``KeyedEvents.distinct`` for records ``start`` on: ``out`` the distinct payers
    of each record's window (-1: late). ``by_order``: whether ``orders`` are the
    records' orders (else each record's order is its time, and no event is left out
    of a window for its order). Returns ``(DONE, n)`` or ``(STOP_GROW, record)``.
    ``counts``: changed slots so far, keys held, whether the sweep dropped any.

    ``tie``: the first of a key's events of its top order where those are the last of
    its list, and only they (-1: not known to be so). A record of that order, the last
    of its list, then has its answer from the tally, less the payers only the ties pay,
    rather than from a look at every event of its window.

    ``born``: each event's birth number, from ``births`` (the next to give). A key's
    events born since its settled record (``settled``, ``changelog_at``) are also a
    list in the order of their births (``fresh_head``, ``later``, ``fresh_tail``,
    ``fresh_n`` of them), so that the changelog writes them without a walk of the
    window; a key that starts anew has no settled record."""
    n = slots.shape[0]
    capacity = times.shape[0]
    for i in range(start, n):
        if scalars[W_FREE] < 0 and scalars[W_UNUSED] >= capacity:
            return STOP_GROW, i
        t = ts[i]
        o = orders[i]
        s = slots[i]
        g = tags[i]
        newest = scalars[W_NEWEST]
        if o > newest:
            newest = o
            scalars[W_NEWEST] = o
        if t < newest - grace:
            scalars[W_LATE] += 1
            out[i] = -1
            continue
        _mark(s, flags, changed, counts)
        node = new_node(nxt, scalars)
        times[node] = t
        ords[node] = o
        payers[node] = g
        nxt[node] = -1
        born[node] = births[0]
        births[0] += 1
        later[node] = -1
        refs[g] += 1
        answer = -1
        tied_up = False  # of the key's top order, the last of its list, after the others
        if size[s] == 0:  # a new key: this event alone
            head[s] = tail[s] = node
            size[s] = 1
            lo[s] = -1
            nd[s] = 0
            top[s] = o
            tie[s] = node
            settled[s] = 0
            fresh_head[s] = fresh_tail[s] = node
            fresh_n[s] = 1
            held_by[s] = 1
            counts[1] += 1
            answer = 1
        else:
            horizon = newest - grace - length
            while size[s] > 0 and times[head[s]] <= horizon:  # nothing can still see
                first = head[s]
                if lo[s] == first:
                    _uncount(tally, s, payers[first], nd)
                    lo[s] = nxt[first]
                if tie[s] == first:  # the ties after it are the last still
                    tie[s] = nxt[first]
                head[s] = nxt[first]
                size[s] -= 1
                if born[first] >= settled[s]:
                    _unfresh(s, first, fresh_head, fresh_tail, fresh_n, later)
                _let_go(first, payers, nxt, scalars, refs, zeroed, released, let_go)
            fast = not by_order or top[s] < o  # no event of this order or later held
            if size[s] == 0:
                head[s] = tail[s] = node
                size[s] = 1
                lo[s] = -1
                tie[s] = node if o >= top[s] else -1
                settled[s] = 0
                fresh_head[s] = fresh_tail[s] = node
                fresh_n[s] = 1
                answer = 1
            elif t >= times[tail[s]]:  # in order: the usual case
                nxt[tail[s]] = node
                tail[s] = node
                size[s] += 1
                _fresh(s, node, fresh_head, fresh_tail, fresh_n, later)
                if lo[s] >= 0:
                    _count(tally, s, g, nd)
                if fast:
                    tie[s] = node
                elif o == top[s] and tie[s] >= 0:
                    tied_up = True
                else:
                    tie[s] = -1
            else:  # after every event at or before its time
                fast = False
                tie[s] = -1
                if t < times[head[s]]:
                    nxt[node] = head[s]
                    head[s] = node
                else:
                    at = head[s]
                    passed = at == lo[s]
                    while nxt[at] >= 0 and times[nxt[at]] <= t:
                        at = nxt[at]
                        if at == lo[s]:
                            passed = True
                    nxt[node] = nxt[at]
                    nxt[at] = node
                    if passed:  # at or after the first event counted: counted too
                        _count(tally, s, g, nd)
                if nxt[node] == lo[s] and lo[s] >= 0:
                    # Just before the first counted: counted from it on, so that every
                    # event before the first counted is before every window to come.
                    lo[s] = node
                    _count(tally, s, g, nd)
                size[s] += 1
                _fresh(s, node, fresh_head, fresh_tail, fresh_n, later)
            if o > top[s]:
                top[s] = o
            edge = t - length
            if answer < 0 and (fast or tied_up):
                if lo[s] >= 0:
                    # Counted: every event before the first counted is before this
                    # window too (an earlier record's, of an earlier or equal time),
                    # so the window's start moves on from there.
                    at = lo[s]
                    while times[at] <= edge:
                        _uncount(tally, s, payers[at], nd)
                        at = nxt[at]
                    lo[s] = at
                    answer = nd[s]
                else:
                    # The window's first event, and the events before it.
                    at = head[s]
                    before = 0
                    while times[at] <= edge:
                        at = nxt[at]
                        before += 1
                    if size[s] - before >= counted_from:  # from now on, counted
                        lo[s] = at
                        while at >= 0:
                            _count(tally, s, payers[at], nd)
                            at = nxt[at]
                        answer = nd[s]
                    elif fast:
                        mark = _next_stamp(stamp, marks)
                        answer = 0
                        while at >= 0:
                            p = payers[at]
                            if marks[p] != mark:
                                marks[p] = mark
                                answer += 1
                            at = nxt[at]
                if tied_up and answer >= 0:
                    answer = _tied_alone(s, g, tie[s], edge, answer, payers, times, nxt,
                                         tied, tally)
            if answer < 0:
                # Its window's events of a lower order (all, without orders), and itself.
                mark = _next_stamp(stamp, marks)
                marks[g] = mark
                answer = 1
                at = head[s]
                while at != node:
                    p = payers[at]
                    if times[at] > edge and (not by_order or ords[at] < o) \
                            and marks[p] != mark:
                        marks[p] = mark
                        answer += 1
                    at = nxt[at]
        out[i] = answer
        if scalars[W_SWEPT] == NEVER or newest - scalars[W_SWEPT] > length + grace:
            # Drop the keys whose events have all left every possible window.
            scalars[W_SWEPT] = newest
            horizon = newest - grace - length
            for key in range(size.shape[0]):
                if size[key] > 0 and times[tail[key]] <= horizon:
                    _empty(key, head, size, lo, nd, payers, nxt, scalars, refs, zeroed,
                           released, let_go, tally)
                    held_by[key] = 0
                    counts[1] -= 1
                    _mark(key, flags, changed, counts)
                    counts[2] = 1  # Python frees the slots no store holds
    return DONE, n


@njit(cache=True, nogil=True)
def gather_events(slots, head, size, times, ords, payers, nxt,  # type: ignore[no-untyped-def]
                  out_times, out_orders, out_payers, ends):
    """Every event of ``slots`` (-1: none), oldest first, one after the other; where
    each slot's end in ``ends``."""
    k = 0
    for j in range(slots.shape[0]):
        s = slots[j]
        if s >= 0:
            at = head[s]
            for _ in range(size[s]):
                out_times[k] = times[at]
                out_orders[k] = ords[at]
                out_payers[k] = payers[at]
                k += 1
                at = nxt[at]
        ends[j] = k


@njit(cache=True, nogil=True)
def refresh(slots, head, size, nxt, fresh_head, fresh_tail, fresh_n,  # type: ignore[no-untyped-def]
            later):
    """Every event of each of ``slots`` born since its settled record, that is, none
    settled: its events born since, in the order of the list (which, among events of
    one time, is that of their births)."""
    for j in range(slots.shape[0]):
        s = slots[j]
        fresh_n[s] = 0
        at = head[s]
        for _ in range(size[s]):
            later[at] = -1
            _fresh(s, at, fresh_head, fresh_tail, fresh_n, later)
            at = nxt[at]


PLAIN, SINCE, SETTLED = 0, 1, 2  # what ``encode_parts`` writes of a slot


@njit(cache=True, nogil=True)
def encode_parts(slots, modes, since, head, size, times, ords,  # type: ignore[no-untyped-def]
                 payers, nxt, fresh_head, fresh_n, later, pool, name_at, name_len, buf,
                 ends):
    """Each slot's part of the changelog, one after the other in ``buf`` (where each
    ends in ``ends``; nothing for a slot of -1), the bytes msgspec writes for the
    same lists: ``PLAIN``, its whole state, ``[times, payers]``, or ``[times, payers,
    orders]`` where an event's order is not its time; ``SETTLED``, ``[times, payers,
    orders, since]`` of every event (a settled record); ``SINCE``, ``[times, payers, orders, oldest,
    since]`` of the events born since the settled record ``since`` names, in the
    order of their births (a walk of those alone), ``oldest`` the time of the slot's
    oldest event."""
    k = 0
    for j in range(slots.shape[0]):
        s = slots[j]
        if s < 0:
            ends[j] = k
            continue
        mode = modes[j]
        if mode == PLAIN:
            n = size[s]
            own = False
            at = head[s]
            for _ in range(n):
                if ords[at] != times[at]:
                    own = True
                at = nxt[at]
            buf[k] = 0x93 if own else 0x92
            k = put_linked(buf, k + 1, head[s], n, times, nxt)
            k = put_array(buf, k, n)
            at = head[s]
            for _ in range(n):
                k = put_name(buf, k, payers[at], pool, name_at, name_len)
                at = nxt[at]
            if own:
                k = put_linked(buf, k, head[s], n, ords, nxt)
            ends[j] = k
            continue
        if mode == SINCE:
            first, n, links = fresh_head[s], fresh_n[s], later
            buf[k] = 0x95
        else:
            first, n, links = head[s], size[s], nxt
            buf[k] = 0x94
        k = put_linked(buf, k + 1, first, n, times, links)
        k = put_array(buf, k, n)
        at = first
        for _ in range(n):
            k = put_name(buf, k, payers[at], pool, name_at, name_len)
            at = links[at]
        k = put_linked(buf, k, first, n, ords, links)
        if mode == SINCE:
            k = put_int(buf, k, times[head[s]])
        k = put_int(buf, k, since[j])
        ends[j] = k


def new_tally() -> Any:
    """A tally: ``slot << SHIFT | payer`` to how many of the slot's events it paid."""
    from numba import types  # after ``kernels``: see there
    from numba.typed import Dict

    return Dict.empty(key_type=types.int64, value_type=types.int64)


class DistinctColumns(EventPool):
    """``windows.KeyedEvents`` in columns (``EventPool``), for fan-in's windows
    (``distinct_batch``). See the module."""

    _ints = ("head", "tail", "size", "lo", "nd", "top", "tie", "settled", "fresh_head",
             "fresh_tail", "fresh_n", "written_n", "recorded")
    # Pool nodes, and counts of events and payers: four bytes (three windows of a
    # million targets' slots each).
    _narrow = {"head": SLOT, "tail": SLOT, "size": SLOT, "lo": SLOT, "nd": SLOT,
               "tie": SLOT, "fresh_head": SLOT, "fresh_tail": SLOT, "fresh_n": SLOT,
               "written_n": SLOT, "recorded": np.uint8}
    _pool = ("times", "ords", "tags", "nxt", "born", "later")
    counted_from = COUNTED_FROM
    settle_from = SETTLE_FROM

    lo: np.ndarray  # the first event counted in the tally (-1: none)
    nd: np.ndarray  # distinct payers in the tally
    top: np.ndarray  # at least the highest order the key holds
    tie: np.ndarray  # the first of its events of that order, the last of its list (-1)
    settled: np.ndarray  # the birth its settled record's events precede (0: none)
    fresh_head: np.ndarray  # the first of its events born since (``later`` links them)
    fresh_tail: np.ndarray
    fresh_n: np.ndarray
    written_n: np.ndarray  # of those, how many its record last held (-1: all, whole)
    recorded: np.ndarray  # 1: the key in the slot may have a settled record

    def __init__(self, slots: Slots, window: SlidingWindow, payers: PayerTable) -> None:
        super().__init__(slots, window)
        self.payers = payers
        # Beside the times and the next node: each event's order and payer's number.
        self.ords = np.zeros(1024, INT)
        self.tags = np.zeros(1024, np.int32)
        self.tally = new_tally()
        # Each event's birth number, the next one to give (from 1: 0 is a restored
        # event's, older than any settled record), and the keys with a settled record
        # in the changelog (``changelog_at``).
        self.born = np.zeros(1024, INT)
        self.later = np.zeros(1024, SLOT)
        self.births = np.ones(1, INT)
        self.settled_names: set[str] = set()
        self._settled_out: list[tuple[str, bytes | None]] = []
        self._settled_in: dict[str, Any] = {}  # settled records read back, by key

    def distinct_batch(self, slots: np.ndarray, ts: np.ndarray, orders: np.ndarray | None,
                       numbers: np.ndarray) -> np.ndarray:
        """``KeyedEvents.distinct`` of every record in turn (``numbers``: each payer's
        in ``payers``; ``orders`` None: each record's order is its time); -1 for a late
        record, where ``distinct`` says None. The payers it lets go are freed when the
        table settles (``PayerTable.settle``), once every window has had the batch."""
        out = np.zeros(len(slots), INT)
        window, table = self.window, self.payers
        by_order = orders is not None
        self._run_growing(lambda start: distinct_run(
            start, slots, ts, ts if orders is None else orders, by_order, numbers,
            window.length_ms, window.grace_ms, self.counted_from, self.head, self.tail,
            self.size, self.lo, self.nd, self.top, self.tie, self.settled,
            self.fresh_head, self.fresh_tail, self.fresh_n, self.held_by, self.times,
            self.ords, self.tags, self.nxt, self.born, self.later, self.births,
            self.scalars, self.flags, self.changed_slots,
            self.counts, table.refs, table.zeroed, table.released, table.let_go,
            table.marks, table.tied, table.stamp, self.tally, out))
        return out

    def state_of(self, key: str) -> Any:
        if key == "":
            return self.newest
        [state] = self.states_of([key])
        return state

    def states_of(self, keys: list[str]) -> list[Any]:
        slots = self._held_slots(keys)
        held = slots >= 0
        total = int(self.size[slots[held]].sum())
        times, orders, payers = (np.empty(total, INT) for _ in range(3))
        ends = np.empty(len(slots), INT)
        gather_events(slots, self.head, self.size, self.times, self.ords, self.tags, self.nxt,
                      times, orders, payers, ends)
        # Whether each key holds an event whose order is not its time: those write
        # their orders too.
        other = np.zeros(total + 1, INT)
        np.cumsum(times != orders, out=other[1:])
        own = other[ends] - other[np.concatenate(([0], ends[:-1]))] > 0
        ordered = own.tolist()
        names = self.payers.names
        all_times = times.tolist()
        all_orders = orders.tolist() if own.any() else all_times  # the latter unread
        all_payers = list(map(names.__getitem__, payers.tolist()))
        states: list[Any] = []
        start = 0
        for key, end, slot, own in zip(keys, ends.tolist(), slots.tolist(), ordered,
                                       strict=True):
            if slot < 0:
                states.append(self.newest if key == "" else None)
            elif own:
                states.append([all_times[start:end], all_payers[start:end],
                               all_orders[start:end]])
            else:
                states.append([all_times[start:end], all_payers[start:end]])
            start = end
        return states

    def encoded_at(self, slots: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        slots = self.held_at(slots)
        return self._parts(slots, np.full(len(slots), PLAIN, INT), np.zeros(len(slots), INT))

    def changelog_at(self, slots: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``encoded_at`` as the changelog takes it: a key of fewer than
        ``settle_from`` events as its whole state; a bigger one as the events born
        since its settled record (``SINCE``), that record written anew
        (``take_settled``) once those outgrow √(2nr) (n events, r a change), so
        that a change writes some √(2nr) events, not n. A key back to a small window
        has its settled record deleted. See docs/architecture.md, "Where state
        lives"."""
        slots = self.held_at(slots)
        count = len(slots)
        modes = np.full(count, PLAIN, INT)
        since = np.zeros(count, INT)
        held = slots >= 0
        sizes = np.zeros(count, INT)
        sizes[held] = self.size[slots[held]]
        names = self.slots.names
        wide = sizes >= self.settle_from
        # A big window's first write is whole all the same: a key written once (a
        # short run, a quiet target) is not worth a second record; the next settles.
        first = wide & (self.settled[np.maximum(slots, 0)] == 0) & \
            (self.written_n[np.maximum(slots, 0)] != -1)
        self.written_n[slots[first]] = -1
        plain = np.flatnonzero(held & (~wide | first))
        big = np.flatnonzero(wide & ~first)
        if len(plain):
            plain_slots = slots[plain]
            back = plain_slots[self.recorded[plain_slots] != 0]
            if len(back):  # whole again: small again, or since it started anew
                self.recorded[back] = 0
                unsettled = back[self.settled[back] != 0]
                self.settled[unsettled] = 0  # none settled: every event born since
                refresh(unsettled, self.head, self.size, self.nxt, self.fresh_head,
                        self.fresh_tail, self.fresh_n, self.later)
            for slot in back.tolist():
                name = names[slot]
                if name in self.settled_names:
                    self.settled_names.discard(name)
                    self._settled_out.append((name, None))
        if len(big):
            big_slots = slots[big]
            since[big] = self.settled[big_slots]
            fresh = self.fresh_n[big_slots].astype(INT)
            # Written anew every k changes, a settled record costs n / k a change, and
            # the events since about r k / 2 (r: those a change adds): least at
            # k = √(2n / r), where the events since reach √(2nr).
            added = np.maximum(fresh - self.written_n[big_slots], 1)
            again = (since[big] == 0) | (fresh * fresh > 2 * sizes[big] * added)
            self.written_n[big_slots] = np.where(again, 0, fresh)
            if again.any():
                anew = big[again]
                anew_slots = slots[anew]
                # Every event held now was born before the next birth number.
                self.settled[anew_slots] = since[anew] = int(self.births[0])
                self.recorded[anew_slots] = 1
                self.fresh_n[anew_slots] = 0
                self.fresh_head[anew_slots] = self.fresh_tail[anew_slots] = -1
                modes_anew = np.full(len(anew), SETTLED, INT)
                buf, ends = self._parts(slots[anew], modes_anew, since[anew])
                raw, start = buf.tobytes(), 0
                for slot, end in zip(slots[anew].tolist(), ends.tolist(), strict=True):
                    name = names[slot]
                    self.settled_names.add(name)
                    self._settled_out.append((name, raw[start:end]))
                    start = end
            modes[big] = SINCE
        return self._parts(slots, modes, since)

    def _parts(self, slots: np.ndarray, modes: np.ndarray, since: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray]:
        table = self.payers
        events = int(self.size[slots[slots >= 0]].sum())
        # At most: a key's array of five, its three arrays' headers and two numbers; an
        # event's time, order and name.
        room = (1 + 3 * HEADER_BYTES + 2 * NUMBER_BYTES) * len(slots) \
            + events * (2 * NUMBER_BYTES + HEADER_BYTES + table.index.longest)
        names = table.index
        return written(encode_parts, room, slots, modes, since, self.head, self.size,
                       self.times, self.ords, self.tags, self.nxt, self.fresh_head,
                       self.fresh_n, self.later, names.pool, names.at, names.length)

    def take_settled(self) -> list[tuple[str, bytes | None]]:
        """The settled records ``changelog_at`` made since the last call, ``(key,
        value)``, None deleting one; they go before the keys' own records."""
        out, self._settled_out = self._settled_out, []
        return out

    def restore_settled(self, key: str, state: Any) -> None:
        """A settled record read back (None: deleted); kept until the restore ends,
        for the key's record that follows it (``_apply``)."""
        if state is None:
            self._settled_in.pop(key, None)
        else:  # kept small: numbers in arrays, each name the one copy the table holds
            times, payers, orders, _ = state
            self._settled_in[key] = (np.array(times, INT), list(map(intern, payers)),
                                     np.array(orders, INT))

    def end_restore(self) -> None:
        self.flush()
        self._settled_in.clear()

    def _restored(self, states: list[Any]) -> list[Any]:
        # A ``SINCE`` state holds its window even without an event since.
        return [state if state is not None and len(state) == 5 else
                None if state is None or not state[0] else state for state in states]

    def _whole(self, slots: np.ndarray, states: list[Any]) -> list[Any]:
        """Restored states, each a key's whole window: a ``SINCE`` state merged with
        its settled record's events at or after its oldest time (the window drops its
        oldest first, so those are the ones it still held), which precede the events
        since of the same time, as they were inserted before them."""
        out = []
        names = self.slots.names
        for slot, state in zip(slots.tolist(), states, strict=True):
            if len(state) != 5:
                out.append(state)
                continue
            name = names[slot]
            self.settled_names.add(name)
            times, payers, orders, oldest, _ = state
            settled = self._settled_in.get(name)
            if settled is not None:
                kept = np.flatnonzero(settled[0] >= oldest).tolist()
                times = settled[0][kept].tolist() + times
                payers = [settled[1][i] for i in kept] + payers
                orders = settled[2][kept].tolist() + orders
                order = np.argsort(np.array(times, INT), kind="stable").tolist()
                times = [times[i] for i in order]
                payers = [payers[i] for i in order]
                orders = [orders[i] for i in order]
            out.append([times, payers, orders])
        return out

    def _forget(self, slots: np.ndarray) -> None:
        self._empty(slots)
        self._drop(slots)

    def _empty(self, slots: np.ndarray) -> None:
        table = self.payers
        empty_slots(slots, self.head, self.size, self.lo, self.nd, self.tags, self.nxt,
                    self.scalars, table.refs, table.zeroed, table.released, table.let_go,
                    self.tally)
        table.settle()

    def _apply(self, slots: np.ndarray, states: list[Any]) -> None:
        self._empty(slots)  # what a key held before
        states = self._whole(slots, states)
        nodes = self._place(slots, states)
        self.born[nodes] = 0  # before any settled record this store writes
        self.settled[slots] = 0  # written whole at its next change: none settled
        self.written_n[slots] = 0
        refresh(slots, self.head, self.size, self.nxt, self.fresh_head, self.fresh_tail,
                self.fresh_n, self.later)
        names, settled = self.slots.names, self.settled_names
        self.recorded[slots] = [names[slot] in settled for slot in slots.tolist()]
        total = len(nodes)
        events = chain.from_iterable
        # Written without orders: each event's order is its time.
        self.ords[nodes] = np.fromiter(events(state[2] if len(state) > 2 else state[0]
                                              for state in states), INT, total)
        numbers = self.payers.numbers(list(events(state[1] for state in states)), shared=True)
        # Each payer's events counted once (a chunk's few, not a bincount of the table).
        held, times_held = np.unique(numbers, return_counts=True)
        self.payers.refs[held] += times_held.astype(np.int32)
        self.tags[nodes] = numbers
        self.lo[slots] = -1
        self.nd[slots] = 0
        self.tie[slots] = -1  # not known: its ties are looked at, as out of order
        starts = self.head[slots] - (nodes[0] if total else 0)
        self.top[slots] = np.maximum.reduceat(self.ords[nodes], starts) if total else 0

def warm() -> None:
    """Compile (or load from the cache) the kernels, as ``kernels.warm`` does."""
    table = PayerTable(4)
    slots = Slots(4)
    store = DistinctColumns(slots, SlidingWindow(60_000), table)
    numbers = table.numbers(["a"])
    for orders in (None, np.zeros(1, INT)):
        store.distinct_batch(slots.of(["k"]), np.zeros(1, INT), orders, numbers)
    store.states_of(["k"])
    store.encoded_states_of(["k"])  # else the first commit compiles it, mid-transaction
    store._empty(np.array([0], INT))
