"""Counterparty novelty in columns (``NoveltyColumns``) gives, batch by batch, exactly
what ``CounterpartyNovelty`` gives one record at a time: the same figures to the bit,
changelog states, length and forgotten sources, for any stream, any cut into batches,
any cap and across a restore; and its payee table holds only what the rows hold."""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from services.detector.columns import NoveltyColumns, Slots
from services.detector.rules import CounterpartyNovelty, RuleSettings, SourceRules

MINUTE = 60_000
SOURCES = 6

# Six sources, each paying a few usual payees again and again, or one new payee after
# another (more than a row holds); from the same instant to hours apart, a few out of
# order.
steps = st.one_of(st.just(0), st.integers(1, 3_000), st.integers(3_000, 300_000),
                  st.integers(300_000, 3 * 3_600_000), st.integers(-60_000, -1))
payees = st.one_of(st.integers(0, 3), st.integers(0, 40))
payments = st.lists(st.tuples(st.integers(0, SOURCES - 1), payees, steps), min_size=1,
                    max_size=200)
cuts = st.lists(st.integers(1, 50), min_size=1, max_size=20)


def columns(cap: int, memory: int) -> NoveltyColumns:
    store = NoveltyColumns(Slots(capacity=2), memory=memory, max_accounts=cap)
    store.restore_chunk = 4  # a restore taken in chunk after chunk
    return store


def judge(store: NoveltyColumns, batch: list[tuple[str, str, int]]) -> list[Any]:
    """A batch as ``SourceRules`` judges it: slots, the kernel, then the slots settled."""
    slots = store.slots.of([source for source, _, _ in batch])
    novel, lately, streak = store.judge_batch(
        slots, [target for _, target, _ in batch], np.array([t for _, _, t in batch], np.int64))
    store.slots.settle()
    return list(zip(novel.tolist(), lately.tolist(), streak.tolist(), strict=True))


def held_payees(store: NoveltyColumns, keys: list[str]) -> None:
    """The payee table holds exactly the payees the rows hold, each counted once a row."""
    table = store.payees
    names: dict[str, int] = {}
    for state in store.states_of(keys):
        for name in [] if state is None else state[0]:
            names[name] = names.get(name, 0) + 1
    assert set(table.index) == set(names)
    assert {name: int(table.refs[number]) for name, number in table.index.items()} == names
    assert len(table.names) - len(table.free) == len(table.index)
    assert not table.refs[table.free].any()


@settings(max_examples=150, deadline=None)
@given(payments, cuts, st.sampled_from([1, 2, 4, 200_000]), st.sampled_from([2, 16]),
       st.integers(0, 220))
def test_a_batch_judges_as_the_reference_does_record_by_record(
        stream: list[tuple[int, int, int]], cuts: list[int], cap: int, memory: int,
        restart_at: int) -> None:
    reference = CounterpartyNovelty(memory=memory, max_accounts=cap)
    store = columns(cap, memory)
    records, ts = [], 10 * MINUTE
    for source, payee, step in stream:
        ts = max(ts + step, 0)
        records.append((f"S{source}", f"P{payee}", ts))
    keys = [f"S{i}" for i in range(SOURCES)]
    got, expected = [], []
    start, cut = 0, 0
    while start < len(records):
        size = cuts[cut % len(cuts)]
        if start <= restart_at < start + size:
            # An instance takes the partition over from the changelog: both read it,
            # so both hold the sources in its order (what the cap forgets next).
            log = list(store.changes())
            assert sorted(log) == sorted(reference.changes())
            store, reference = columns(cap, memory), CounterpartyNovelty(memory, 120_000, cap)
            for key, state in log:
                store.restore(key, state)
                reference.restore(key, state)
        batch = records[start:start + size]
        got += judge(store, batch)
        expected += [reference.judge(*record) for record in batch]
        start += len(batch)
        cut += 1
    assert got == expected
    assert [store.state_of(key) for key in keys] == [reference.state_of(key) for key in keys]
    assert store.states_of(keys) == [reference.state_of(key) for key in keys]
    assert len(store) == len(reference)
    held_payees(store, keys)
    assert sorted(store.changes()) == sorted(reference.changes())


old_states = st.tuples(st.lists(st.sampled_from(["P0", "P1", "P2", "P3"]), max_size=3,
                                unique=True),
                       st.floats(0, 9), st.integers(0, 10**6)).map(list)
states = st.one_of(st.none(), old_states, st.tuples(old_states, st.integers(0, 9)).map(
    lambda s: [*s[0], s[1]]))


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["A", "B", "C"]), states), max_size=25),
       st.lists(st.tuples(st.sampled_from(["A", "B", "C"]), st.sampled_from(["P0", "P4"])),
                max_size=6))
def test_a_restore_takes_the_newest_state_of_each_key_older_ones_too(
        log: list[tuple[str, Any]], then: list[tuple[str, str]]) -> None:
    store, reference = columns(200_000, 3), CounterpartyNovelty(memory=3)
    for key, state in log:
        store.restore(key, state)
        reference.restore(key, state)
    assert [store.state_of(key) for key in "ABC"] == [reference.state_of(key) for key in "ABC"]
    assert len(store) == len(reference)
    batch = [(source, target, 10**6 + i) for i, (source, target) in enumerate(then)]
    assert judge(store, batch) == [reference.judge(*record) for record in batch]
    assert store.states_of(list("ABC")) == [reference.state_of(key) for key in "ABC"]
    held_payees(store, list("ABC"))


def test_the_payee_table_stays_as_small_as_what_the_rows_hold() -> None:
    store = columns(cap=10, memory=4)
    for day in range(50):  # ten sources, each paying a new payee every time
        judge(store, [(f"S{i}", f"P{day}-{i}", day * MINUTE) for i in range(10)])
    assert len(store.payees) == 40
    assert len(store.payees.names) <= 50  # numbers given back are given out again


def test_the_first_stage_gives_the_references_novelty_figures() -> None:
    rules = SourceRules(RuleSettings(), novelty=True)
    reference = CounterpartyNovelty()
    records = [(f"S{i % 7}", f"T{i % 11}", 1_000 * i) for i in range(200)]
    got = rules.evaluate_batch([r[0] for r in records], [r[1] for r in records],
                               [10.0] * len(records), [r[2] for r in records])
    for (_, figures), record in zip(got, records, strict=True):
        novel, lately, streak = reference.judge(*record)
        assert (figures["novelty"], figures["new_payees"], figures["new_streak"]) == (
            novel, round(lately, 2), streak)
    keys = [f"S{i}" for i in range(7)]
    assert rules.stores["novelty"].states_of(keys) == [reference.state_of(k) for k in keys]
