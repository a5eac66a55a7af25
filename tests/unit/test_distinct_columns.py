"""Fan-in's windows in columns (``DistinctColumns``) give, batch by batch, exactly what
``KeyedEvents.distinct`` gives one record at a time: the same answers, late counts,
changed keys and changelog states, for any stream (out of order, late, orders other
than times, targets paid often enough to keep their payers counted), any cut into
batches, and across a restore; and the payers' table holds only what the windows hold."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from services.detector.columns import Slots
from services.detector.distinct_columns import DistinctColumns, PayerTable
from services.detector.store import decode_state, encode_state
from services.detector.windows import KeyedEvents, SlidingWindow

TARGETS = 4

# Four targets, paid by a few payers again and again or by many (past the size from
# which a window keeps its payers counted), from the same instant to past the window,
# a few out of order and a few later than the grace; each record's order its time, or
# a little ahead or behind it (an upstream partition ahead of or behind the others).
steps = st.one_of(st.just(0), st.integers(1, 2_000), st.integers(2_000, 40_000),
                  st.integers(40_000, 200_000), st.integers(-15_000, -1))
payers = st.one_of(st.integers(0, 3), st.integers(0, 60))
lags = st.one_of(st.just(0), st.integers(-8_000, 8_000))
payments = st.lists(st.tuples(st.integers(0, TARGETS - 1), payers, steps, lags),
                     min_size=1, max_size=250)
cuts = st.lists(st.integers(1, 60), min_size=1, max_size=20)
WINDOW = SlidingWindow(60_000, 5_000)
KEYS = [f"T{i}" for i in range(TARGETS)]


def fresh(window: SlidingWindow = WINDOW) -> tuple[DistinctColumns, DistinctColumns]:
    """Two windows over one set of slots and one payers' table, as fan-in has them."""
    slots, table = Slots(capacity=2), PayerTable(capacity=2)
    first, second = DistinctColumns(slots, window, table), DistinctColumns(slots, window, table)
    first.restore_chunk = second.restore_chunk = 3  # a restore in chunk after chunk
    first.counted_from = second.counted_from = 3  # tallies on small windows too
    return first, second


def run(stores: tuple[DistinctColumns, ...], batch: list[tuple[str, str, int, int]],
        ordered: bool, offset: int = 0) -> list[int]:
    """A batch as fan-in runs it: the slots and payers' numbers, each window in turn
    (the second on every other record of the stream: ``offset``, the batch's first
    record's place in it), the table settled, then the slots."""
    first = stores[0]
    slots = first.slots.of([target for target, _, _, _ in batch])
    numbers = first.payers.numbers([payer for _, payer, _, _ in batch])
    ts = np.array([t for _, _, t, _ in batch], np.int64)
    orders = np.array([o for _, _, _, o in batch], np.int64) if ordered else None
    out = first.distinct_batch(slots, ts, orders, numbers).tolist()
    every_other = (np.arange(len(batch)) + offset) % 2 == 0
    stores[1].distinct_batch(slots[every_other], ts[every_other],
                             None if orders is None else orders[every_other],
                             numbers[every_other])
    first.payers.settle()
    unheld = numbers[first.payers.refs[numbers] == 0]
    first.payers.release(np.unique(unheld).tolist())
    first.slots.settle()
    return out


def the_table_holds_what_the_windows_hold(stores: tuple[DistinctColumns, ...]) -> None:
    held: dict[str, int] = {}
    for store in stores:
        for state in store.states_of(KEYS):
            for name in [] if state is None else state[1]:
                held[name] = held.get(name, 0) + 1
    table = stores[0].payers
    assert {name: int(table.refs[number]) for name, number in table.index.items()} == held
    assert len(table.names) - len(table.free) == len(table.index)
    assert not table.refs[table.free].any()


# Busy targets: payments of the same instant, or orders that tie (an upstream partition's
# time held while its records come), now and then a jump along the window or back.
busy = st.lists(st.tuples(st.integers(0, 1), payers,
                          st.one_of(st.just(0), st.integers(1, 3), st.integers(-3, -1),
                                    st.integers(20_000, 70_000)),
                          st.one_of(st.just(0), st.integers(-2, 2))),
                min_size=1, max_size=250)


@settings(max_examples=200, deadline=None)
@given(payments, cuts, st.booleans(), st.integers(0, 250))
def test_a_batch_counts_as_the_reference_does_record_by_record(
        stream: list[tuple[int, int, int, int]], sizes: list[int], ordered: bool,
        restart_at: int) -> None:
    counts_as_the_reference(stream, sizes, ordered, restart_at)


@settings(max_examples=200, deadline=None)
@given(busy, cuts, st.integers(0, 250))
def test_payments_of_one_order_count_as_the_reference_counts_them(
        stream: list[tuple[int, int, int, int]], sizes: list[int], restart_at: int) -> None:
    """Ties (the same order) count only the payers of a lower order, and themselves,
    however many a target's window holds."""
    counts_as_the_reference(stream, sizes, True, restart_at)


