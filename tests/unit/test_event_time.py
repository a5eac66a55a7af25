"""Event time across partitions: what the second stage hears from every source
partition, when it takes a record, and that the verdicts never depend on the order in
which partitions were fetched, on how batches were cut, on how many instances share
the work, or on a restart in the middle.

The merge's tests read as Flink's ``WatermarkOutputMultiplexerTest`` does: one
partition, two, one that goes idle, one that comes back.
"""

from __future__ import annotations

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.topology import LocalTopology
from services.detector.event_time import NEVER, Merge, Progress, SourceClock, progress_of
from services.detector.repartition import position
from services.detector.rules import RuleSettings, SourceRules, TargetRules


def test_a_record_waits_until_every_partition_has_got_as_far() -> None:
    merge: Merge[str] = Merge(upstream=2)
    merge.push(0, order=100, position=0, item="a")
    assert merge.release() == []  # partition 1 has said nothing yet
    assert merge.holding() == 1
    merge.hear(Progress({1: 90}))
    assert merge.release() == []  # partition 1 is behind the record
    merge.hear(Progress({1: 100}))
    assert merge.release() == [(100, "a")]
    assert merge.time == 100


def test_records_are_taken_oldest_order_first_across_partitions() -> None:
    merge: Merge[str] = Merge(upstream=2)
    merge.push(0, 30, 0, "p0@30")
    merge.push(0, 50, 1, "p0@50")
    merge.push(1, 10, 2, "p1@10")
    merge.push(1, 40, 3, "p1@40")
    assert [item for _, item in merge.release()] == ["p1@10", "p0@30", "p1@40"]
    assert len(merge) == 1  # p0@50 waits: partition 1 has got only to 40


def test_a_partition_gone_idle_holds_no_one_back_until_it_speaks_again() -> None:
    merge: Merge[str] = Merge(upstream=2)
    merge.hear(Progress({1: 5}))
    merge.push(0, 100, 0, "a")
    assert merge.release() == []
    merge.hear(Progress({1: 5}, idle=[1]))
    assert merge.release() == [(100, "a")]
    merge.push(1, 120, 1, "back")  # partition 1 speaks: it counts again
    merge.push(0, 130, 2, "b")
    assert merge.release() == [(120, "back")]
    assert merge.watermark() == 120


def test_a_partition_that_comes_back_behind_is_taken_at_once_and_counted() -> None:
    merge: Merge[str] = Merge(upstream=2)
    merge.hear(Progress({1: 0}, idle=[1]))
    merge.push(0, 100, 0, "a")
    assert merge.release() == [(100, "a")]
    merge.push(1, 60, 1, "late-riser")
    assert merge.release() == [(60, "late-riser")]
    assert merge.behind == 1


def test_every_partition_idle_lets_everything_through() -> None:
    merge: Merge[str] = Merge(upstream=2)
    merge.push(0, 100, 0, "a")
    merge.hear(Progress({0: 100, 1: NEVER}, idle=[0, 1]))
    assert merge.release() == [(100, "a")]


def test_without_an_upstream_count_records_go_at_once_in_order() -> None:
    merge: Merge[str] = Merge(upstream=None)
    merge.push(0, 30, 0, "b")
    merge.push(1, 10, 1, "a")
    assert merge.release() == [(10, "a"), (30, "b")]


def test_the_oldest_waiting_position_holds_the_commit_back() -> None:
    merge: Merge[str] = Merge(upstream=2)
    merge.hear(Progress({1: 20}))
    merge.push(0, 50, 7, "waits")
    merge.push(0, 10, 8, "goes")  # out of order: takes the partition's stream time
    assert merge.oldest_position() == 7
    merge.push(1, 60, 9, "x")
    assert [item for _, item in merge.release()] == ["goes", "waits"]
    assert merge.oldest_position() == 9


def test_a_restored_merge_skips_what_it_released_before() -> None:
    before: Merge[str] = Merge(upstream=2)
    before.push(0, 10, 0, "a")
    before.push(0, 20, 1, "b")
    before.hear(Progress({1: 10}))
    assert before.release() == [(10, "a")]
    after: Merge[str] = Merge(upstream=2)
    after.restore(orjson.loads(orjson.dumps(before.state())))
    assert not after.push(0, 10, 0, "a")  # released before the restart
    assert after.push(0, 20, 1, "b")
    assert after.heard == {0: 20, 1: 10} and after.time == 10


def test_a_stalled_partition_cannot_make_the_waiting_grow_without_bound() -> None:
    merge: Merge[int] = Merge(upstream=2, limit=3)
    for i in range(5):
        merge.push(0, 100 + i, i, i)
    assert [item for _, item in merge.release()] == [0, 1]
    assert len(merge) == 3 and merge.forced == 2


