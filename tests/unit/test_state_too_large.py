"""A target paid by tens of thousands within fan-in's window has a state larger than
a Kafka record may be: its change is left out of the changelog, logged and counted,
and every other change still goes out; the detector does not stop at every commit."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from confluent_kafka import Producer

from services import kafka
from services.detector.rules import RuleSettings, TargetRules
from services.detector.service import produce_all
from services.detector.stages import SourceStage, TargetStage
from services.detector.stateful import InternalTopics, StatefulDetector
from services.kafka import MAX_MESSAGE_BYTES

START = 1_700_000_000_000


def test_a_state_too_large_for_a_record_is_left_out_and_counted(
        caplog: pytest.LogCaptureFixture) -> None:
    target = TargetRules(RuleSettings())
    payers = 60_000  # in 50 minutes: all in the hour-long window
    for start in range(0, payers, 5_000):
        names = [f"P{i:011d}" for i in range(start, start + 5_000)]
        times = [START + i * 50 for i in range(start, start + 5_000)]
        target.judge_columns(["BUSYSHOP"] * 5_000, names, times, np.zeros(5_000, bool),
                             np.zeros(5_000, bool), times)
    target.judge_columns(["QUIETSHOP"], ["P1"], [START + 3_000_000], np.zeros(1, bool),
                         np.zeros(1, bool), [START + 3_000_000])
    records = {key: value for key, value in target.encoded_changes()}
    assert len(records[b"/BUSYSHOP"] or b"") > MAX_MESSAGE_BYTES
    outputs = [("changelog", key, value, None, 0) for key, value in records.items()]

    detector = StatefulDetector("unused:9092", "transactions", InternalTopics.of("g"),
                                SourceStage(lambda: None, "a"),  # type: ignore[arg-type,return-value]
                                TargetStage(TargetRules, "a"), RuleSettings())
    # A real client, no cluster: the size is checked as the record is handed to it.
    producer = Taken(kafka.producer("127.0.0.1:1"))
    with caplog.at_level(logging.ERROR):
        produce_all(producer, outputs, too_large=detector.state_too_large)  # type: ignore[arg-type]
    assert sorted(producer.taken) == [b"/", b"/QUIETSHOP"]  # the stream-wide state, the quiet shop
    assert detector.counters()["state_too_large"] == 1
    assert "BUSYSHOP" in caplog.text and "more than a record may hold" in caplog.text
    producer.client.purge()


class Taken:
    """A client that notes the keys it took."""

    def __init__(self, client: Producer) -> None:
        self.client = client
        self.taken: list[bytes] = []

    def produce(self, topic: str, value: bytes | None, key: bytes, *args: object) -> None:
        self.client.produce(topic, value, key, *args)
        self.taken.append(key)
