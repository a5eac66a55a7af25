"""A target's long fan-in window goes to the changelog as a settled record and the
events since (``DistinctColumns.changelog_at``): a restart from that changelog,
whole or compacted, in chunks of any size, holds the windows the running detector
held, and answers the next payments as it does."""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from services.detector.distinct_columns import DistinctColumns
from services.detector.rules import STORE_CODES, TargetRules
from services.detector.store import decode_state, encode_state

TARGETS = [f"T{i}" for i in range(4)]
START = 600_000

# Two targets paid by a few payers or many, often within seconds (their windows hold
# dozens of events), now and then from the same instant, out of order, later than the
# grace or past the hour; orders a little ahead or behind; some payers new accounts,
# some mule-like (fan-in's other two windows).
payments = st.lists(st.tuples(
    st.integers(0, 1), st.one_of(st.integers(0, 3), st.integers(0, 40)),
    st.integers(0, 39).flatmap(lambda k: st.just(0) if k < 14 else st.integers(1, 5_000)
                               if k < 36 else st.integers(-8_000, -1) if k < 39
                               else st.integers(600_000, 3_000_000)),
    st.one_of(st.just(0), st.integers(-3_000, 3_000)), st.booleans(), st.booleans()),
    min_size=1, max_size=300)
cuts = st.lists(st.integers(1, 5), min_size=1, max_size=10)


def rules(settle_from: int) -> TargetRules:
    made = TargetRules()
    for store in windows(made):
        store.settle_from = settle_from
    return made


def windows(made: TargetRules) -> list[DistinctColumns]:
    return [store for store in made.stores.values() if isinstance(store, DistinctColumns)]


def judge(made: TargetRules, batch: list[tuple[str, str, int, int, bool, bool]]) -> Any:
    judged = made.judge_columns(
        [target for target, *_ in batch], [payer for _, payer, *_ in batch],
        [at for _, _, at, *_ in batch], np.array([new for *_, new, _ in batch], np.bool_),
        np.array([mule for *_, mule in batch], np.bool_),
        [order for _, _, _, order, _, _ in batch])
    return {name: column.tolist() for name, column in judged.figures.items()}, \
        sorted(judged.hits)


def compacted(log: list[tuple[bytes, bytes | None]]) -> list[tuple[bytes, bytes | None]]:
    """The newest record of each key, in the order of their newest writes."""
    newest = {key: at for at, (key, _) in enumerate(log)}
    return [record for at, record in enumerate(log) if newest[record[0]] == at]


def restored(log: list[tuple[bytes, bytes | None]], chunk: int, settle_from: int
             ) -> TargetRules:
    made = rules(settle_from)
    for start in range(0, len(log), chunk):
        part = log[start:start + chunk]
        made.restore_batch([key.decode() for key, _ in part],
                           [None if value is None else decode_state(value)
                            for _, value in part])
    made.flush()
    return made


@settings(max_examples=150, deadline=None)
@given(payments, cuts, st.lists(st.sampled_from([True, True, False]), min_size=1, max_size=10),
       st.integers(1, 50), st.sampled_from([1, 2, 4, 16]))
