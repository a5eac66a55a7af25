"""Card testing in columns judges a batch as the reference judges each record in turn:
the same payees and hits, the same state in the changelog, whatever the mix of tiny and
other payments, late ones, sweeps and the cap; and each restores the other's state."""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from services.detector.card_columns import CardColumns
from services.detector.columns import Slots
from services.detector.rules import CardTesting, RuleSettings, SourceRules

PAYMENTS = st.lists(st.tuples(st.sampled_from("ABCDE"), st.sampled_from("pqrstuvw"),
                              st.sampled_from([0.5, 1.0, 2.0, 10.0, 30.0, 400.0]),
                              st.integers(0, 400_000)), max_size=60)
RULES = RuleSettings(card_test_window_s=60, card_test_payees=3)


def judged(store: CardColumns, slots: Slots, batch: list[tuple[str, str, float, int]]
           ) -> tuple[list[int], list[tuple[int, Any]]]:
    sources, targets, amounts, times = (list(column) for column in zip(*batch, strict=True)) \
        if batch else ([], [], [], [])
    found, hits = store.judge_columns(slots.of(sources), targets, np.array(amounts, float),
                                      np.array(times, np.int64))
    slots.settle()
    return found.tolist(), hits


def shifted(batches: list[list[tuple]]) -> list[list[tuple[str, str, float, int]]]:
    """In about event-time order, a few late: batches follow each other in time."""
    out, start = [], 0
    for batch in batches:
        batch = [(s, t, a, start + ts) for s, t, a, ts in batch]
        start = max((ts for *_, ts in batch), default=start) - 30_000
        out.append(batch)
    return out


@settings(max_examples=80, deadline=None)
@given(st.lists(PAYMENTS, min_size=1, max_size=4), st.integers(1, 6))
def test_a_batch_in_columns_is_judged_as_the_reference_judges_each_record(
        batches: list[list[tuple]], cap: int) -> None:
    slots = Slots(4)
    columns, reference = CardColumns(slots, RULES, max_accounts=cap), \
        CardTesting(RULES, max_accounts=cap)
    for batch in shifted(batches):
        found, hits = judged(columns, slots, batch)
        expected = [reference.judge(*payment) for payment in batch]
        assert found == [n for n, _ in expected]
        assert hits == [(i, hit) for i, (_, hit) in enumerate(expected) if hit is not None]
        assert columns.take_changed() == reference.take_changed()
        for source in "ABCDE":
            assert columns.state_of(source) == reference.state_of(source)
        assert len(columns) == len(reference._sources)
    # Nothing held is left behind: the payees' numbers and the pool's nodes go with them.
    assert sum(len(state) for state in reference._sources.values()) == \
        int(columns.payees.refs.sum())
    assert len(columns.payees) == len({payee for state in reference._sources.values()
                                       for _, payee in state})


@settings(max_examples=40, deadline=None)
@given(PAYMENTS, PAYMENTS)
def test_a_restored_store_judges_on_as_the_one_it_was_restored_from(
        first: list[tuple], then: list[tuple]) -> None:
    first_batch, next_batch = shifted([first, then])
    before = SourceRules(RULES, ("card_testing",))
    if first_batch:
        before.evaluate_batch(*map(list, zip(*first_batch, strict=True)))
    changelog = before.encoded_changes()
    after = SourceRules(RULES, ("card_testing",))
    after.restore_batch([key.decode() for key, _ in changelog],
                        [None if value is None else _decoded(value) for _, value in changelog])
    reference = CardTesting(RULES)
    for source in "ABCDE":
        state = before.card_testing.state_of(source)  # type: ignore[union-attr]
        if state is not None:
            reference.restore(source, state)
        assert after.card_testing.state_of(source) == state  # type: ignore[union-attr]
    if next_batch:
        got = after.evaluate_batch(*map(list, zip(*next_batch, strict=True)))
        expected = [reference.judge(*payment) for payment in next_batch]
        assert [figures["tiny_payees"] for _, figures in got] == [n for n, _ in expected]


def _decoded(value: bytes) -> Any:
    from services.detector.store import decode_state

    return decode_state(value)


def test_a_card_tester_is_caught_and_a_coffee_habit_is_not() -> None:
    slots = Slots()
    store = CardColumns(slots, RuleSettings())
    testing = [("CARD", f"shop-{i}", 1.0, 1_000 * i) for i in range(10)]
    coffee = [("ME", ("cafe", "bus")[i % 2], 3.5, 1_000 * i) for i in range(10)]
    found, hits = judged(store, slots, testing + coffee)
    assert found[:10] == list(range(1, 11))
    assert [i for i, _ in hits] == [7, 8, 9]  # the eighth distinct payee on
    assert hits[0][1].reason == "8 distinct payees paid at most 10 within 30 min"
    assert max(found[10:]) == 2