def test_the_first_stage_says_how_far_its_partitions_have_got_and_which_are_idle() -> None:
    busy, quiet, silent = SourceClock(now=10.0), SourceClock(now=0.0), SourceClock(now=0.0)
    busy.advance(500)
    busy.advance(400)  # out of order: the stream time stays
    quiet.advance(300)
    marker = progress_of([(0, busy), (1, quiet), (2, silent)], now=11.0, idle_after=5.0)
    assert marker == Progress({0: 500, 1: 300, 2: NEVER}, idle=[1, 2])


# --- Determinism: the same records, delivered every which way, the same verdicts ---

START = 1_767_225_600_000
GRACE_S = 2.0


def rule_settings() -> RuleSettings:
    """Small windows, so that a few dozen records fill them, expire and run late."""
    return RuleSettings(velocity_count=3, velocity_window_s=5, fan_in_sources=3,
                        fan_in_window_s=10, anomaly_history=2, window_grace_s=GRACE_S)


def topology(instances: int, framed: bool = True) -> LocalTopology:
    shared = rule_settings()
    return LocalTopology(lambda: SourceRules(shared, novelty=True),
                         lambda: TargetRules(shared, novelty=True), partitions=4,
                         instances=instances, threshold=950.0, framed=framed)


payments = st.lists(
    st.tuples(
        st.integers(0, 7),  # payer
        st.integers(0, 4),  # payee
        st.sampled_from([0, 0, 1, 250, 900, 4000]),  # ms after the one before (ties too)
        st.sampled_from([0, 0, 0, 300, 2500]),  # how far behind its time it is sent
        st.sampled_from([5.0, 40.0, 120.0, 990.0]),
    ),
    min_size=1, max_size=40)


def records(drawn: list[tuple[int, int, int, int, float]]) -> list[tuple[bytes, bytes]]:
    out, ts = [], START
    for i, (payer, payee, gap, behind, amount) in enumerate(drawn):
        ts += gap
        source = f"PAYER{payer:03d}"
        out.append((source.encode(), orjson.dumps({
            "id": f"t{i}", "ts": ts - behind, "source": source, "target": f"SHOP{payee:03d}",
            "amount": amount, "currency": "EUR"})))
    return out


def reference(sent: list[tuple[bytes, bytes]]) -> dict[str, dict]:
    """One instance, one record at a time, partitions in turn, a forward a record."""
    local = topology(1, framed=False)
    local.send(sent)
    steps = []
    for _ in range(len(sent)):
        steps += [("source", p, 1) for p in range(4)] + [("target", p, 1) for p in range(4)]
    return local.run(steps)


schedule = st.lists(st.tuples(st.sampled_from(["source", "source", "target", "restart"]),
                              st.integers(0, 3), st.integers(1, 8)), max_size=80)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(payments, schedule, st.sampled_from([1, 2, 4]))
def test_verdicts_do_not_depend_on_fetch_order_batch_cuts_instances_or_restarts(
        drawn: list[tuple[int, int, int, int, float]],
        steps: list[tuple[str, int, int]], instances: int) -> None:
    sent = records(drawn)
    expected = reference(sent)
    local = topology(instances)
    local.send(sent)
    assert local.run(steps) == expected
    assert len(expected) == len(sent)


def test_all_at_once_partition_by_partition_gives_the_live_verdicts() -> None:
    """A catch-up: each partition read whole before the next, against the same records
    taken as they came. A mule's payers sit on every partition."""
    sent = []
    for i in range(60):
        payer = f"RING{i:04d}" if i % 3 == 0 else f"CUSTOMER{i % 11:03d}"
        payee = "MULE0001" if i % 3 == 0 else f"SHOP{i % 4:03d}"
        sent.append((payer.encode(), orjson.dumps({
            "id": f"t{i}", "ts": START + i * 400, "source": payer, "target": payee,
            "amount": 850.0 if payee == "MULE0001" else 30.0, "currency": "EUR"})))
    expected = reference(sent)
    catch_up = topology(2)
    catch_up.send(sent)
    steps = [("source", p, 1 << 20) for p in (3, 1, 0, 2)] + \
        [("target", p, 1 << 20) for p in (2, 0, 3, 1)]
    assert catch_up.run(steps) == expected
    fan_in = [expected[f"t{i}"]["features"]["fan_in"] for i in range(0, 60, 3)]
    assert fan_in == sorted(fan_in) and fan_in[-1] >= 3  # the ring climbs, never falls back
    assert any("fan_in" in expected[f"t{i}"]["rules"] for i in range(0, 60, 3))


def test_a_merge_restored_from_offsets_of_an_older_detector_skips_those_records_whole() -> None:
    merge: Merge[str] = Merge(upstream=2)
    merge.restore({"time": 10, "heard": [[0, 10]], "done": [[0, 5]]})  # offsets, not positions
    assert not merge.push(0, 10, position(5, 0), "released before")
    assert merge.push(0, 20, position(6, 0), "new")
