"""Stateful rules: each fires on the pattern it is named for, and not on ordinary traffic."""

import math
import random
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.detector.rules import (
    NO_GAP_S,
    AccountPace,
    AmountAnomaly,
    CounterpartyNovelty,
    FanIn,
    PayeeHistory,
    PayerMix,
    RuleSettings,
    SourceRules,
    StatefulRules,
    Velocity,
)

MINUTE = 60_000


def test_velocity_fires_on_a_burst_from_one_source() -> None:
    # A card first seen a minute after the detector started watching is a new account
    # (here, where new means younger than a minute): its burst is judged by the count.
    rule = Velocity(RuleSettings(velocity_count=5, new_account_s=60))
    rule.evaluate("someone", 0)
    verdicts = [rule.evaluate("card", ts) for ts in range(MINUTE, MINUTE + 5000, 1000)]
    assert [n for n, _ in verdicts] == [1, 2, 3, 4, 5]
    assert [hit is not None for _, hit in verdicts] == [False] * 4 + [True]
    assert verdicts[-1][1].reason == "5 transactions from the source within 60 s"


def test_a_detector_younger_than_a_window_judges_no_source_by_its_count_alone() -> None:
    # Every source it has seen, it has seen for less than a window: all their payments
    # lie in it, so none of them is beyond chance at a pace of their own, and none is
    # new (the detector had not watched before they came). At ten times the rate
    # every busy account pays eight times a minute: not a burst.
    rule = Velocity(RuleSettings(velocity_count=5))
    verdicts = [rule.evaluate(source, ts) for ts in range(0, 50_000, 1000)
                for source in ("busy", "busier")]
    assert max(n for n, _ in verdicts) == 50
    assert all(hit is None for _, hit in verdicts)


def test_velocity_forgets_what_left_the_window() -> None:
    rule = Velocity(RuleSettings(velocity_count=3))
    for ts in (0, 10_000):
        rule.evaluate("card", ts)
    n, hit = rule.evaluate("card", MINUTE + 5_000)  # the first one has left the window
    assert (n, hit) == (2, None)


def test_velocity_ignores_an_ordinary_spender() -> None:
    rule = Velocity(RuleSettings(velocity_count=5))
    assert all(rule.evaluate("card", ts)[1] is None for ts in range(0, 100 * MINUTE, MINUTE))


def test_fan_in_counts_distinct_sources_paying_one_target() -> None:
    rule = FanIn(RuleSettings(fan_in_sources=3))
    assert rule.evaluate("mule", "a", 0) == (1, None)
    assert rule.evaluate("mule", "a", 1000)[0] == 1  # the same source again is not new
    assert rule.evaluate("shop", "b", 2000)[0] == 1  # another target is apart
    assert rule.evaluate("mule", "b", 3000)[0] == 2
    n, hit = rule.evaluate("mule", "c", 4000)
    assert n == 3
    assert hit is not None and hit.reason == "3 distinct sources paid the target within 60 min"


def test_fan_in_late_record_is_judged_without_state() -> None:
    rule = FanIn(RuleSettings(fan_in_sources=2, fan_in_window_s=60))
    rule.evaluate("mule", "a", 10 * MINUTE)
    assert rule.evaluate("mule", "b", 5 * MINUTE) == (0, None)
    assert rule.events.late == 1


def test_amount_anomaly_fires_on_a_sudden_large_amount() -> None:
    rule = AmountAnomaly(RuleSettings(anomaly_ratio=5, anomaly_z=4, anomaly_history=5))
    rng = random.Random(1)
    for _ in range(30):
        assert rule.evaluate("acct", rng.uniform(20, 60))[1] is None
    score, hit = rule.evaluate("acct", 2500.0)
    assert score > 4
    assert hit is not None and hit.rule == "amount_anomaly"
    assert "x the account's mean" in hit.reason


