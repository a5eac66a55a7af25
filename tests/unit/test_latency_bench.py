"""The latency benchmark's arithmetic: the stamp read from an output record,
nearest-rank percentiles, the measured window and the bound for Kafka's readers."""

from __future__ import annotations

import math

import orjson
import pytest

from bench.latency import Window, describe, kafka_bound, percentile, stamp_ms
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
