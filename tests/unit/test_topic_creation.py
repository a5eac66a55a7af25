"""Topics created through the admin API, where a cluster serves it (Apache Kafka does,
the embedded broker does not): each with its partitions and its settings."""

from __future__ import annotations

from concurrent.futures import Future
from types import SimpleNamespace
from typing import Any

import pytest
from confluent_kafka.admin import NewTopic

from services import kafka
from services.detector.snapshots import TOPIC_CONFIG


class FakeAdmin:
    def __init__(self) -> None:
        self.asked: dict[str, NewTopic] = {}

    def create_topics(self, new: list[NewTopic], **_: Any) -> dict[str, Future]:
        futures = {}
        for topic in new:
            self.asked[topic.topic] = topic
            futures[topic.topic] = Future()
            futures[topic.topic].set_result(None)
        return futures


def test_a_cluster_with_a_controller_gets_each_topic_with_its_settings(
        monkeypatch: pytest.MonkeyPatch) -> None:
    client = FakeAdmin()
    existing = {"queueing.transactions": None}
    metadata = SimpleNamespace(topics=existing, controller_id=1, brokers={1: None})
    monkeypatch.setattr(kafka, "wait_for_broker", lambda *_: metadata)
    monkeypatch.setattr(kafka, "admin", lambda *_: client)
    kafka.ensure_topics("kafka:9092", {
        "queueing.transactions": 4, "g-source-state-changelog": 4,
        "g-model-snapshots": 1, "streaming.transactions.dlq": 1,
    }, compacted=("g-source-state-changelog", "g-model-snapshots"),
        configs={"g-model-snapshots": TOPIC_CONFIG})
    assert set(client.asked) == {"g-source-state-changelog", "g-model-snapshots",
                                 "streaming.transactions.dlq"}, "only the missing ones"
    asked = {name: (topic.num_partitions, topic.config) for name, topic in client.asked.items()}
    assert asked == {
        "g-source-state-changelog": (4, {"cleanup.policy": "compact"}),
        "g-model-snapshots": (1, {"cleanup.policy": "compact",
                                  "segment.bytes": str(16 * 1024 * 1024)}),
        "streaming.transactions.dlq": (1, {}),
    }
    assert all(topic.replication_factor == 1 for topic in client.asked.values())
