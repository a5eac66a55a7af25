"""bench.changelog, from a run small enough for a unit test."""

from __future__ import annotations

from bench.changelog import run


def test_each_minute_reports_what_the_commits_wrote_and_which_store_wrote_it() -> None:
    [minute] = run(tps=100, minutes=1, seed=3)
    assert minute["minute"] == 1
    # About a record a second for each key that changed: both stages' keys.
    assert minute["records_per_s"] > 50
    assert minute["bytes_per_tx"] > 0
    assert minute["stages_us"] > 0 and minute["changes_us"] > 0
    # Fan-in and velocity write for every payment; each store is counted apart.
    assert {"fan_in", "velocity"} <= set(minute["bytes_per_key"])
    assert minute["bytes_per_key"]["fan_in"] > 0
    assert minute["bytes_per_key"]["velocity"] > 0
