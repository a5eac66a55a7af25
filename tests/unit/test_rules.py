"""Stateful rules: each fires on the pattern it is named for, and not on ordinary traffic."""

import random

from services.detector.rules import AmountAnomaly, FanIn, RuleSettings, Velocity

MINUTE = 60_000


def test_velocity_fires_on_a_burst_from_one_source() -> None:
    rule = Velocity(RuleSettings(velocity_count=5))
    verdicts = [rule.evaluate("card", ts) for ts in range(0, 5000, 1000)]
    assert [n for n, _ in verdicts] == [1, 2, 3, 4, 5]
    assert [hit is not None for _, hit in verdicts] == [False] * 4 + [True]
    assert verdicts[-1][1].reason == "5 transactions from the source within 60 s"


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
    rule = AmountAnomaly(RuleSettings(anomaly_ratio=5, anomaly_z=4), history=5)
    rng = random.Random(1)
    for _ in range(30):
        assert rule.evaluate("acct", rng.uniform(20, 60))[1] is None
    score, hit = rule.evaluate("acct", 2500.0)
    assert score > 4
    assert hit is not None and hit.rule == "amount_anomaly"
    assert "x the account's mean" in hit.reason


def test_amount_anomaly_needs_history_and_judges_each_account_by_its_own() -> None:
    rule = AmountAnomaly(RuleSettings(anomaly_ratio=5, anomaly_z=4), history=5)
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
    settings = RuleSettings(velocity_count=10)
    rule = Velocity(settings)
    assert all(rule.evaluate("card", ts)[1] is None for ts in range(0, 3000, 1000))
    settings.velocity_count = 4
    assert rule.evaluate("card", 3000)[1] is not None
    settings.velocity_window_s = 1.5
    rule.configure()
    assert rule.evaluate("card", 4000)[0] == 2  # only 3000 and 4000 are within 1.5 s