def test_a_restart_from_settled_records_holds_the_windows_and_answers_alike(
        stream: list[tuple[int, int, int, int, bool, bool]], sizes: list[int],
        commits: list[bool], chunk: int, settle_from: int) -> None:
    records, at = [], START
    for target, payer, step, lag, new, mule in stream:
        at = max(at + step, 0)
        records.append((TARGETS[target], f"P{payer}", at, at + lag, new, mule))
    cut = len(records) * 2 // 3
    live = rules(settle_from)
    log: list[tuple[bytes, bytes | None]] = []
    start, turn = 0, 0
    while start < cut:  # the changes taken after some batches, as commits come
        batch = records[start:min(start + sizes[turn % len(sizes)], cut)]
        judge(live, batch)
        if commits[turn % len(commits)]:
            log += live.encoded_changes()
        start += len(batch)
        turn += 1
    log += live.encoded_changes()  # the commit before the restart
    # Every record is the bytes msgspec writes for what it holds.
    assert all(value is None or encode_state(decode_state(value)) == value
               for _, value in log)
    for replayed in (log, compacted(log)):
        back = restored(replayed, chunk, settle_from)
        for mine, theirs in zip(windows(back), windows(live), strict=True):
            assert mine.states_of([*TARGETS, ""]) == theirs.states_of([*TARGETS, ""])
    # The restarted rules go on as the running ones do, and write what they hold.
    back = restored(compacted(log), chunk, settle_from)
    rest = records[cut:]
    assert judge(back, rest) == judge(live, rest)
    # (A restored window sweeps on its own schedule: its states are its own to write.)
    again = restored(compacted(log + back.encoded_changes()), chunk, settle_from)
    for mine, theirs in zip(windows(again), windows(back), strict=True):
        assert mine.states_of([*TARGETS, ""]) == theirs.states_of([*TARGETS, ""])


def test_a_window_back_under_the_size_deletes_its_settled_record() -> None:
    live = rules(settle_from=3)
    paid_first = [("T0", f"P{i}", START + i, START + i, False, False) for i in range(5)]
    judge(live, paid_first)
    assert b"fan_in+/T0" not in dict(live.encoded_changes())  # written whole, once
    judge(live, [("T0", "P8", START + 5, START + 5, False, False)])
    first = dict(live.encoded_changes())
    assert first[b"fan_in+/T0"] is not None  # written again: settled
    # An hour and more later, one payment: the window holds it alone.
    judge(live, [("T0", "P9", START + 4 * 3_600_000, START + 4 * 3_600_000, False, False)])
    second = dict(live.encoded_changes())
    assert second[b"fan_in+/T0"] is None
    later = START + 4 * 3_600_000
    assert decode_state(second[b"/T0"])[STORE_CODES["fan_in"]] == [[later], ["P9"]]


def paid(target: str, payer: str, at: int) -> tuple[str, str, int, int, bool, bool]:
    return target, payer, at, at, False, False


def test_payments_of_one_instant_keep_their_order_across_a_settled_record() -> None:
    live = rules(settle_from=2)
    judge(live, [paid("T0", payer, START) for payer in ("P0", "P1")])
    log = live.encoded_changes()  # the two written whole
    judge(live, [paid("T0", "P5", START)])
    log += live.encoded_changes()  # the three settled
    judge(live, [paid("T0", "P2", START)])  # the same instant, after them
    log += live.encoded_changes()
    assert decode_state(dict(log)[b"/T0"])[STORE_CODES["fan_in"]][:2] == [[START], ["P2"]]
    back = restored(log, 1, settle_from=2)
    assert windows(back)[0].states_of(["T0"]) == windows(live)[0].states_of(["T0"]) == [
        [[START] * 4, ["P0", "P1", "P5", "P2"]]]


def test_what_the_window_dropped_after_its_settled_record_stays_dropped() -> None:
    live = rules(settle_from=2)
    judge(live, [paid("T0", f"P{i}", START + 1_000 * i) for i in range(9)])
    log = live.encoded_changes()  # written whole
    judge(live, [paid("T0", "P9", START + 9_000)])
    log += live.encoded_changes()  # written again: settled
    # An hour and the grace on from the third: the first two leave the window, and
    # one payment since is too few to settle the window anew.
    window = windows(live)[0].window
    later = START + 2_000 + window.length_ms + window.grace_ms - 1
    judge(live, [paid("T0", "P10", later)])
    log += live.encoded_changes()
    record = decode_state(dict(log)[b"/T0"])[STORE_CODES["fan_in"]]
    assert record[:2] == [[later], ["P10"]] and record[3] == START + 2_000
    back = restored(log, 1, settle_from=2)
    assert windows(back)[0].states_of(["T0"]) == windows(live)[0].states_of(["T0"])
    assert windows(back)[0].states_of(["T0"])[0][0] == [
        START + 1_000 * i for i in range(2, 10)] + [later]