def test_amount_anomaly_needs_history_and_judges_each_account_by_its_own() -> None:
    rule = AmountAnomaly(RuleSettings(anomaly_ratio=5, anomaly_z=4, anomaly_history=5))
    assert rule.evaluate("new", 5000.0) == (0.0, None)  # nothing to compare with yet
    for _ in range(10):
        rule.evaluate("big spender", 4000.0)
        rule.evaluate("small spender", 10.0)
    assert rule.evaluate("big spender", 5000.0)[1] is None
    assert rule.evaluate("small spender", 5000.0)[1] is not None


def test_amount_anomaly_forgets_the_oldest_accounts_beyond_its_bound() -> None:
    rule = AmountAnomaly(max_accounts=100)
    for i in range(1000):
        rule.evaluate(f"acct-{i}", 10.0)
    assert len(rule._accounts) == 100


def test_settings_changed_live_apply_to_rules_already_running() -> None:
    settings = RuleSettings(velocity_count=10, new_account_s=60)
    rule = Velocity(settings)
    rule.evaluate("someone", 0)  # the card is a new account when it comes a minute on
    assert all(rule.evaluate("card", MINUTE + ts)[1] is None for ts in range(0, 3000, 1000))
    settings.velocity_count = 4
    assert rule.evaluate("card", MINUTE + 3000)[1] is not None
    settings.velocity_window_s = 1.5
    rule.configure()
    assert rule.evaluate("card", MINUTE + 4000)[0] == 2  # 3000 and 4000 are within 1.5 s


def test_the_grace_period_and_the_anomalys_history_change_live_too() -> None:
    settings = RuleSettings(velocity_count=100)
    rule = Velocity(settings)
    rule.evaluate("card", 60_000)
    assert rule.evaluate("card", 45_000)[0] == 0  # 15 s late: beyond the 10 s of grace
    settings.window_grace_s = 20
    rule.configure()
    assert rule.evaluate("card", 45_000)[0] == 1  # within the new grace: in its window
    assert rule.evaluate("card", 61_000)[0] == 3  # and in the windows after it

    anomaly = AmountAnomaly(settings)
    for account in ("acct", "other"):
        for _ in range(3):
            anomaly.evaluate(account, 40.0)
    assert anomaly.evaluate("acct", 4000.0)[1] is None  # three payments are no history yet
    settings.anomaly_history = 3
    assert anomaly.evaluate("other", 4000.0)[1] is not None