def counts_as_the_reference(stream: list[tuple[int, int, int, int]], sizes: list[int],
                            ordered: bool, restart_at: int) -> None:
    records, ts = [], 600_000
    for target, payer, step, lag in stream:
        ts = max(ts + step, 0)
        records.append((f"T{target}", f"P{payer}", ts, ts + lag if ordered else None))
    reference = references()
    stores = fresh()
    expected: list[int] = []
    got: list[int] = []
    start, cut, late = 0, 0, 0
    while start < len(records):
        size = sizes[cut % len(sizes)]
        if start <= restart_at < start + size:  # both restart, from their changelogs
            late += reference[0].late
            reference = restarted_references(reference)
            stores = restarted(stores)
        batch = records[start:start + size]
        for i, (target, payer, at, order) in enumerate(batch, start):
            found = reference[0].distinct(target, at, payer, order)
            expected.append(-1 if found is None else found)
            if i % 2 == 0:  # the second window sees every other record of the stream
                reference[1].distinct(target, at, payer, order)
        got += run(stores, batch, ordered, start % 2)
        start += len(batch)
        cut += 1
    assert got == expected
    for mine, theirs in zip(stores, reference, strict=True):
        assert mine.states_of([*KEYS, ""]) == [theirs.state_of(key) for key in [*KEYS, ""]]
        assert mine.encoded_states_of([*KEYS, ""]) == [
            None if state is None else encode_state(state)
            for state in (theirs.state_of(key) for key in [*KEYS, ""])]
        # Every key the reference would write; a slot freed and taken again within a
        # batch may add its new key (its record then holds its state, as any would).
        assert mine.take_changed() >= theirs.take_changed()
        assert len(mine) == len(theirs)
    assert stores[0].late == reference[0].late  # since the restart, if any
    the_table_holds_what_the_windows_hold(stores)


def references() -> tuple[KeyedEvents, KeyedEvents]:
    reference = (KeyedEvents(WINDOW), KeyedEvents(WINDOW))
    for store in reference:
        store.counted_from = 3  # the reference's own counts, too, on small windows
    return reference


def restarted_references(stores: tuple[KeyedEvents, ...]) -> tuple[KeyedEvents, KeyedEvents]:
    restored = references()
    for store, fresh_store in zip(stores, restored, strict=True):
        for key in [*KEYS, ""]:
            state = store.state_of(key)
            if state is not None:
                fresh_store.restore(key, state)
        fresh_store.take_changed()
    return restored


def restarted(stores: tuple[DistinctColumns, ...]) -> tuple[DistinctColumns, ...]:
    """Fresh windows restored from what these hold (a new instance reads the whole
    changelog: the newest state of each key)."""
    restored = fresh()
    for store, fresh_store in zip(stores, restored, strict=True):
        for key, state in zip([*KEYS, ""], store.states_of([*KEYS, ""]), strict=True):
            if state is not None:
                fresh_store.restore(key, state)
        fresh_store.flush()
        fresh_store.take_changed()
    return restored


@settings(max_examples=60, deadline=None)
@given(payments, payments)
def test_a_restore_over_held_windows_takes_the_newest_state_of_each_key(
        held: list[tuple[int, int, int, int]], written: list[tuple[int, int, int, int]]) -> None:
    stores, reference = fresh(), KeyedEvents(WINDOW)
    ts = 600_000
    for target, payer, step, lag in held:
        ts = max(ts + step, 0)
        reference.distinct(f"T{target}", ts, f"P{payer}", ts + lag)
        run(stores, [(f"T{target}", f"P{payer}", ts, ts + lag)], ordered=True)
    other = KeyedEvents(WINDOW)
    for target, payer, step, lag in written:
        ts = max(ts + step, 0)
        other.distinct(f"T{target}", ts, f"P{payer}", ts + lag)
    for key in [*KEYS, ""]:  # what another instance wrote, over what these hold
        state = other.state_of(key)
        reference.restore(key, state)
        stores[0].restore(key, state)
    stores[0].flush()
    assert stores[0].states_of([*KEYS, ""]) == [reference.state_of(key) for key in [*KEYS, ""]]
    the_table_holds_what_the_windows_hold(stores)


def test_a_busy_target_keeps_its_payers_counted_as_its_window_moves() -> None:
    """A target paid by ninety payers, round and round, twice a second in a one-minute
    window: the answers are the reference's, from the tally."""
    stores, reference = fresh(), KeyedEvents(WINDOW)
    batch = [("T0", f"P{i % 90}", 600_000 + 500 * i, 600_000 + 500 * i)
             for i in range(2_000)]
    expected = [reference.distinct(target, at, payer, order)
                for target, payer, at, order in batch]
    got = []
    for start in range(0, len(batch), 100):
        got += run(stores, batch[start:start + 100], ordered=True)
    assert got == expected and max(got) == 90
    assert stores[0].nd[stores[0].slots.index["T0"]] == 90  # counted, not looked at
    assert stores[0].counted_from == 3 and len(stores[0].tally) == 90


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(-(2**63), 2**63 - 1), st.integers(-(2**63), 2**63 - 1),
                          st.text(max_size=300)), min_size=1, max_size=40),
       st.booleans())
def test_a_state_is_written_as_msgspec_writes_it(
        events: list[tuple[int, int, str]], ordered: bool) -> None:
    """Any time, order and name: the kernel's bytes are msgspec's for the same lists."""
    events = sorted(events)
    times = [t for t, _, _ in events]
    state = [times, [name for _, _, name in events]]
    if ordered:
        state.append([o for _, o, _ in events])
    stores = fresh()
    stores[0].restore("T0", state)
    stores[0].flush()
    [written] = stores[0].encoded_states_of(["T0"])
    expected = state if ordered and state[2] != times else state[:2]
    assert written == encode_state(expected)
    assert decode_state(written) == expected
