"""What the console computes from records, without a broker or a screen."""

from __future__ import annotations

import orjson
import pytest

from services import control
from tests.tui.scripted import FakeClock, ScriptedFeed, output
from tui.app import TPS_STEPS, step_tps
from tui.feed import ts_of
from tui.model import DOWN_AFTER, HISTORY_SECONDS, Aggregator, ServiceHealth, row_of, shown
from tui.widgets import model_text


def test_the_tps_keys_walk_a_1_2_5_ladder_from_1_to_100000() -> None:
    assert TPS_STEPS[:4] == (1, 2, 5, 10) and TPS_STEPS[-1] == 100_000
    assert step_tps(100, up=True) == 200
    assert step_tps(100, up=False) == 50
    assert step_tps(130, up=True) == 200  # a typed value goes to the next rung
    assert step_tps(130, up=False) == 100
    assert step_tps(100_000, up=True) == 100_000  # the ends hold
    assert step_tps(1, up=False) == 1


def test_ts_is_read_without_decoding_the_record() -> None:
    assert ts_of(b'{"id":"a","ts":1700000000123,"amount":5}') == 1700000000123
    assert ts_of(b'{"source":"a","amount":5}') is None
    assert ts_of(b'{"ts":"soon"}') is None


def test_rows_are_decoded_for_what_is_shown_and_bad_records_are_skipped() -> None:
    _, value = output(b'{"id":"1","ts":5,"source":"S","target":"T","amount":950.5,'
                      b'"currency":"EUR"}', 900.0)
    row = row_of(value)
    assert row is not None
    assert (row.source, row.target, row.amount, row.currency) == ("S", "T", 950.5, "EUR")
    assert row.reasons == "amount >= 900"
    assert row_of(b"not json") is None
    assert row_of(b"[1, 2]") is None
    assert row_of(b'{"amount": "lots"}') is None
    assert row_of(None) is None


def test_rates_totals_and_ratio_come_from_counted_batches() -> None:
    clock = FakeClock()
    agg = Aggregator(clock)
    for _ in range(5):
        clock.now += 1
        agg.add_output("legit", [b"{}"] * 90)
        agg.add_output("fraud", [b"{}"] * 10)
    clock.now += 1
    snap = agg.snapshot()
    assert snap.totals["legit"] == 450 and snap.totals["fraud"] == 50
    assert snap.rates["legit"] == pytest.approx(90) and snap.rates["fraud"] == pytest.approx(10)
    assert snap.fraud_ratio == pytest.approx(0.1)
    assert len(snap.history["legit"]) == HISTORY_SECONDS - 1
    assert snap.history["legit"][-1] == 90


def test_the_input_rate_is_the_growth_of_the_input_topic() -> None:
    clock = FakeClock()
    agg = Aggregator(clock)
    agg.add_input_watermark(10_000)  # what was there before the console came
    for second in range(1, 4):
        clock.now += 1
        agg.add_input_watermark(10_000 + 200 * second)
    clock.now += 1
    snap = agg.snapshot()
    assert snap.totals["in"] == 600
    assert snap.rates["in"] == pytest.approx(200)


def test_latency_percentiles_cover_the_last_seconds_only() -> None:
    clock = FakeClock()
    agg = Aggregator(clock)
    agg.add_latencies([5000.0] * 100)  # a start-up backlog
    clock.now += 30
    agg.add_latencies(float(ms) for ms in range(1, 101))
    snap = agg.snapshot()
    assert snap.latency_p50 == 50
    assert snap.latency_p99 == 99


def test_a_command_is_pending_until_the_service_answers() -> None:
    feed = ScriptedFeed()
    feed.heartbeats()
    feed.send("tps", 2000.0)
    assert feed.sent[-1]["setting"] == "tps" and feed.sent[-1]["value"] == 2000.0
    assert feed.snapshot().requests["tps"].state == "pending"
    feed.answer("generator", applied=True)
    snap = feed.snapshot()
    assert snap.requests["tps"].state == "applied"
    assert snap.applied("tps") == 2000.0
    assert snap.events[-1].endswith("generator applied tps = 2,000")


