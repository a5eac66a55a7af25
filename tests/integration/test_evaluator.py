"""fraud-evaluator on the embedded broker: what it publishes matches what is in the topics.

The generator streams labelled scenarios, the detector judges them, and the evaluator's
quality message must say exactly what a join of the topics, done here by hand, says.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter

import orjson

from services.config import Topics
from services.evaluator import report
from tests.kafka_helpers import (
    MODULES,
    ROOT,
    ServiceProcess,
    produce,
    read_topics,
    start,
    values,
    wait_for_quality,
)


def stop(service: ServiceProcess) -> int:
    service.process.send_signal(signal.SIGTERM)
    return service.wait(10)


def judged_by_hand(verdicts: list[dict], labels: list[dict]) -> dict:
    """The figures the evaluator should publish, from the topics' records."""
    truth = {label["id"]: label for label in labels}
    counts: Counter[str] = Counter()
    scenarios: dict[str, list[int]] = {}
    rules: dict[str, list[int]] = {}
    for verdict in verdicts:
        label = truth[verdict["id"]]
        said, fraud = verdict["detection"]["fraud"], label["fraud"]
        counts[("tp" if said else "fn") if fraud else ("fp" if said else "tn")] += 1
        if fraud:
            caught = scenarios.setdefault(label["scenario"], [0, 0])
            caught[0] += 1
            caught[1] += said
        for rule in verdict["detection"]["rules"]:
            fired = rules.setdefault(rule["rule"], [0, 0])
            fired[0] += 1
            fired[1] += fraud
    return {"counts": dict(counts), "scenarios": scenarios, "rules": rules}


def published(quality: report.Quality) -> dict:
    counts = {"tp": quality.tp, "fp": quality.fp, "fn": quality.fn, "tn": quality.tn}
    return {"counts": {k: v for k, v in counts.items() if v},
            "scenarios": {s.name: [s.frauds, s.caught] for s in quality.scenarios},
            "rules": {r.name: [r.fired, r.frauds] for r in quality.rules}}


def test_the_published_quality_is_the_join_of_the_topics(
    broker: str, topics: Topics, service_env: dict[str, str], services: list[ServiceProcess]
) -> None:
    evaluator = start(services, "evaluator", service_env, "--window", "600")
    start(services, "detector", service_env, "--threshold", "700")
    generator = start(services, "generator", service_env, "--profile", "scenarios",
                      "--count", "3000", "--tps", "1500", "--seed", "11", "--fraud-rate", "0.2")
    assert generator.wait(60) == 0, generator.output()

    found = read_topics(broker, [topics.legit, topics.fraud, topics.labels], 6000, settle=0.5)
    verdicts = values(found[topics.legit]) + values(found[topics.fraud])
    labels = values(found[topics.labels])
    assert len(verdicts) == len(labels) == 3000
    expected = judged_by_hand(verdicts, labels)
    assert expected["counts"]["tp"] and expected["counts"]["fn"]  # a test worth having

    quality = wait_for_quality(broker, topics.status, lambda q: q.joined == 3000)
    assert published(quality) == expected
    assert quality.window_seconds == 600
    assert quality.totals["unmatched_verdicts"] == quality.totals["unmatched_labels"] == 0
    assert quality.totals["pending_verdicts"] == quality.totals["pending_labels"] == 0

    # Stopped, it says goodbye cleanly; a new instance rebuilds the same window.
    assert stop(evaluator) == 0
    start(services, "evaluator", service_env, "--window", "600")
    again = wait_for_quality(broker, topics.status,
                             lambda q: q.instance != quality.instance and q.joined == 3000)
    assert published(again) == expected


def test_bad_records_are_counted_and_skipped(
    broker: str, topics: Topics, service_env: dict[str, str], services: list[ServiceProcess]
) -> None:
    evaluator = start(services, "evaluator", service_env)
    now = int(time.time() * 1000)
    good = {"id": "tx-1", "ts": now, "source": "A", "target": "B", "amount": 950.0,
            "currency": "EUR", "detection": {"fraud": True, "rules": [
                {"rule": "amount_threshold", "reason": "amount >= 900"}]}}
    produce(broker, topics.fraud, [(b"A", b"\xff not json"), (b"A", orjson.dumps(good))])
    produce(broker, topics.labels, [
        (b"tx-0", b'{"id": "tx-0", "fraud": "maybe"}'), (b"tx-x", None),
        (b"tx-1", orjson.dumps({"id": "tx-1", "ts": now, "fraud": True,
                                "scenario": "large_amount", "case": None}))])

    # The labels' keys spread them over partitions, read in no fixed order: wait until
    # all five records are accounted for, then check how.
    quality = wait_for_quality(broker, topics.status, lambda q: q.joined + sum(
        q.totals.get(bad, 0) for bad in ("bad_verdicts", "bad_labels")) == 4)
    assert (quality.tp, quality.precision, quality.recall) == (1, 1.0, 1.0)
    assert quality.totals["bad_verdicts"] == 1
    assert quality.totals["bad_labels"] == 2
    assert evaluator.process.poll() is None  # still running
    assert stop(evaluator) == 0


def test_a_bad_setting_is_one_line_and_exit_code_2() -> None:
    done = subprocess.run([sys.executable, "-m", MODULES["evaluator"]], cwd=ROOT,
                          env={**os.environ, "EVALUATOR_WINDOW": "a minute"},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "fraud-evaluator: error: --window (EVALUATOR_WINDOW): 'a minute' is not a whole "
        "number"]