def test_a_busy_account_at_its_usual_pace_is_no_burst_but_a_burst_above_it_is() -> None:
    rule = Velocity(RuleSettings(velocity_count=5, velocity_ratio=4))
    # A shop's account paying every 5 s for two hours: 12 a minute is its habit.
    verdicts = [rule.evaluate("shop", ts) for ts in range(0, 120 * MINUTE, 5_000)]
    assert all(hit is None for _, hit in verdicts[len(verdicts) // 2:])
    assert verdicts[-1][0] == 12
    # A quiet account paying once every ten minutes, then six times in a minute.
    for ts in range(0, 120 * MINUTE, 10 * MINUTE):
        assert rule.evaluate("quiet", ts)[1] is None
    burst = [rule.judge("quiet", 120 * MINUTE + i * 5_000) for i in range(6)]
    n, usual, gap, hit = burst[-1]
    assert n == 6 and usual < 0.5 and gap == 5.0
    assert hit is not None and hit.reason.startswith("6 transactions from the source")


def steady_stream(pace: AccountPace, start: int, end: int, every: int = 500) -> None:
    """Other sources paying, one every ``every`` ms: the partition's ordinary traffic."""
    for ts in range(start, end, every):
        pace.observe(f"other-{ts % 997}", ts, MINUTE, 0)


def test_pace_predicts_from_the_past_without_the_burst_itself() -> None:
    pace = AccountPace(half_life_ms=60 * MINUTE)
    assert pace.observe("new", 0, MINUTE, 0)[0] == 0.0  # no past, no prediction
    for ts in range(0, 60 * MINUTE, MINUTE):  # one a minute for an hour
        steady_stream(pace, ts, ts + MINUTE)
        pace.observe("acct", ts, MINUTE, 0)
    assert 0.8 < pace.observe("acct", 60 * MINUTE, MINUTE, 0)[0] < 1.2
    # Ten more within the same minute: they do not raise the bar they are judged by.
    for i in range(10):
        assert pace.observe("acct", 60 * MINUTE + i, MINUTE, i + 1)[0] < 1.3


def test_a_stream_that_gets_busier_raises_what_every_pace_predicts() -> None:
    pace = AccountPace(half_life_ms=60 * MINUTE)
    for ts in range(0, 60 * MINUTE, MINUTE):
        steady_stream(pace, ts, ts + MINUTE)
        pace.observe("acct", ts, MINUTE, 0)
    before = pace.observe("acct", 60 * MINUTE, MINUTE, 0)[0]
    # Ten times the traffic for two minutes, this account's share of it included. The
    # long-run rate takes in those two minutes too (twenty of the old ones).
    for ts in range(60 * MINUTE + 6_000, 62 * MINUTE, 6_000):
        steady_stream(pace, ts, ts + 6_000, every=50)
        pace.observe("acct", ts, MINUTE, 0)
    assert 5.0 < pace.busier(62 * MINUTE) < 7.0
    assert pace.observe("acct", 62 * MINUTE, MINUTE, 9)[0] > 5.0 * before


def test_a_changelog_of_a_detector_without_traffic_counts_is_read() -> None:
    # What a detector of the version before wrote under "" (its velocity window's
    # newest time, and [first, at, count] of a "source" named ""), as a newer one reads
    # it while both share the group during an upgrade: the counts start over.
    rules = SourceRules(RuleSettings())
    rules.restore("/", {"velocity": 5 * MINUTE, "pace": [0, 5 * MINUTE, 12.0],
                        "amount_anomaly": None})
    rules.restore("/", {"velocity": 5 * MINUTE, "pace": None})
    assert rules.velocity is not None
    assert rules.velocity.pace.state_of("") is None  # no counts: they start over
    hits: list[Any] = []
    rules.evaluate("acct", "shop", 10.0, 6 * MINUTE, hits, {})
    assert hits == []


def test_a_sparse_stream_reads_as_steady() -> None:
    pace = AccountPace(half_life_ms=60 * MINUTE)
    for ts in range(0, 60 * MINUTE, 5 * MINUTE):  # a payment every five minutes
        pace.observe("acct", ts, MINUTE, 0)
    # Three in a few seconds are chance, not a stream a hundred times busier.
    for i in range(3):
        pace.observe("acct", 60 * MINUTE + i * 1_000, MINUTE, i)
    assert 0.9 < pace.busier(60 * MINUTE + 3_000) < 1.2


def test_velocity_stays_quiet_when_everyone_pays_more_but_fires_on_one_burst() -> None:
    rule = Velocity(RuleSettings(velocity_count=8))
    end = busy_account_through_a_tenfold_stream(rule, 60 * MINUTE)
    # A card tested in the same stream: ten payments in ten seconds.
    burst = [rule.evaluate("card", end + i * 1_000) for i in range(10)]
    assert burst[-1][1] is not None


def test_a_young_stream_that_gets_busier_judges_each_source_by_its_share() -> None:
    # A detector two minutes old has no hour of habit to scale: the stream tenfold
    # makes a busy account pay ten times what its two minutes say. Its share of the
    # traffic is what did not change.
    rule = Velocity(RuleSettings(velocity_count=8))
    end = busy_account_through_a_tenfold_stream(rule, 2 * MINUTE, quiet=True)
    # The quiet account, known as such, paying ten times in ten seconds.
    burst = [rule.judge("quiet", end + i * 1_000) for i in range(10)]
    n, usual, _, hit = burst[-1]
    assert n == 10 and 0 < usual < 2.5 and hit is not None


def test_sources_first_seen_as_the_stream_gets_busier_are_no_burst_at_its_pace() -> None:
    # A detector a minute old, then the whole stream tenfold: accounts it first sees
    # then pay at the new rate from their first payment on, twelve a minute for a
    # busy one; nothing before tells their pace, and chance at it explains them.
    rule = Velocity(RuleSettings(velocity_count=8))
    for ts in range(0, MINUTE, 30_000):
        steady_stream(rule.pace, ts, ts + 30_000)
    for ts in range(MINUTE, 4 * MINUTE, 5_000):
        steady_stream(rule.pace, ts, ts + 5_000, every=50)
        n, hit = rule.evaluate("busy", ts)
        assert hit is None, (ts - MINUTE, n)
    assert n == 12


def busy_account_through_a_tenfold_stream(rule: Velocity, before_ms: int,
                                          quiet: bool = False) -> int:
    """A steady stream for ``before_ms`` in which a busy account pays twice a minute
    (and, with ``quiet``, another once a minute), then the whole stream tenfold for
    three minutes (the generator's rate raised), the busy account too: never a hit for
    it. The time the tenfold stream ends."""
    for ts in range(0, before_ms, 30_000):
        steady_stream(rule.pace, ts, ts + 30_000)
        assert rule.evaluate("busy", ts)[1] is None
        if quiet and ts % MINUTE == 0:
            assert rule.evaluate("quiet", ts + 1)[1] is None
    for ts in range(before_ms, before_ms + 3 * MINUTE, 3_000):
        steady_stream(rule.pace, ts, ts + 3_000, every=50)
        n, hit = rule.evaluate("busy", ts)
        assert hit is None, (ts - before_ms, n)
    return before_ms + 3 * MINUTE


def test_the_streams_seconds_and_a_sources_base_come_back_from_the_changelog() -> None:
    pace = AccountPace()
    for ts in range(0, 3 * MINUTE, MINUTE // 2):
        steady_stream(pace, ts, ts + MINUTE // 2)
        pace.observe("acct", ts, MINUTE, 0)
    restored = AccountPace()
    for key, state in pace.changes():
        restored.restore(key, state)
    assert restored.state_of("") == pace.state_of("")
    expected = pace.observe("acct", 3 * MINUTE, MINUTE, 0)[0]
    assert expected > 0 and restored.observe("acct", 3 * MINUTE, MINUTE, 0)[0] == expected
    # The stream's state of a detector before the seconds: its window is counted again,
    # and the stream's rates alone judge meanwhile.
    older = AccountPace()
    older.restore("", restored.state_of("")[:4])
    older.restore("acct", restored.state_of("acct"))
    assert older.observe("acct", 3 * MINUTE + 1_000, MINUTE, 0)[0] > 0


def test_pace_state_goes_to_the_changelog_and_comes_back() -> None:
    pace = AccountPace()
    for ts in range(0, 30 * MINUTE, MINUTE):
        pace.observe("acct", ts, MINUTE, 0)
    restored = AccountPace()
    for key, state in pace.changes():
        restored.restore(key, state)
    assert restored.observe("acct", 30 * MINUTE, MINUTE, 0)[0] == \
        pace.observe("acct", 30 * MINUTE, MINUTE, 0)[0]


def test_amount_anomaly_gives_the_ratio_to_the_accounts_mean_and_its_history() -> None:
    rule = AmountAnomaly(RuleSettings(anomaly_history=5))
    assert rule.judge("acct", 40.0)[1:4] == (0.0, 1.0, 0)  # nothing to compare with yet
    _, _, ratio, history, _ = rule.judge("acct", 400.0)
    assert (ratio, history) == (10.0, 1)


def test_the_gap_is_the_time_since_the_sources_previous_payment() -> None:
    pace = AccountPace()
    assert pace.observe("acct", 10_000, MINUTE, 0)[1] == NO_GAP_S  # no previous one
    assert pace.observe("acct", 12_500, MINUTE, 1)[1] == 2.5
    assert pace.observe("acct", 11_000, MINUTE, 2)[1] == 0.0  # out of order
    assert pace.observe("acct", 72_500, MINUTE, 0)[1] == 60.0
    rule = Velocity()
    assert rule.judge("card", 0)[2] == NO_GAP_S
    assert rule.judge("card", 4_000)[2] == 4.0


def test_the_log_habit_judges_a_tenth_and_ten_times_the_usual_alike() -> None:
    rule = AmountAnomaly()
    rng = random.Random(2)
    for _ in range(30):
        rule.judge("acct", 40.0 * math.exp(rng.gauss(0, 0.3)))
    usual = rule.judge("acct", 40.0)[1]
    tenth, ten_times = rule.judge("acct", 4.0)[1], rule.judge("acct", 400.0)[1]
    assert abs(usual) < 1.0
    assert tenth < -5 and ten_times > 5 and abs(tenth + ten_times) < 1.0
    # The arithmetic z barely notices a tenth: the spread in money is wide above.
    assert rule.judge("acct", 4.0)[0] > -3


def test_the_log_habit_is_guarded_by_a_prior_while_young() -> None:
    rule = AmountAnomaly()
    assert rule.judge("acct", 40.0)[1] == 0.0  # no habit yet
    # One payment of 40: 44 is ordinary and 400 is not, but not infinitely so.
    assert abs(rule.judge("acct", 44.0)[1]) < 0.5
    assert 2 < AmountAnomaly().judge("x", 40.0)[1] + _second_log_z(400.0) < 8


def _second_log_z(amount: float) -> float:
    rule = AmountAnomaly()
    rule.judge("acct", 40.0)
    return rule.judge("acct", amount)[1]


def test_a_takeovers_first_transfer_does_not_make_the_next_look_usual() -> None:
    rule = AmountAnomaly()
    for amount in (38.0, 41.0, 40.0, 42.0, 39.0):
        rule.judge("acct", amount)
    first = rule.judge("acct", 1_000.0)[1]
    second = rule.judge("acct", 1_000.0)[1]
    assert first > 10 and second > 4  # the habit moved by at most a few spreads
    # In money too: every transfer is still many times the account's mean, and fires.
    _, _, ratio, _, hit = rule.judge("acct", 1_000.0)
    assert ratio > 5 and hit is not None


def test_amount_history_goes_to_the_changelog_and_comes_back_even_from_older_ones() -> None:
    rule = AmountAnomaly()
    for amount in (10.0, 20.0, 40.0, 80.0):
        rule.judge("acct", amount)
    restored = AmountAnomaly()
    for key, state in rule.changes():
        restored.restore(key, state)
    assert restored.judge("acct", 500.0) == rule.judge("acct", 500.0)
    # A changelog of before the log habit: [count, mean, m2], the habit from those.
    restored.restore("old", [10, 40.0, 9 * 12.0 ** 2])
    assert abs(restored.judge("old", 40.0)[1]) < 0.5
    assert restored.judge("old", 400.0)[1] > 5


def test_a_run_of_new_payees_grows_in_a_burst_and_ends_at_a_usual_one() -> None:
    novelty = CounterpartyNovelty()
    runs = [novelty.judge("CARD", f"SHOP{i}", i * 1000)[2] for i in range(4)]
    assert runs == [1, 2, 3, 4]
    assert novelty.judge("CARD", "SHOP0", 5000)[2] == 0  # a payee it knows
    restored = CounterpartyNovelty()
    for key, state in novelty.changes():
        restored.restore(key, state)
    assert restored.judge("CARD", "SHOP9", 6000)[2] == novelty.judge("CARD", "SHOP9", 6000)[2]
    restored.restore("OLD", [["SHOP1"], 1.0, 0])  # a changelog from before the run length
    assert restored.judge("OLD", "SHOP2", 1000)[2] == 1


def test_a_payee_nobody_paid_before_reads_zero_and_a_popular_one_more() -> None:
    payees = PayeeHistory(half_life_ms=60 * MINUTE, max_accounts=3)
    assert payees.evaluate("MULE", 0) == 0.0
    for ts in range(0, 10 * MINUTE, MINUTE):
        payees.evaluate("GROCER", ts)
    before = payees.evaluate("GROCER", 10 * MINUTE)
    assert 9 < before < 10  # ten payments before this one, a little decayed
    # An hour later, those and the one just made count half.
    assert payees.evaluate("GROCER", 70 * MINUTE) == pytest.approx((before + 1) / 2)
    for other in ("A", "B", "C"):  # beyond three accounts the oldest is forgotten
        payees.evaluate(other, 70 * MINUTE)
    assert payees.evaluate("MULE", 70 * MINUTE) == 0.0


def test_full_rules_give_the_model_every_figure_and_keep_state_per_key() -> None:
    rules = StatefulRules(novelty=True)
    _, figures = rules.evaluate("ACC", "SHOP", 12.5, 0)
    assert set(figures) == {"velocity", "velocity_usual", "gap_s", "amount_z",
                            "amount_log_z", "amount_ratio", "history", "novelty",
                            "new_payees", "new_streak", "fan_in", "payee_paid",
                            "new_account", "tiny_payees", "fan_in_new", "new_payer_share"}
    # One changelog record per key, with every store's state of it.
    source = dict(rules.by_source.changes())
    # "": the velocity window's newest event time and the pace's traffic counts
    assert set(source) == {"/ACC", "/"}
    assert set(source["/ACC"]) == {"velocity", "pace", "amount_anomaly", "novelty",
                                   "card_testing"}
    assert source["/"]["velocity"] == 0
    target = dict(rules.by_target.changes())
    assert set(target) == {"/SHOP", "/"} and set(target["/SHOP"]) == {
        "fan_in", "fan_in_suspects", "fan_in_new", "payer_mix", "payee"}


def restored(records: list[tuple[str, Any]], novelty: bool = True) -> SourceRules:
    rules = SourceRules(novelty=novelty)
    for key, state in records:
        rules.restore(key, state)
    return rules


def test_a_changelog_record_holds_every_store_of_its_key() -> None:
    """Compaction keeps only the newest record of a key: a record written when one
    store changed must still carry what the others hold."""
    rules = SourceRules(novelty=True)
    log: list[tuple[str, Any]] = []
    for i, ts in enumerate((0, 60_000, 120_000)):
        rules.evaluate("ACC", f"SHOP{i}", 20.0 + i, ts, [], {})
        log += rules.changes()
    assert rules.anomaly is not None  # one store changes
    rules.anomaly.judge_batch(rules.slots.of(["ACC"]), np.array([35.0]))
    [(key, last)] = rules.changes()
    assert key == "/ACC" and set(last) == {"velocity", "pace", "amount_anomaly", "novelty",
                                             "card_testing"}
    compacted = list(dict([*log, (key, last)]).items())  # the newest record of each key
    back = restored(compacted)
    assert dict(back.changes()) == {}  # restoring is not a change
    for name, store in back.stores.items():
        kept = rules.stores[name].state_of("ACC")
        assert store.state_of("ACC") == kept
        assert kept is not None or name == "card_testing"  # it keeps tiny payments only
    again: list[Any] = [[], {}]
    rules.evaluate("ACC", "SHOP1", 21.0, 180_000, *again)
    restored_figures: list[Any] = [[], {}]
    back.evaluate("ACC", "SHOP1", 21.0, 180_000, *restored_figures)
    assert restored_figures == again  # the same verdict and figures as the original


def test_a_key_is_deleted_from_the_changelog_once_no_store_holds_it() -> None:
    rules = SourceRules(novelty=True)
    rules.evaluate("ACC", "SHOP", 20.0, 0, [], {})
    rules.changes()
    assert rules.anomaly is not None  # one store forgot it
    rules.anomaly.restore("ACC", None)
    rules.anomaly._changed.add("ACC")
    record = dict(rules.changes())["/ACC"]
    assert record is not None and record["amount_anomaly"] is None and record["pace"]
    for store in rules.stores.values():  # every store forgot it
        store.restore("ACC", None)
        store._changed.add("ACC")
    deleted = dict(rules.changes())
    assert deleted["/ACC"] is None  # a tombstone, and one for each older record
    deleted.pop("/")  # the window's newest event time and the traffic counts, which stay
    assert deleted == {"/ACC": None, "velocity/ACC": None, "pace/ACC": None,
                       "amount_anomaly/ACC": None, "novelty/ACC": None,
                       "card_testing/ACC": None}


def test_a_changelog_of_a_record_per_store_is_still_read() -> None:
    """Changelogs written before one record held every store: ``"store/key"``."""
    older = [("velocity/ACC", [[0, 60_000], [None, None]]), ("velocity/", 60_000),
             ("pace/ACC", [0, 60_000, 2.0]), ("amount_anomaly/ACC", [2, 20.5, 0.5]),
             ("novelty/ACC", [["SHOP0", "SHOP1"], 1.5, 60_000, 2]),
             ("/ACC", None)]  # then a record of today's, a tombstone
    back = restored(older[:5])
    assert back.velocity.pace.state_of("ACC") == [0, 60_000, 2.0, None]  # type: ignore[union-attr]
    assert back.novelty.state_of("ACC")[0] == ["SHOP0", "SHOP1"]  # type: ignore[union-attr]
    assert back.velocity.events.newest == 60_000  # type: ignore[union-attr]
    forgotten = restored(older[:6])
    assert all(store.state_of("ACC") is None for store in forgotten.stores.values())


def test_every_rule_parameter_is_a_live_detector_setting_of_the_same_name() -> None:
    from services.control import SETTINGS

    for name, value in RuleSettings().values().items():
        assert SETTINGS[name].owner == "detector"
        assert SETTINGS[name].check(value) == value  # the default is a valid setting


# -- the held-out families' blind spots ---------------------------------------------------

HOUR = 60 * MINUTE


def watched_for_an_hour(rules: StatefulRules) -> int:
    """A partition's everyday traffic for an hour and a half: 100 customers paying their
    usual shop now and then, so that an account first seen after it is a new one. The
    time it ends."""
    end = 90 * MINUTE
    for ts in range(0, end, 2_000):
        customer = f"CUST{ts // 2_000 % 100}"
        rules.evaluate(customer, f"SHOP{ts // 2_000 % 100 % 7}", 30.0, ts)
    return end


def test_a_new_accounts_burst_never_becomes_its_own_baseline() -> None:
    rules = StatefulRules()
    start = watched_for_an_hour(rules)
    # A new account paying every 5 s for half an hour, ordinary amounts to stores.
    verdicts = [rules.evaluate("NEWACC", f"STORE{i}", 40.0, start + i * 5_000)
                for i in range(360)]
    assert verdicts[0][1]["new_account"] == 1.0
    flagged = [any(h.rule == "velocity" for h in hits) for hits, _ in verdicts]
    assert all(flagged[12:])  # from its first minute to its last
    assert max(figures["velocity_usual"] for _, figures in verdicts) < 3


def test_a_payroll_booked_at_one_instant_is_no_burst() -> None:
    rules = StatefulRules()
    start = watched_for_an_hour(rules)
    run = [rules.evaluate("PAYROLL", f"EMPLOYEE{i}", 520.0, start) for i in range(300)]
    assert not any(hits for hits, _ in run)
    assert run[-1][1]["velocity"] == 300  # the count says what it is, the rule does not fire


def test_card_testing_fires_on_tiny_payments_to_many_payees_not_on_a_coffee_habit() -> None:
    rules = StatefulRules()
    start = watched_for_an_hour(rules)
    # An established customer's card tested with 30 payments of a few units over 20 min.
    testing = [rules.evaluate("CUST7", f"WEBSHOP{i}", 1.0 + i % 4, start + i * 40_000)
               for i in range(30)]
    fired = [any(h.rule == "card_testing" for h in hits) for hits, _ in testing]
    assert fired == [False] * 7 + [True] * 23  # from the 8th distinct payee on
    assert testing[-1][1]["tiny_payees"] == 30
    # Coffee and bus fares every few minutes: tiny, but to the same few payees.
    habit = [rules.evaluate("COMMUTER", ("CAFE", "BUS", "KIOSK")[i % 3], 3.2,
                            start + i * 90_000) for i in range(30)]
    assert not any(hits for hits, _ in habit) and habit[-1][1]["tiny_payees"] == 3


def test_fan_in_of_new_accounts_fires_on_a_slow_ring_not_on_a_busy_or_new_shop() -> None:
    rules = StatefulRules()
    start = watched_for_an_hour(rules)
    # A ring: 20 accounts never seen before pay one new account over six hours.
    ring = [rules.evaluate(f"FRESH{i}", "MULE", 850.0, start + i * 18 * MINUTE)
            for i in range(20)]
    fired = [any(h.rule == "fan_in" for h in hits) for hits, _ in ring]
    assert fired == [False] * 4 + [True] * 16  # from the 5th new payer on
    assert ring[-1][1]["fan_in_new"] == 20 and ring[-1][1]["new_payer_share"] == 1.0
    assert ring[-1][1]["fan_in"] <= 4  # within the hour's window: few, however long it runs
    # A new shop paid by 60 of the established customers within its first hour.
    opens = start + 6 * HOUR
    shop = [rules.evaluate(f"CUST{i}", "NEWSHOP", 25.0, opens + i * MINUTE)
            for i in range(60)]
    assert not any(hits for hits, _ in shop) and shop[-1][1]["fan_in"] == 60


def test_the_new_stores_go_to_the_changelog_and_come_back() -> None:
    rules = StatefulRules()
    start = watched_for_an_hour(rules)
    for i in range(10):
        rules.evaluate("CARD", f"WEBSHOP{i}", 1.5, start + i * 1_000)
        rules.evaluate(f"FRESH{i}", "MULE", 850.0, start + i * 1_000)
    back = StatefulRules()
    for rule_set, into in ((rules.by_source, back.by_source), (rules.by_target, back.by_target)):
        for key, state in rule_set.changes():
            into.restore(key, state)
    assert back.by_source.card_testing.state_of("CARD") == \
        rules.by_source.card_testing.state_of("CARD")
    assert back.by_source.velocity.pace.state_of("CARD") == \
        rules.by_source.velocity.pace.state_of("CARD")
    assert back.by_source.velocity.pace.in_burst("CARD")
    for name in ("fan_in_new", "payer_mix"):
        assert back.by_target.stores[name].state_of("MULE") == \
            rules.by_target.stores[name].state_of("MULE") is not None
    hits, figures = back.evaluate("CARD", "WEBSHOP10", 1.5, start + 10_000)
    assert {h.rule for h in hits} == {"velocity", "card_testing"}
    assert figures["tiny_payees"] == 11


def test_the_card_testing_settings_change_live() -> None:
    settings = RuleSettings(card_test_payees=30)
    rules = StatefulRules(settings)
    verdicts = [rules.evaluate("CARD", f"WEBSHOP{i}", 2.0, i * 30_000) for i in range(10)]
    assert not any(h.rule == "card_testing" for hits, _ in verdicts for h in hits)
    settings.card_test_payees = 10
    hits, _ = rules.evaluate("CARD", "WEBSHOP10", 2.0, 10 * 30_000)
    assert any(h.rule == "card_testing" for h in hits)


@given(st.lists(st.tuples(st.integers(0, 5), st.integers(0, 5),
                          st.floats(0.01, 1e6, allow_nan=False),
                          st.integers(0, 4_102_444_800_000)),  # 1970 to 2100
                max_size=40))
@settings(max_examples=300, deadline=None)
def test_no_stream_of_valid_payments_makes_a_rule_raise(
        payments: list[tuple[int, int, float, int]]) -> None:
    """Months out of order, a payment to a fresh account from long ago, the far
    future: every rule judges it, and every figure is a number."""
    rules = StatefulRules(novelty=True)
    for payer, payee, amount, ts in payments:
        _, features = rules.evaluate(f"P{payer}", f"T{payee}", amount, ts)
        assert all(math.isfinite(value) for value in features.values()), features


def test_a_payment_long_before_the_targets_newest_weighs_nothing_and_says_what_it_was() -> None:
    mix = PayerMix(half_life_ms=3_600_000)
    assert mix.add("MULE", 1_000_000_000_000, new=True, order=1_800_000_000_000) == 1.0
    assert mix.add("SHOP", 1_800_000_000_000, new=False) == 0.0
    assert mix.add("SHOP", 1_000_000_000_000, new=True) == 0.0  # too old to move it