def test_a_refused_command_keeps_its_reason() -> None:
    feed = ScriptedFeed()
    feed.heartbeats()
    feed.send("threshold", 950.0)
    feed.answer("detector", applied=False, reason="out of range")
    snap = feed.snapshot()
    assert snap.requests["threshold"].state == "refused"
    assert snap.requests["threshold"].reason == "out of range"
    assert snap.applied("threshold") == 900.0
    assert "detector refused threshold = 950: out of range" in snap.events[-1]


def test_an_invalid_command_is_refused_before_it_is_sent() -> None:
    feed = ScriptedFeed()
    feed.send("tps", 1e9)
    assert feed.sent == []
    request = feed.snapshot().requests["tps"]
    assert request.state == "refused" and "out of range" in request.reason


def test_a_silent_service_is_down_and_its_settings_unknown() -> None:
    feed = ScriptedFeed()
    feed.heartbeats()
    assert all(s.up for s in feed.snapshot().services)
    feed.fake_clock.now += DOWN_AFTER + 1
    snap = feed.snapshot()
    assert [s.up for s in snap.services] == [False, False]
    assert snap.applied("tps") is None


def test_garbage_on_the_status_topic_is_ignored() -> None:
    agg = Aggregator(FakeClock())
    agg.add_status([b"nonsense", None, b"{}", orjson.dumps({"kind": "heartbeat"})])
    assert agg.snapshot().services == ()
    _, body = control.command("tps", 5.0)
    agg.add_status([body])  # a command is not a status
    assert agg.snapshot().services == ()


def test_reset_forgets_counters_but_not_the_services() -> None:
    feed = ScriptedFeed()
    feed.traffic(seconds=5, tps=100)
    feed.reset()
    snap = feed.snapshot()
    assert snap.totals == {"in": 0, "legit": 0, "fraud": 0}
    assert snap.legit_rows == () and snap.fraud_rows == ()
    assert len(snap.services) == 2


def test_setting_values_read_like_a_person_writes_them() -> None:
    assert shown(950.0) == "950"
    assert shown(2500.5) == "2,500.5"
    assert shown(True) == "true"


def test_an_applied_answer_updates_the_setting_before_the_next_heartbeat() -> None:
    """So that a second key press steps from the new value, not from the old one."""
    feed = ScriptedFeed()
    feed.heartbeats()
    feed.send("threshold", 950.0)
    last = feed.sent[-1]
    cmd = control.parse_command(orjson.dumps(last))
    feed.aggregator.add_status([control.ack("detector", "detector-1",
                                            {"partition": 0, "offset": 1, "id": cmd.id},
                                            True, "", cmd)])  # no heartbeat yet
    assert feed.snapshot().applied("threshold") == 950.0


def test_the_model_line_says_the_newest_version_whether_restored_and_who_decides() -> None:
    def detector(age: float, **model: object) -> ServiceHealth:
        return ServiceHealth("detector", f"d{len(model)}", age, {}, {"model": model})

    learning = detector(1.0, version=0, examples=1234)
    assert model_text((learning,)) == "learning, 1,234 labels"
    restored = detector(1.0, version=7, age_s=300.0, restored=True)
    assert model_text((learning, restored)) == "v7 restored · 300s old"
    retrained = detector(1.0, version=8, age_s=2.0, restored=False, deciding=True)
    assert model_text((restored, retrained)) == "v8 · 2s old"
    young = detector(1.0, version=2, age_s=5.0, restored=False, deciding=False)
    assert model_text((young,)) == "v2 · 5s old · rules decide"
    assert model_text((detector(DOWN_AFTER + 1, version=9),)) == "", "a detector that is down"


def tx(tx_id: str, source: str, target: str, amount: float, ts: int = 1_000) -> bytes:
    return output(orjson.dumps({"id": tx_id, "ts": ts, "source": source, "target": target,
                                "amount": amount, "currency": "EUR"}), 900.0)[1]


