"""The latency benchmark's arithmetic: the stamp read from an output record,
nearest-rank percentiles, the measured window, the bound for Kafka's readers, and
whether the pipeline kept up."""

from __future__ import annotations

import argparse
import math

import orjson
import pytest

from bench.latency import (
    Window,
    cpu_ticks,
    describe,
    kafka_bound,
    keeps_up,
    percentile,
    render,
    stamp_ms,
    summarize,
    trend,
)
from services.generator.synthetic import TutorialProfile
from services.transaction import decode, extend


def test_the_stamp_of_a_made_transaction_and_of_its_verdict() -> None:
    ts = 1_700_000_000_123
    (_, made), = TutorialProfile(seed=1).batch(1, ts)
    assert stamp_ms(made) == ts
    # The detector appends its verdict, which may hold timestamps of its own.
    routed = extend(made, decode(made), b',"detection":{"fraud":true,"ts":5}')
    assert stamp_ms(routed) == ts
    # Written by another hand: spaces, another order, a nested "ts" after it.
    assert stamp_ms(orjson.dumps({"ts": 42, "x": {"ts": 7}})) == 42
    assert stamp_ms(b'{"id": "a", "ts": 1700000000000, "amount": 5}') == 1_700_000_000_000


@pytest.mark.parametrize("value", [None, b"", b'{"amount": 5}', b'{"ts": "soon"}',
                                   b'{"counts": 5}', b'{"ts":'])
def test_no_stamp(value: bytes | None) -> None:
    assert stamp_ms(value) is None


def test_nearest_rank_percentiles() -> None:
    values = [float(v) for v in range(1, 1001)]  # 1..1000
    assert percentile(values, 0.50) == 500
    assert percentile(values, 0.99) == 990
    assert percentile(values, 0.999) == 999
    assert percentile(values, 1.0) == 1000
    assert percentile([3.0], 0.999) == 3.0
    assert percentile([1.0, 2.0], 0.0) == 1.0
    assert math.isnan(percentile([], 0.5))
    figures = describe([5.0, 1.0, 3.0, 2.0, 4.0], seconds=2.0)
    assert figures == {"p50": 3.0, "p99": 5.0, "p999": 5.0, "max": 5.0, "count": 5,
                       "rate": 2.5}


def record(ts: int) -> bytes:
    return b'{"id":"x","ts":%d,"amount":1.0}' % ts


def test_the_window_skips_the_warm_up_and_stops_after_its_seconds() -> None:
    window = Window(warmup=2.0, seconds=1.0)
    window.add(10_000.0, [])  # nothing yet: the warm-up has not started
    assert window.first_ms is None and not window.done(1e12)
    window.add(10_000.0, [record(9_000)])  # the first output: warm-up until 12,000
    window.add(11_999.0, [record(11_990)])
    assert window.latencies_ms == []
    window.add(12_000.0, [record(11_990), record(11_999)])
    window.add(12_999.0, [record(12_989), b'{"amount":1}'])
    assert not window.done(12_999.0)
    window.add(13_000.0, [record(12_000)])  # after the window
    assert window.done(13_000.0)
    assert window.latencies_ms == [9.5, 0.5, 9.5]  # ts is the start of its millisecond
    assert window.unstamped == 1


def test_the_bound_for_a_read_committed_reader_on_kafka() -> None:
    measured = {"p50": 3.0, "p99": 9.0, "p999": 12.0, "max": 20.0, "count": 10.0,
                "rate": 1.0}
    assert kafka_bound(measured, hops=2, interval_ms=100.0) == {
        "p50": 203.0, "p99": 209.0, "p999": 212.0, "max": 220.0}
    assert kafka_bound(measured, hops=0, interval_ms=100.0)["p99"] == 9.0


def test_the_window_keeps_each_latency_with_its_arrival() -> None:
    ticks = iter([(100, 400), (850, 1_400)])  # the machine's CPUs: busy, all ticks
    window = Window(warmup=0.0, seconds=10.0, ticks=lambda: next(ticks))
    for at in range(10_000, 20_000, 500):  # a record every 500 ms, later ones later
        window.add(float(at), [record(at - (4 if at < 15_000 else 30))])
    assert window.done(20_000.0)
    figures = window.figures()
    # First fifth: arrivals before 12,000 ms; last fifth: from 18,000 ms.
    assert figures["early_p50"] == 3.5 and figures["late_p50"] == 29.5
    assert figures["count"] == 20 and figures["rate"] == 2.0
    assert figures["busy"] == 0.75  # 750 of the 1,000 ticks between open and close
    busy, total = cpu_ticks() or (0, 1)  # as read from /proc/stat on Linux
    assert 0 <= busy <= total


def steady_and_climbing(climb_ms: float) -> dict[str, float]:
    """Figures of a ten-second window whose latency grows by ``climb_ms`` a second."""
    arrivals = [float(t) for t in range(0, 10_000, 10)]
    latencies = [5.0 + climb_ms * t / 1000 for t in arrivals]
    return trend([(at, i) for i, at in enumerate(arrivals)], latencies, 0.0, 10_000.0)


def test_a_pipeline_that_keeps_up_has_a_steady_latency() -> None:
    steady = steady_and_climbing(0.0)
    assert steady == {"early_p50": 5.0, "late_p50": 5.0}
    assert keeps_up(steady)
    assert keeps_up(steady_and_climbing(0.5))  # +4 ms over the window: noise
    behind = steady_and_climbing(5.0)  # a backlog: from about 10 to 50 ms
    assert behind["late_p50"] - behind["early_p50"] == pytest.approx(40.0, abs=0.1)
    assert not keeps_up(behind)
    assert keeps_up({"early_p50": math.nan, "late_p50": 7.0})  # too few records to tell
    # Both ends slow, the end no slower than twice the start: not a growing backlog.
    assert keeps_up({"early_p50": 30.0, "late_p50": 55.0})


def test_a_variant_that_falls_behind_misses_its_goal_whatever_its_p99() -> None:
    run = {"p50": 20.0, "p99": 45.0, "p999": 48.0, "max": 49.0, "count": 99_000.0,
           "rate": 9_900.0, "busy": 0.97}
    args = argparse.Namespace(seconds=10.0, warmup=2.0, runs=1, rates=[10_000.0])
    steady = summarize({"full-eos": {10_000.0: [{**run, "early_p50": 19.0,
                                                 "late_p50": 21.0}]}}, args)
    behind = summarize({"full-eos": {10_000.0: [{**run, "early_p50": 10.0,
                                                 "late_p50": 40.0}]}}, args)
    assert steady["goals"][0]["met"] and not behind["goals"][0]["met"]
    assert "falling behind" in behind["goals"][0]["what"]
    assert behind["variants"]["full-eos"]["by_rate"]["10000"]["keeps_up"] is False
    shown = render(behind)
    assert "10.0→40.0 behind" in shown and "97%" in shown
    assert "Falling behind: full-eos at 10,000/s" in shown
