"""The model's snapshots on Kafka, so that a detector that starts (a restart, a new
instance of the group) scores from its first batch instead of learning from scratch.

The topic is ``<group>-model-snapshots``, compacted on a real cluster: every record
goes to its partition 0 under one key, so that the newest record there is the group's
newest model (a topic created with more partitions, as a broker that auto-creates
topics does, leaves the others empty).
Each instance writes the model it serves when a retrain has swapped one in or online
steps have changed it, at most every ``SAVE_EVERY`` seconds and once more as it stops;
an instance that starts takes the newest one. Instances of a group learn from the
same labels, so any instance's model serves any other.

A snapshot is JSON (``OnlineModel.snapshot``): weights and input statistics as lists
of numbers, readable with ``fraud-tail``, and never code to run: a record that is not
a snapshot of this detector's model is refused with a warning, and the detector learns
from scratch.

The records go out through a producer outside the stream's transactions (the status
producer): the model is learnt from labels, not from the records those transactions
commit, so it is no part of exactly-once state.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import orjson
from confluent_kafka import KafkaError, KafkaException, Producer

from services import kafka

if TYPE_CHECKING:  # scikit-learn loads only when a model is asked for
    from services.detector.model import OnlineModel

log = logging.getLogger("fraud.detector.model")

KEY = b"model"
PARTITION = 0
# Compaction never cleans the segment being written, and at 1 GB (Kafka's default)
# that one would hold thousands of snapshots of 100 kB: smaller segments let it keep
# about the newest.
TOPIC_CONFIG = {"segment.bytes": str(16 * 1024 * 1024)}
SAVE_EVERY = 10.0  # seconds; a retrain swaps at most this often too


class ModelSnapshots:
    """Reads the newest snapshot into a model, and writes the model's changes."""

    def __init__(self, bootstrap: str, topic: str, instance: str,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.instance = instance
        self.clock = clock
        self.saved = 0  # snapshots the cluster took
        self.failed = 0  # snapshots it did not (too large for the topic, say)
        self._saved_revision = 0
        self._saved_at = -SAVE_EVERY

    def restore(self, model: OnlineModel) -> bool:
        """Serve the newest snapshot's model, if there is one this model can take."""
        try:
            records = kafka.read_partition(self.bootstrap, self.topic, PARTITION, last=1)
        except (TimeoutError, KafkaException) as exc:  # the stream need not wait for it
            log.warning("model snapshots on %s not read (%s): learning from the labels",
                        self.topic, exc)
            return False
        if not records or records[-1][1] is None:
            log.info("no model snapshot on %s: learning from the labels", self.topic)
            return False
        try:
            model.restore(orjson.loads(records[-1][1]))  # JSONDecodeError is a ValueError
        except ValueError as exc:
            log.warning("the newest model snapshot on %s is refused (%s): learning from "
                        "the labels", self.topic, exc)
            return False
        self._saved_revision = model.revision  # nothing new to write yet
        age = model.age()
        log.info("model version %d restored from %s, trained %s ago", model.version,
                 self.topic, "?" if age is None else f"{age:.0f} s")
        return True

    def save(self, model: OnlineModel, producer: Producer, force: bool = False) -> bool:
        """Write the model in service if it changed since the last snapshot, and the
        last was ``SAVE_EVERY`` seconds ago or ``force`` says so (as it stops)."""
        now, revision = self.clock(), model.revision
        if revision == self._saved_revision or \
                (not force and now - self._saved_at < SAVE_EVERY):
            return False
        # Read before the snapshot is taken: a swap in between is written next time.
        snapshot = model.snapshot()
        if snapshot is None:
            return False
        snapshot.update(instance=self.instance, written_at=time.time())
        version = snapshot["version"]

        def delivered(error: KafkaError | None, _: object) -> None:
            if error is None:
                self.saved += 1
            else:
                self.failed += 1
                log.warning("model snapshot (version %d) not written: %s", version,
                            error.str())

        try:
            producer.produce(self.topic, orjson.dumps(snapshot), KEY, partition=PARTITION,
                             on_delivery=delivered)
        except (BufferError, KafkaException) as exc:  # a full queue: the next turn tries
            log.warning("model snapshot not written: %s", exc)
            self._saved_at = now
            return False
        self._saved_revision, self._saved_at = revision, now
        return True
