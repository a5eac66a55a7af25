"""The changelog states the kernels write straight from the columns are, byte for byte,
what msgspec writes for the same lists: for any number, any name, any store's state,
and for a rule set's whole record of a key."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from services.detector import msgpack_columns
from services.detector.columns import PayeeTable
from services.detector.distinct_columns import DistinctColumns
from services.detector.msgpack_columns import HEADER_BYTES, INTEGER, REAL, REAL_OR_NIL, put_name
from services.detector.rules import STORE_CODES, SourceRules, TargetRules
from services.detector.store import decode_state, encode_state

MINUTE = 60_000

# Every width of MessagePack's integers, on both sides of each bound.
edges = [0, 127, 128, 255, 256, 65_535, 65_536, 2**32 - 1, 2**32, 2**63 - 1,
         -1, -32, -33, -128, -129, -32_768, -32_769, -2**31, -2**31 - 1, -2**63]
integers = st.one_of(st.sampled_from(edges), st.integers(-2**63, 2**63 - 1))
reals = st.floats(allow_nan=True, allow_infinity=True)
places = st.lists(st.sampled_from([INTEGER, REAL, REAL_OR_NIL]), min_size=1, max_size=15)


@settings(max_examples=60, deadline=None)
@given(places.flatmap(lambda kinds: st.tuples(st.just(kinds), st.lists(st.tuples(
    st.booleans(), st.tuples(*(integers if kind == INTEGER else reals for kind in kinds))),
    min_size=1, max_size=8))))
def test_rows_are_msgspecs_bytes_of_the_same_lists(case: tuple[list[int], Any]) -> None:
    kinds, rows = case
    held = np.array([holds for holds, _ in rows], np.bool_)
    columns = [np.array([values[i] for _, values in rows],
                        np.int64 if kind == INTEGER else np.float64)
               for i, kind in enumerate(kinds)]
    buf, ends = msgpack_columns.rows(held, np.array(kinds, np.uint8), columns)
    raw, start = buf.tobytes(), 0
    for (holds, values), end in zip(rows, ends.tolist(), strict=True):
        expected = [None if kind == REAL_OR_NIL and math.isnan(value) else value
                    for kind, value in zip(kinds, values, strict=True)]
        assert raw[start:end] == (encode_state(expected) if holds else b"")
        start = end


def busy_rules(names: list[str], days: int) -> tuple[SourceRules, TargetRules]:
    """Rules with something in every store, among accounts of ``names``: tiny payments,
    bursts, fan-in, a payee list past 15 entries, times far and near."""
    source, target = SourceRules(novelty=True), TargetRules(novelty=True)
    ts = days * 86_400_000
    for i in range(120):
        payer, payee = names[i % 3], names[(i * 7) % len(names)]
        ts += 0 if i % 9 == 0 else MINUTE // 8
        features: dict[str, float] = {}
        amount = 5.0 if i % 3 else 120.0 + i
        source.evaluate(payer, payee, amount, ts, [], features)
        target.evaluate(payee, payer, ts, [], features, ts - i % 2)
    return source, target


account_names = st.lists(st.one_of(
    st.text(min_size=1, max_size=40), st.text(min_size=200, max_size=300)),
    min_size=20, max_size=30, unique=True)


@settings(max_examples=15, deadline=None)
@given(account_names, st.integers(0, 30_000))
def test_every_stores_states_and_every_record_are_msgspecs_bytes(
        names: list[str], days: int) -> None:
    for rules in busy_rules(names, days):
        for store in rules.stores.values():  # each window whole in its key's record
            if isinstance(store, DistinctColumns):  # (settled ones: test_settled_changelog)
                store.settle_from = 1 << 30
        keys = [*names, "", "nobody"]
        for store in rules.stores.values():
            if hasattr(store, "encoded_at"):
                assert store.encoded_states_of(keys) == [
                    None if state is None else encode_state(state)
                    for state in store.states_of(keys)]
        written = dict(rules.encoded_changes())
        held = 0
        for key in names:
            states = {STORE_CODES[name]: store.state_of(key)
                      for name, store in rules.stores.items()}
            value = written.get(f"/{key}".encode(), b"none written")
            if all(state is None for state in states.values()):
                assert value in (None, b"none written")  # a key no store ever held
            else:
                assert value == encode_state(states)
                assert decode_state(value) == states
                held += 1
        assert held >= 3  # the payers, at least


def test_a_window_of_more_events_than_a_short_header_counts_is_msgspecs_bytes() -> None:
    """A shop paid 70,000 times within fan-in's windows: arrays past 65,535 entries."""
    count = 70_000
    payers = [f"P{i}" for i in range(count)]
    times = [MINUTE + i // 100 for i in range(count)]
    source, target = SourceRules(novelty=True), TargetRules(novelty=True)
    judged = source.judge_columns(payers, ["SHOP"] * count, [50.0] * count, times)
    target.judge_payers(["SHOP"] * count, payers, times, judged.figures)
    windows = [store for store in target.stores.values() if isinstance(store, DistinctColumns)
               and (state := store.state_of("SHOP")) is not None and len(state[0]) >= 65_536]
    assert windows
    for store in windows:
        assert store.encoded_states_of(["SHOP"]) == [encode_state(store.state_of("SHOP"))]
    states = {STORE_CODES[name]: store.state_of("SHOP")
              for name, store in target.stores.items()}
    assert dict(target.encoded_changes())[b"/SHOP"] == encode_state(states)
    # Written again, each such window is a settled record of its own, and the key's
    # record holds none of its events yet.
    target.judge_payers(["SHOP"], ["P0"], [times[-1]], {
        name: column[:1] for name, column in judged.figures.items()})
    written = dict(target.encoded_changes())
    record = decode_state(written[b"/SHOP"])
    for name, store in target.stores.items():
        if store not in windows:
            continue
        times_held, payers, *orders = store.state_of("SHOP")
        since = decode_state(written[f"{name}+/SHOP".encode()])[3]
        assert written[f"{name}+/SHOP".encode()] == encode_state(
            [times_held, payers, orders[0] if orders else times_held, since])
        assert record[STORE_CODES[name]] == [[], [], [], times_held[0], since]


names_lists = st.lists(st.one_of(
    st.text(max_size=40), st.text(min_size=250, max_size=300),
    st.text(alphabet="abc", min_size=30, max_size=34)), max_size=40)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(names_lists, st.lists(st.integers(0, 200), max_size=30)),
                min_size=1, max_size=12))
def test_the_names_pool_keeps_every_held_names_bytes_as_names_come_and_go(
        steps: list[tuple[list[str], list[int]]]) -> None:
    """Names taken and let go in any order: the pool, made anew whenever freed names'
    bytes fill it, holds each held name's bytes where its number says, and the
    changelog's kernels write each as msgspec writes it."""
    table = PayeeTable()
    for names, freeing in steps:
        table.refs[table.numbers(names)] += 1
        held = [number for number, name in enumerate(table.names) if name is not None]
        gone = sorted({held[at % len(held)] for at in freeing} if held else set())
        table.refs[gone] = 0
        table.release(gone)
        index = table.index
        for number, name in enumerate(table.names):
            if name is not None:
                buf = np.zeros(HEADER_BYTES + index.longest, np.uint8)
                end = put_name(buf, 0, number, index.pool, index.at, index.length)
                assert buf[:end].tobytes() == encode_state(name)
