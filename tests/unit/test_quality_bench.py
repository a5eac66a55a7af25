"""The quality benchmark's arithmetic: verdicts against the ground truth, and traffic
that the detector sees in event-time order, labels only after its verdicts."""

import orjson

from bench.quality import Tally, run, traffic


def verdict(tx_id: str, fraud: bool, *rules: str) -> bytes:
    return orjson.dumps({"id": tx_id, "detection": {
        "fraud": fraud, "rules": [{"rule": rule, "reason": "-"} for rule in rules]}})


def test_precision_recall_per_scenario_and_false_alarms_per_rule() -> None:
    truth = {"a": "card_testing", "b": "card_testing", "c": "mule_fan_in", "d": None,
             "e": None, "f": None}
    tally = Tally("full")
    tally.add([verdict("a", True, "velocity"), verdict("b", False),
               verdict("c", True, "fan_in", "model"), verdict("d", True, "amount_threshold"),
               verdict("e", True, "amount_threshold", "model"), verdict("f", False)], truth)
    report = tally.report()
    assert (report["tp"], report["fp"], report["fn"], report["tn"]) == (2, 2, 1, 1)
    assert report["precision"] == 0.5 and report["recall"] == 0.6667
    assert report["f1"] == 0.5714
    assert report["recall_by_scenario"] == {"card_testing": 0.5, "mule_fan_in": 1.0}
    assert report["false_alarms_by_rule"] == {"amount_threshold": 2, "model": 1}


def test_a_small_run_reports_every_detector_on_the_counted_part_only() -> None:
    data = traffic(6_000, 100, seed=3, fraud_rate=0.05)
    assert len(data.records) == 6_000 and len(data.labels) == 6_000
    stamps = [record.timestamp()[1] for record in data.records]
    assert stamps == sorted(stamps) and stamps[-1] - stamps[0] == 59_000  # 100 a second
    result = run(data, 100, batch=1_000, warmup=2_000, label_lag=1)
    assert result["counted"] == 4_000
    for report in result["detectors"].values():
        assert report["tp"] + report["fp"] + report["fn"] + report["tn"] == 4_000
    threshold = result["detectors"]["threshold"]
    assert set(threshold["false_alarms_by_rule"]) <= {"amount_threshold"}
    assert result["model"]["examples"] > 0  # it learnt from labels of scored batches


def test_the_warm_up_bench_grades_both_policies_block_by_block() -> None:
    from bench.warmup import run as warm_up

    data = traffic(6_000, 100, seed=3, fraud_rate=0.05)
    result = warm_up(data, 100, block=2_000)
    for policy in ("always", "trusted"):
        assert len(result[policy]["blocks"]) == 3
        assert all(0 <= block["f1"] <= 1 for block in result[policy]["blocks"])
    # Trust comes only with graded frauds; a model always trusted decides at once.
    always, trusted = result["always"]["decided_after"], result["trusted"]["decided_after"]
    assert always is not None and (trusted is None or trusted >= always)
