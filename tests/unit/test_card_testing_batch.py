"""Card testing judges a batch as it judges each record in turn: the same payees, hits
and state, sweeps included, whatever the mix of tiny and other payments."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from services.detector.rules import CardTesting, RuleSettings

PAYMENTS = st.lists(st.tuples(st.sampled_from("ABCDE"), st.sampled_from("pqrstuvw"),
                              st.sampled_from([0.5, 1.0, 2.0, 30.0, 400.0]),
                              st.integers(0, 400_000)), max_size=60)


@settings(max_examples=60, deadline=None)
@given(st.lists(PAYMENTS, min_size=1, max_size=4))
def test_a_batch_is_judged_as_its_records_one_by_one(batches: list[list[tuple]]) -> None:
    rule_settings = RuleSettings(card_test_window_s=60, card_test_payees=3)
    by_batch, by_record = CardTesting(rule_settings), CardTesting(rule_settings)
    start = 0
    for batch in batches:
        # In about event-time order, a few late: batches follow each other in time.
        batch = [(s, t, a, start + ts) for s, t, a, ts in batch]
        start = max((ts for *_, ts in batch), default=start) - 30_000
        sources, targets, amounts, times = (list(column) for column in zip(*batch, strict=True)) \
            if batch else ([], [], [], [])
        payees, fired = by_batch.judge_columns(sources, targets, amounts, times)
        expected = [by_record.judge(*payment) for payment in batch]
        assert payees.tolist() == [n for n, _ in expected]
        assert fired == [(i, hit) for i, (_, hit) in enumerate(expected) if hit is not None]
        assert by_batch._sources == by_record._sources
        assert (by_batch._newest, by_batch._swept_at) == (by_record._newest, by_record._swept_at)
