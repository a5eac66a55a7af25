"""The scaling benchmark's pure parts: what bench.member reports and how it is read,
when a group counts as settled, and the speed-ups, ratios and report built from runs."""

from __future__ import annotations

import argparse
from typing import Any

import pytest
from confluent_kafka import TopicPartition

from bench.harness import Preloaded
from bench.member import report
from bench.scaling import counts_list, member_events, render, settled, summarize


def test_what_a_member_reports_reads_back(capsys: pytest.CaptureFixture[str]) -> None:
    report("assigned", [TopicPartition("in.x-1", 3), TopicPartition("in.x-1", 1),
                        TopicPartition("g-by-target-repartition", 0)],
           {("in.x-1", 1), ("in.x-1", 3), ("g-by-target-repartition", 0)})
    report("revoked", [TopicPartition("in.x-1", 3)],
           {("in.x-1", 1), ("g-by-target-repartition", 0)})
    report("lost", [TopicPartition("in.x-1", 1), TopicPartition("g-by-target-repartition", 0)],
           set())
    text = "2026-01-01 INFO fraud.detector: routing\n" + capsys.readouterr().err
    events = member_events(text)
    assert [(e.event, e.holds) for e in events] == [
        ("assigned", frozenset({("in.x-1", 1), ("in.x-1", 3),
                                ("g-by-target-repartition", 0)})),
        ("revoked", frozenset({("in.x-1", 1), ("g-by-target-repartition", 0)})),
        ("lost", frozenset())]
    assert events[0].at_ns <= events[1].at_ns <= events[2].at_ns


def held(*partitions: int, topic: str = "in") -> frozenset[tuple[str, int]]:
    return frozenset((topic, p) for p in partitions)


def test_a_group_is_settled_when_every_instance_holds_its_share() -> None:
    four = {"in": 4}
    assert settled([held(0, 1, 2, 3)], four)
    assert settled([held(1, 3), held(0, 2)], four)
    assert settled([held(p) for p in range(4)], four)
    # Not yet: an instance without an assignment, or one that has not reported at all.
    assert not settled([held(0, 1, 2, 3), frozenset()], four)
    assert not settled([held(0, 1), None], four)
    # Mid-rebalance: partitions unheld, held twice, or shared unevenly.
    assert not settled([held(0, 1), held(2)], four)
    assert not settled([held(0, 1, 2), held(2, 3)], four)
    assert not settled([held(0, 1, 2), held(3)], four)
    assert not settled([held(0)] * 2, {"in": 1})  # more instances than partitions
    assert not settled([], four)


def test_a_stateful_group_settles_once_both_topics_are_shared() -> None:
    topics = {"in": 4, "rep": 4}
    assert settled([held(0, 1) | held(0, 1, topic="rep"), held(2, 3) | held(2, 3, topic="rep")],
                   topics)
    # Each topic whole, one per instance: the stages on separate instances.
    assert settled([held(0, 1, 2, 3), held(0, 1, 2, 3, topic="rep")], topics)
    # The repartition topic not yet held: the same partition numbers do not stand for it.
    assert not settled([held(0, 1), held(2, 3)], topics)
    assert not settled([held(0, 1, 2, 3) | held(0, 1, topic="rep"), held(2, 3, topic="rep")],
                       topics)


def run(rate: float, partitions: int = 4, other: float = 0.2,
        attempts: int = 1) -> dict[str, Any]:
    return {"msgs_per_s": rate, "cpu_us_per_msg": 2.0, "cores": 0.9, "broker_cores": 0.1,
            "other_cores": other, "idle_cores": 0.8, "attempts": attempts,
            "span_ms": 100_000 / rate * 1000, "partitions": partitions,
            "instance_cores": [0.9], "held_back_s": 0.5, "load_1min": 0.3}


def sample_summary() -> dict[str, Any]:
    runs = {
        1: {"passthrough": [run(400.0), run(600.0), run(500.0)],
            "detector": [run(400.0), run(300.0, attempts=3), run(200.0, other=0.9,
                                                                     attempts=6)]},
        2: {"passthrough": [run(800.0)], "detector": [run(600.0)]},
        4: {"passthrough": [run(1000.0)], "detector": [run(500.0)]},
    }
    return summarize(runs, Preloaded("in", 100_000, 12_600_000, 4, 9_973), cpus=2)


def test_speed_up_against_the_smallest_count_and_ratio_to_the_pass_through() -> None:
    summary = sample_summary()
    rows = {(row["instances"], row["variant"]): row for row in summary["rows"]}
    assert rows[1, "passthrough"]["median"]["msgs_per_s"] == 500.0
    assert rows[1, "detector"]["median"]["msgs_per_s"] == 300.0
    assert rows[1, "detector"]["speed_up"] == 1.0
    assert rows[2, "detector"]["speed_up"] == 2.0
    assert rows[4, "passthrough"]["speed_up"] == 2.0
    assert rows[1, "detector"]["vs_passthrough"] == pytest.approx(0.6)
    assert rows[4, "detector"]["vs_passthrough"] == 0.5
    assert rows[2, "passthrough"]["vs_passthrough"] == 1.0
    assert [row["instances_over_cores"] for row in summary["rows"]] == [False] * 4 + [True] * 2
    assert summary["runs"] == 3 and summary["speed_up_base"] == 1 and summary["cpus"] == 2
    assert [row["noisy_runs"] for row in summary["rows"]] == [0, 1, 0, 0, 0, 0]
    assert summary["attempts"] == 3 + (1 + 3 + 6) + 4
    # 2 cores over the 0.9 + 0.1 the instance and the broker took at N=1: twice at most.
    assert summary["ceilings"]["detector"]["speed_up"] == pytest.approx(2.0)


def test_without_a_pass_through_or_a_base_the_ratios_are_left_out() -> None:
    summary = summarize({2: {"detector": [run(600.0)]}, 4: {"detector": [run(900.0)]}},
                        Preloaded("in", 10, 1_260, 4, 1), cpus=8)
    assert [row["speed_up"] for row in summary["rows"]] == [1.0, 1.5]
    assert [row["vs_passthrough"] for row in summary["rows"]] == [None, None]
    assert "-" in render(summary).splitlines()[4].split()
    assert "more instances than cores" not in render(summary)


def test_the_report_states_the_cores_and_the_partitions_it_had() -> None:
    text = render(sample_summary())
    lines = text.splitlines()
    assert lines[2].split()[:4] == ["N", "variant", "msgs/s", "CPU"]
    assert lines[4].split()[:8] == ["1", "passthrough", "500", "2.00", "0.90", "0.10",
                                    "0.20", "0.80"]
    assert "2.00x" in lines[8]  # N=4 pass-through: twice N=1
    assert "machine: 2 cores" in text and "cannot use more than 2" in text
    assert "with N = 4 there are more instances than cores" in text
    assert "2 cores allow at most 2.00x" in text
    assert "the input had 4 for every N (asked for N" in text  # asked for 1, 2 and 4
    assert lines[5].endswith("400 / 300 / 200*")  # the run other work disturbed
    assert "17 runs for 10; 1 still disturbed, kept and marked *" in text


def test_counts_parse_sorted_and_bounded() -> None:
    assert counts_list("4,1,2,2") == (1, 2, 4)
    for bad in ("", "0,1", "a", "1,99"):
        with pytest.raises(argparse.ArgumentTypeError):
            counts_list(bad)
