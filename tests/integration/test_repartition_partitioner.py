"""The first stage picks each forward's repartition partition itself: the one the
client's own partitioner gives a record keyed by the target, so a target keeps its
partition (and its state) across an upgrade from forwards keyed one a record."""

from __future__ import annotations

import uuid

from services import kafka
from services.detector.repartition import partition_of

PARTITIONS = 6


def test_each_target_gets_the_partition_the_client_gives_its_key(broker: str) -> None:
    topic = f"repartition.{uuid.uuid4().hex[:8]}"
    kafka.ensure_topics(broker, {topic: PARTITIONS})
    partitions = kafka.partition_counts(broker, [topic])[topic]  # as the cluster made it
    assert partitions > 1
    producer = kafka.producer(broker)
    targets = [f"account-{n}".encode() for n in range(300)] + [b"x", "zoë".encode()]
    for target in targets:
        producer.produce(topic, target, target)  # keyed, the partition left to the client
    assert producer.flush(30) == 0
    landed = {value: partition for partition in range(partitions)
              for _, value in kafka.read_partition(broker, topic, partition)}
    assert len(landed) == len(targets)
    assert {target: partition_of(target, partitions) for target in targets} == landed
