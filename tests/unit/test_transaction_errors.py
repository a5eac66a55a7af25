"""A transaction that fails under the loop is aborted and its records are processed
again from the last commit, whichever way the client says so; a rewind that cannot
learn where that commit was stops the detector rather than skip what was aborted."""

from __future__ import annotations

from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from services import checkpoint as checkpoints
from services.checkpoint import ExactlyOnceCheckpoint
from services.detector.routing import Routed
from services.detector.service import in_transaction, produce_routed
from services.kafka import DeliveryFailures
from tests.unit.test_routing import FakeRecord

COMMITTED = 40  # the group's committed offset of every partition


class Consumer:
    """The group's committed offsets, after ``timeouts`` calls that time out."""

    def __init__(self, timeouts: int = 0) -> None:
        self.timeouts = timeouts
        self.seeks: list[tuple[str, int, int]] = []

    def committed(self, positions: list[TopicPartition], timeout: float) -> list[Any]:
        if self.timeouts:
            self.timeouts -= 1
            raise KafkaException(KafkaError(KafkaError._TIMED_OUT,
                                            "Failed to get committed offsets"))
        return [TopicPartition(tp.topic, tp.partition, COMMITTED) for tp in positions]

    def seek(self, tp: TopicPartition) -> None:
        self.seeks.append((tp.topic, tp.partition, tp.offset))


class Producer:
    """A transactional producer whose ``produce`` raises ``error``."""

    def __init__(self, error: KafkaError) -> None:
        self.error = error
        self.calls: list[str] = []

    def init_transactions(self, *args: Any) -> None:
        self.calls.append("init")

    def begin_transaction(self) -> None:
        self.calls.append("begin")

    def abort_transaction(self, *args: Any) -> None:
        self.calls.append("abort")

    def produce(self, *args: Any) -> None:
        raise KafkaException(self.error)


def run_batch(error: KafkaError, consumer: Consumer) -> tuple[Producer, ExactlyOnceCheckpoint]:
    producer = Producer(error)
    checkpoint = ExactlyOnceCheckpoint(consumer, producer,  # type: ignore[arg-type]
                                       DeliveryFailures("test"))
    records = [FakeRecord(b"{}", b"k", offset, _partition=1) for offset in range(45, 50)]
    routed = Routed([(b"k", b"{}")] * 5, [], [])
    in_transaction(checkpoint, records, produce_routed, producer, routed,
                   "legit", "fraud", "dlq")
    return producer, checkpoint


def test_a_produce_refused_in_an_abortable_state_aborts_and_rewinds() -> None:
    """After an outage the client may put the transaction in an abortable error (a
    sequence gap); produce() then refuses with _STATE rather than saying "abort"."""
    consumer = Consumer()
    producer, checkpoint = run_batch(KafkaError(
        KafkaError._STATE, "Producing not allowed in transactional state AbortableError"),
        consumer)
    assert producer.calls == ["init", "begin", "abort"]
    assert consumer.seeks == [("queueing.transactions", 1, COMMITTED)]
    assert checkpoint.rewinds == 1


def test_a_fatal_error_still_stops_the_detector() -> None:
    with pytest.raises(KafkaException):
        run_batch(KafkaError(KafkaError._FATAL, "fenced", fatal=True), Consumer())


def test_a_rewind_asks_again_while_the_cluster_does_not_answer(
        monkeypatch: pytest.MonkeyPatch) -> None:
    consumer = Consumer(timeouts=2)
    run_batch(KafkaError(KafkaError._STATE, "AbortableError"), consumer)
    assert consumer.seeks == [("queueing.transactions", 1, COMMITTED)]
    # Still no answer when the wait is up: stop, for the restart to resume from the
    # last commit, rather than go on past what was aborted.
    monkeypatch.setattr(checkpoints, "REWIND_WAIT", 0.0)
    consumer = Consumer(timeouts=1)
    with pytest.raises(KafkaException):
        run_batch(KafkaError(KafkaError._STATE, "AbortableError"), consumer)
    assert consumer.seeks == []


def test_a_commit_whose_state_changes_are_refused_aborts_and_rewinds() -> None:
    """The commit writes the stateful detector's last state changes first: the same
    refusal there aborts the transaction too, rather than stopping the detector."""
    consumer = Consumer()
    producer = Producer(KafkaError(KafkaError._STATE, "AbortableError"))
    checkpoint = ExactlyOnceCheckpoint(consumer, producer,  # type: ignore[arg-type]
                                       DeliveryFailures("test"))
    checkpoint.before_commit = lambda: producer.produce("changelog", b"state", b"key")
    checkpoint.begin()
    checkpoint.track([FakeRecord(b"{}", b"k", 45, _partition=3)])
    assert checkpoint.commit() is False
    assert producer.calls == ["init", "begin", "abort"]
    assert consumer.seeks == [("queueing.transactions", 3, COMMITTED)]
    assert checkpoint.commits == 0 and checkpoint.rewinds == 1