def test_a_filter_is_an_account_part_a_rule_name_or_an_amount_comparison() -> None:
    from tui.record_filter import RecordFilter

    big, small = tx("1", "ALICE0000001", "BOB000000002", 950.0), tx("2", "CAROL0000003",
                                                                     "ALICE0000001", 20.0)
    assert [RecordFilter.parse("alice").matches(r) for r in (big, small)] == [True, True]
    assert [RecordFilter.parse("BOB").matches(r) for r in (big, small)] == [True, False]
    assert [RecordFilter.parse("amount_threshold").matches(r)
            for r in (big, small)] == [True, False]
    assert [RecordFilter.parse("amount>900").matches(r) for r in (big, small)] == [True, False]
    assert [RecordFilter.parse("amount <= 20").matches(r) for r in (big, small)] == [False, True]
    assert not RecordFilter.parse("alice").matches(b"not json")
    for typo in ("", "amount>lots", "a b"):
        with pytest.raises(ValueError):
            RecordFilter.parse(typo)


def test_a_filter_applies_to_the_rows_and_counts_of_both_feeds() -> None:
    from tui.record_filter import RecordFilter

    clock = FakeClock()
    agg = Aggregator(clock)
    agg.add_output("legit", [tx("1", "ALICE0000001", "B", 10.0)], [2], [41])
    agg.add_output("fraud", [tx("2", "CAROL0000003", "D", 950.0)], [0], [7])
    agg.set_filter(RecordFilter.parse("alice"))
    agg.add_output("legit", [tx("3", "E", "ALICE0000001", 30.0, ts=2_000),
                             tx("4", "F", "G", 40.0)], [1, 3], [5, 9])
    snap = agg.snapshot()
    assert [r.id for r in snap.legit_rows] == ["3", "1"] and snap.fraud_rows == ()
    assert (snap.matched, snap.arrived) == ({"legit": 2, "fraud": 0}, {"legit": 3, "fraud": 1})
    assert (snap.legit_rows[0].partition, snap.legit_rows[0].offset) == (1, 5)
    agg.set_filter(None)  # every row again, newest first
    assert sorted(r.id for r in agg.snapshot().legit_rows) == ["1", "3", "4"]


def test_an_accounts_history_has_it_as_source_and_as_target_newest_first() -> None:
    from tui.model import account_history, label_of

    clock = FakeClock()
    agg = Aggregator(clock)
    agg.add_output("legit", [tx("1", "ALICE0000001", "B", 10.0, ts=1_000),
                             tx("2", "C", "ALICE0000001", 20.0, ts=3_000),
                             tx("3", "C", "D", 30.0, ts=4_000)])
    agg.add_output("fraud", [tx("4", "ALICE0000001", "E", 950.0, ts=2_000)])
    agg.add_labels([orjson.dumps({"id": "4", "fraud": True, "scenario": "large_amount"})])
    recent, labels = agg.recent(), agg.labels()
    history = account_history("ALICE0000001", recent)
    assert [r.id for r in history] == ["2", "4", "1"]
    assert history[1].topic == "streaming.transactions.fraud"
    assert label_of("4", labels) is not None and label_of("4", labels).scenario == "large_amount"
    assert label_of("1", labels) is None


def test_the_recent_records_keep_the_newest_with_where_each_was_read() -> None:
    from tui.recent import RecentRecords

    kept = RecentRecords(4)
    kept.add([b"a", b"b", b"c"], [0, 1, 2], [10, 11, 12], 1_000)
    kept.add([b"d", None, b"f"], [3, 0, 1], [13, 14, 15], 2_000)  # wraps round the ring
    assert len(kept) == 4
    assert [(s.value, s.partition, s.offset, s.arrived_ms) for s in kept.newest()] == [
        (b"f", 1, 15, 2_000), (b"d", 3, 13, 2_000), (b"c", 2, 12, 1_000)]  # None not shown
    copy = kept.copy()
    kept.add([b"g", b"h", b"i", b"j", b"k"], [0] * 5, list(range(20, 25)), 3_000)
    assert [s.value for s in kept.newest(2)] == [b"k", b"j"]  # a batch larger than the ring
    assert [s.value for s in kept.newest()] == [b"k", b"j", b"i", b"h"]
    assert [s.value for s in copy.newest()] == [b"f", b"d", b"c"]  # the copy stands apart
