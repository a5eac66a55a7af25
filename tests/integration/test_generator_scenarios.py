"""The generator's ground truth as a user meets it: labelled scenarios and a replayed
dataset on the embedded broker, one label per transaction on the labels topic."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from services import control
from services.config import Topics
from services.generator.replay import FEATURES
from services.generator.scenarios import SCENARIOS
from tests.credit_card_csv import fraud_csv
from tests.kafka_helpers import (
    MODULES,
    ROOT,
    ServiceProcess,
    produce,
    read_topic,
    read_topics,
    start,
)
from tests.kafka_helpers import values as decoded


def test_the_scenarios_profile_labels_every_transaction(
    broker: str, topics: Topics, service_env: dict[str, str], services: list[ServiceProcess]
) -> None:
    generator = start(services, "generator", service_env, "--profile", "scenarios",
                      "--count", "3000", "--seed", "7", "--tps", "3000", "--fraud-rate", "0.2")
    assert generator.wait(60) == 0, generator.output()

    found = read_topics(broker, [topics.transactions, topics.labels], 6000, settle=0.5)
    transactions, labels = found[topics.transactions], found[topics.labels]

    assert len(transactions) == len(labels) == 3000
    sent = {m.key(): tx for m, tx in zip(transactions, decoded(transactions), strict=True)}
    assert all(key == tx["source"].encode() for key, tx in sent.items())
    by_id = {m.key().decode(): label for m, label in zip(labels, decoded(labels), strict=True)}
    assert set(by_id) == {tx["id"] for tx in decoded(transactions)}  # one to one
    assert all(label["id"] == key for key, label in by_id.items())
    scenarios = Counter(label["scenario"] for label in by_id.values())
    assert set(scenarios) == {None, *SCENARIOS}  # every scenario, and everyday traffic
    assert all(label["fraud"] == (label["scenario"] is not None) for label in by_id.values())


def test_a_replayed_dataset_sends_its_rows_with_their_labels(
    broker: str, topics: Topics, service_env: dict[str, str], services: list[ServiceProcess],
    tmp_path: Path,
) -> None:
    good = ",".join(["0"] * 29 + ["5", "0"])
    rows = fraud_csv(tmp_path / "cards.csv", 300, extra=["0,1,2", "0," * 30 + "oops", good])
    rows.append({"Amount": 5.0, "Class": 0, **dict.fromkeys(FEATURES, 0.0)})

    generator = start(services, "generator", service_env, "--replay",
                      str(tmp_path / "cards.csv"), "--tps", "2000")
    assert generator.wait(60) == 0
    said = generator.output()
    assert "replayed 301 rows" in said and "(2 bad rows skipped)" in said
    assert said.count("skipped a bad row") == 1  # reported now and then, not every row
    found = read_topics(broker, [topics.transactions, topics.labels], 602, settle=0.5)

    transactions = decoded(found[topics.transactions])
    labels = {label["id"]: label for label in decoded(found[topics.labels])}
    assert len(transactions) == len(labels) == 301
    for tx in transactions:
        row = rows[int(tx["id"].rsplit("-", 1)[1])]  # ids count the rows sent
        assert tx["amount"] == max(0.01, row["Amount"])
        assert tx["features"] == {v: row[v] for v in FEATURES}
        assert labels[tx["id"]]["fraud"] is (row["Class"] == 1)
    assert sum(label["fraud"] for label in labels.values()) == 30


def test_the_tutorial_profile_has_no_ground_truth_to_publish(
    broker: str, topics: Topics, service_env: dict[str, str], services: list[ServiceProcess]
) -> None:
    generator = start(services, "generator", service_env, "--count", "200", "--tps", "2000")
    assert generator.wait(60) == 0
    assert len(read_topic(broker, topics.transactions, 200, settle=0)) == 200
    assert read_topic(broker, topics.labels, 1, timeout=1, settle=0) == []


def test_the_pace_starts_with_the_first_transaction(
    broker: str, topics: Topics, service_env: dict[str, str], services: list[ServiceProcess]
) -> None:
    """Reading a long control topic at start takes a while (here the detector's
    settings, which the generator reads past); that time is not sent in one burst."""
    produce(broker, topics.control,
            [control.command("threshold", 800.0, origin="test") for _ in range(5000)])
    generator = start(services, "generator", service_env, "--count", "50", "--tps", "200")
    assert generator.wait(60) == 0
    stamps = sorted(tx["ts"] for tx in decoded(read_topic(broker, topics.transactions, 50)))
    assert len(stamps) == 50
    # At 200/s a turn lasts 50 ms and makes 10: the 50 take five turns, 250 ms.
    assert stamps[-1] - stamps[0] >= 200
    assert max(Counter(stamps).values()) <= 11  # a turn's worth at a time


@pytest.mark.parametrize(("env", "args", "said"), [
    ({"FRAUD_RATE": "lots"}, [], "--fraud-rate (FRAUD_RATE): 'lots' is not a number"),
    ({}, ["--fraud-rate", "1.5"], "--fraud-rate (FRAUD_RATE): 1.5 is out of range"),
    ({"GENERATOR_PROFILE": "fancy"}, [], "'fancy' is not one of tutorial, scenarios"),
    ({}, ["--replay", "{tmp}/absent.csv"], "cannot read {tmp}/absent.csv"),
    ({}, ["--replay", "{tmp}/other.csv"], "is not in the credit-card fraud layout"),
    ({}, ["--loop"], "--loop goes with --replay"),
])
def test_a_bad_setting_is_one_line_and_exit_code_2(
    tmp_path: Path, env: dict[str, str], args: list[str], said: str
) -> None:
    (tmp_path / "other.csv").write_text("when,what,how much\n1,coffee,3.5\n")
    args = [a.format(tmp=tmp_path) for a in args]
    result = subprocess.run(
        [sys.executable, "-m", MODULES["generator"], *args], cwd=ROOT,
        env={**os.environ, "KAFKA_BROKER_URL": "127.0.0.1:9", **env},
        capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("fraud-generator: error: ")
    assert said.format(tmp=tmp_path) in line
