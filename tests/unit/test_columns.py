"""The first stage's columns and kernels give, batch by batch, exactly what the rules'
reference gives one record at a time: the same figures, hits, changelog states and
forgotten accounts, for any stream, any cut into batches, and across a restore."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import betainc

from services.detector import kernels
from services.detector.columns import SEQ_LIMIT, MixColumns, Slots, WindowColumns
from services.detector.rules import (
    AmountAnomaly,
    FanIn,
    Hit,
    PayeeHistory,
    RuleSettings,
    SourceRules,
    TargetRules,
    Velocity,
)
from services.detector.windows import KeyedTimes, SlidingWindow

MINUTE = 60_000

# Ten sources, payments from every few milliseconds (a burst, a bulk run at one
# instant) to hours apart, a few out of order and a few later than the grace.
steps = st.one_of(st.just(0), st.integers(1, 3_000), st.integers(3_000, 90_000),
                  st.integers(90_000, 3 * 3_600_000), st.integers(-20_000, -1))
amounts = st.one_of(st.sampled_from([0.005, 1.0, 2.5, 20.0, 40.0, 950.0, 5_000.0]),
                    st.floats(0.01, 2_000.0, allow_nan=False))
scattered = st.lists(st.tuples(st.integers(0, 9), steps, amounts), min_size=1, max_size=60)
# A burst: one source paying every second or two, now and then at the same instant.
bursts = st.integers(0, 9).flatmap(lambda source: st.lists(st.tuples(
    st.just(source), st.one_of(st.integers(200, 2_500), st.just(0)), amounts),
    min_size=5, max_size=40))
payments = st.lists(st.one_of(scattered, bursts), min_size=1, max_size=6).map(
    lambda parts: [payment for part in parts for payment in part])


def rule_settings(count: int, new_s: float, hold_s: float) -> RuleSettings:
    return RuleSettings(velocity_count=count, velocity_window_s=30.0, new_account_s=new_s,
                        velocity_hold_s=hold_s, anomaly_history=3, window_grace_s=5.0)


class Reference:
    """The rules as they judge one record at a time."""

    def __init__(self, rules: RuleSettings, cap: int) -> None:
        self.velocity = Velocity(rules)
        self.anomaly = AmountAnomaly(rules, max_accounts=cap)
        self.velocity.pace.max_accounts = cap

    def judge(self, source: str, amount: float, ts: int) -> tuple[list[Hit], dict[str, Any]]:
        hits: list[Hit] = []
        n, usual, gap, hit = self.velocity.judge(source, ts)
        figures: dict[str, Any] = {"velocity": n, "velocity_usual": round(usual, 2),
                                   "gap_s": round(gap, 1),
                                   "new_account": float(self.velocity.new)}
        if hit:
            hits.append(hit)
        z, log_z, ratio, history, hit = self.anomaly.judge(source, amount)
        figures.update(amount_z=round(z, 2), amount_log_z=round(log_z, 2),
                       amount_ratio=round(ratio, 3), history=history)
        if hit:
            hits.append(hit)
        return hits, figures


def alive(store: str, key: str, state: Any, horizon: int | None) -> Any:
    """A state as it matters: after a restore (``horizon`` given), the velocity window
    sweeps keys on its own schedule (when they were swept is not in the changelog), so
    a key with no event after the horizon, which no record can still see, is as good
    as gone."""
    if store != "velocity" or key == "" or state is None or horizon is None:
        return state
    return state if max(state[0]) > horizon else None


def columnar(rules: RuleSettings, cap: int) -> SourceRules:
    out = SourceRules(rules, ("velocity", "amount_anomaly"))
    assert out.velocity is not None and out.anomaly is not None
    out.velocity.pace.max_accounts = out.anomaly.max_accounts = cap
    return out


# A stream, its cuts into batches, the settings, the cap, and where a restart comes.
first_stage_cases = (payments, st.lists(st.integers(1, 40), min_size=1, max_size=20),
                     st.integers(2, 6), st.sampled_from([0.0, 60.0, 600.0]),
                     st.sampled_from([0.0, 20.0]), st.sampled_from([3, 6, 200_000]),
                     st.integers(0, 240))


@settings(max_examples=150, deadline=None)
@given(*first_stage_cases)
def test_a_batch_judges_as_the_reference_does_record_by_record(
        stream: list[tuple[int, int, float]], cuts: list[int], count: int, new_s: float,
        hold_s: float, cap: int, restart_at: int) -> None:
    judges_as_the_reference(stream, cuts, count, new_s, hold_s, cap, restart_at)


def judges_as_the_reference(stream: list[tuple[int, int, float]], cuts: list[int], count: int,
                            new_s: float, hold_s: float, cap: int, restart_at: int) -> None:
    rules = rule_settings(count, new_s, hold_s)
    reference, batched = Reference(rules, cap), columnar(rules, cap)
    records, ts = [], 10 * MINUTE
    for source, step, amount in stream:
        ts = max(ts + step, 0)
        records.append((f"S{source}", amount, ts))
    expected = [reference.judge(*record) for record in records]
    got: list[tuple[list[Hit], dict[str, Any]]] = []
    start, cut, restarted = 0, 0, False
    while start < len(records):
        if start <= restart_at < start + cuts[cut % len(cuts)] and cap > len(stream):
            # An instance takes the partition over from the changelog. (Below the cap
            # only: a restore takes the accounts in the changelog's order, which is not
            # the order they came in, so what the cap forgets first after it differs.)
            log, restarted = list(batched.changes()), True
            batched = columnar(rules, cap)
            for key, state in log:
                batched.restore(key, state)
        batch = records[start:start + cuts[cut % len(cuts)]]
        got += batched.evaluate_batch([r[0] for r in batch], ["T"] * len(batch),
                                      [r[1] for r in batch], [r[2] for r in batch])
        start += len(batch)
        cut += 1
    assert got == expected
    assert batched.velocity is not None and batched.anomaly is not None
    horizon = reference.velocity.events.watermark - round(
        rules.velocity_window_s * 1000) if restarted else None
    for name, mine, theirs in (("pace", batched.velocity.pace, reference.velocity.pace),
                               ("velocity", batched.velocity.events,
                                reference.velocity.events),
                               ("amount_anomaly", batched.anomaly, reference.anomaly)):
        keys = [f"S{i}" for i in range(10)] + [""]
        seen = [alive(name, key, theirs.state_of(key), horizon) for key in keys]
        assert [alive(name, key, mine.state_of(key), horizon) for key in keys] == seen, name
        assert [alive(name, key, state, horizon)
                for key, state in zip(keys, mine.states_of(keys), strict=True)] == seen
        held = {"pace": "_sources", "velocity": "_keys", "amount_anomaly": "_accounts"}[name]
        if name != "velocity" or not restarted:  # (a restored window sweeps on its own)
            assert len(mine) == len(getattr(theirs, held)), name
    if not restarted:  # the late count is not in the changelog
        assert batched.velocity.events.late == reference.velocity.events.late


def test_what_the_cap_forgets_is_written_as_forgotten() -> None:
    rules = columnar(RuleSettings(), cap=3)
    rules.evaluate_batch(["A", "B", "C", "D"], ["T"] * 4, [10.0] * 4, [0, 1, 2, 3])
    changes = dict(rules.changes())
    # The oldest, forgotten by the capped stores (its payment is still in the window).
    assert changes["/A"] == {"velocity": [[0], [None]], "pace": None, "amount_anomaly": None}
    assert set(changes["/D"]) == {"velocity", "pace", "amount_anomaly"}
    assert rules.slots.index["A"] == 0  # its payment is still in the velocity window
    rules.evaluate_batch(["E"], ["T"], [10.0], [10 * MINUTE])  # it has left the window
    # A's and B's slots (the cap forgot B for E), free for others.
    assert "A" not in rules.slots.index and sorted(rules.slots.free) == [0, 1]
    rules.evaluate_batch(["F"], ["T"], [10.0], [10 * MINUTE])
    assert rules.slots.index["F"] in (0, 1)


window_states = st.lists(st.integers(0, 10**6), min_size=1, max_size=5).map(
    lambda times: [sorted(times), [None] * len(times)])
pace_states = st.tuples(st.integers(0, 10**6), st.integers(0, 10**6), st.floats(0, 50),
                        st.one_of(st.none(), st.floats(0, 100)),
                        st.one_of(st.just(()), st.tuples(st.integers(0, 10**6),
                                                         st.floats(0, 9)))).map(
    lambda s: [*s[:4], *s[4]])
habit_states = st.tuples(st.integers(0, 99), st.floats(1, 99), st.floats(0, 99),
                         st.floats(0, 5), st.floats(0, 9)).map(list)
changelog = st.lists(st.tuples(st.sampled_from(["A", "B", "C"]), st.one_of(
    st.none(), st.fixed_dictionaries({"velocity": window_states, "pace": pace_states,
                                      "amount_anomaly": habit_states}))), max_size=25)


@settings(max_examples=100, deadline=None)
@given(changelog, changelog)
def test_a_restore_takes_the_newest_record_of_each_key_over_what_was_held(
        first: list[tuple[str, Any]], then: list[tuple[str, Any]]) -> None:
    rules, reference = columnar(RuleSettings(), 200_000), Reference(RuleSettings(), 200_000)
    stores = {"velocity": reference.velocity.events, "pace": reference.velocity.pace,
              "amount_anomaly": reference.anomaly}
    for records in (first, then):
        for key, record in records:
            rules.restore(f"/{key}", record)
            for name, store in stores.items():
                store.restore(key, None if record is None else record[name])
        for name, store in stores.items():
            for key in "ABC":
                assert rules.stores[name].state_of(key) == store.state_of(key), (name, key)


# The second stage: payers of five targets, each record with the order its upstream
# partition gave it (now and then behind the newest, after an idle partition).
target_payments = st.lists(st.tuples(
    st.integers(0, 4), st.integers(0, 30), steps, st.one_of(st.just(0), st.integers(-30_000, 0)),
    st.booleans(), st.sampled_from([0, 1, 3])), min_size=1, max_size=150)


@settings(max_examples=150, deadline=None)
@given(target_payments, st.lists(st.integers(1, 40), min_size=1, max_size=20),
       st.sampled_from([2, 3, 500_000]), st.booleans())
def test_the_second_stage_judges_a_batch_as_the_reference_does_record_by_record(
        stream: list[tuple[int, int, int, int, bool, int]], cuts: list[int], cap: int,
        ordered: bool) -> None:
    rules = RuleSettings(fan_in_sources=3, fan_in_new_payers=2, fan_in_window_s=600.0,
                         fan_in_new_window_s=1800.0, window_grace_s=5.0)
    fan_in = FanIn(rules)
    fan_in.mix.max_accounts = cap
    payees = PayeeHistory(max_accounts=cap)
    batched = TargetRules(rules, novelty=True)
    assert batched.mix is not None and batched.payees is not None
    batched.mix.max_accounts = batched.payees.max_accounts = cap
    records, ts = [], 10 * MINUTE
    for target, payer, step, lag, new, history in stream:
        ts = max(ts + step, 0)
        figures = {"new_account": float(new), "history": history, "amount_ratio": 1.0}
        records.append((f"T{target}", f"P{payer}", ts, ts + lag if ordered else None,
                        figures))
    expected = []
    for target, payer, at, order, figures in records:
        n, fresh, share, hit = fan_in.judge(target, payer, at, dict(figures), order)
        paid = payees.evaluate(target, at, order)
        expected.append(([hit] if hit else [], {
            **figures, "fan_in": n, "fan_in_new": fresh, "new_payer_share": round(share, 3),
            "payee_paid": round(paid, 2)}))
    got: list[tuple[list[Hit], dict[str, Any]]] = []
    start, cut = 0, 0
    while start < len(records):
        batch = records[start:start + cuts[cut % len(cuts)]]
        hits: list[list[Hit]] = [[] for _ in batch]
        figures = [dict(record[4]) for record in batch]
        batched.evaluate_batch([r[0] for r in batch], [r[1] for r in batch],
                               [r[2] for r in batch], hits, figures,
                               [r[3] for r in batch] if ordered else None)  # type: ignore[misc]
        got += zip(hits, figures, strict=True)
        start += len(batch)
        cut += 1
    assert got == expected
    keys = [f"T{i}" for i in range(5)]
    assert batched.mix.states_of(keys) == [fan_in.mix.state_of(key) for key in keys]
    assert batched.payees.states_of(keys) == [payees.state_of(key) for key in keys]
    assert batched.fan_in is not None
    for mine, theirs in ((batched.fan_in.events, fan_in.events),
                         (batched.fan_in.suspects, fan_in.suspects),
                         (batched.fan_in.newcomers, fan_in.newcomers)):
        assert mine.states_of([*keys, ""]) == [theirs.state_of(key) for key in [*keys, ""]]
        assert mine.late == theirs.late


def test_the_pace_kernel_asks_scipys_own_incomplete_beta() -> None:
    """The kernel calls the compiled function behind ``scipy.special.betainc``: the
    same answer to the bit, for any candidate."""
    assert kernels.BETAINC(2.0, 3.0, 0.5, 0) != kernels.ASK_PYTHON  # not the stand-in
    rng = np.random.default_rng(5)
    n, past, share = rng.integers(1, 300, 2_000), rng.random(2_000) * 500, rng.random(2_000)
    assert [kernels.BETAINC(float(a), b + 1.0, x, 0) for a, b, x in zip(
        n.tolist(), past.tolist(), share.tolist(), strict=True)] == \
        betainc(n, past + 1.0, share).tolist()


STAND_IN = kernels.ask_python()


@settings(max_examples=40, deadline=None)
@given(*first_stage_cases)
def test_where_scipy_exports_no_incomplete_beta_python_judges_each_candidate(
        stream: list[tuple[int, int, float]], cuts: list[int], count: int, new_s: float,
        hold_s: float, cap: int, restart_at: int) -> None:
    with pytest.MonkeyPatch.context() as patch:  # the kernel stops at each candidate
        patch.setattr(kernels, "BETAINC", STAND_IN)
        judges_as_the_reference(stream, cuts, count, new_s, hold_s, cap, restart_at)


def test_insertion_numbers_start_anew_before_they_overflow_and_keep_the_order() -> None:
    """``seq`` is int32: near its limit the accounts held are numbered anew, oldest
    first, so that the cap still forgets the oldest."""
    slots = Slots()
    store = MixColumns(slots, 60_000, max_accounts=3)
    ts = np.array([1, 2, 3], np.int64)
    held = slots.of(["a", "b", "c"])
    store.add_batch(held, ts, ts, np.zeros(3, np.bool_))
    store.seq[held] += SEQ_LIMIT - 4  # as after two billion accounts
    store.counts[2] = SEQ_LIMIT - 1
    one = np.array([4], np.int64)
    store.add_batch(slots.of(["d"]), one, one, np.zeros(1, np.bool_))
    assert int(store.counts[2]) == 4  # a, b, c numbered 0, 1, 2 anew, then d
    assert store.state_of("a") is None  # the oldest went, as it would have
    assert all(store.state_of(key) is not None for key in "bcd")


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2), st.sampled_from([0, 1, 1, 2, 3, 5, -1, -2, -6])),
                min_size=1, max_size=120),
       st.lists(st.integers(1, 30), min_size=1, max_size=10))
def test_the_velocity_window_counts_at_its_edges_as_the_reference_does(
        stream: list[tuple[int, int]], sizes: list[int]) -> None:
    """Seconds apart, so that events fall on a window's edge (5 s) and its grace's
    (2 s): each record's count of its window, as ``KeyedTimes`` counts it."""
    window = SlidingWindow(5_000, 2_000)
    reference, columns = KeyedTimes(window), WindowColumns(Slots(capacity=2), window)
    records, ts = [], 600_000
    for source, step in stream:
        ts += 1_000 * step
        records.append((f"S{source}", ts))
    expected = [reference.count(key, at) for key, at in records]
    got: list[int | None] = []
    start, cut = 0, 0
    while start < len(records):
        batch = records[start:start + sizes[cut % len(sizes)]]
        slots = columns.slots.of([key for key, _ in batch])
        recent = columns.count_batch(slots, np.array([at for _, at in batch], np.int64))
        got += [None if count < 0 else count + 1 for count in recent.tolist()]
        columns.slots.settle()
        start, cut = start + len(batch), cut + 1
    assert got == expected
