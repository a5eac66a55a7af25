"""Commit consumed offsets only once their outputs are safely in Kafka.

A checkpoint collects the next offset of every partition a loop has processed and
commits in named steps: flush the producer, check that nothing is left unsent and no
delivery failed, then commit. If a delivery failed, nothing is committed and the
consumer rewinds to the last commit, so the records are processed again: at least
once, never lost.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import Any

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

from services.kafka import DeliveryFailures

log = logging.getLogger("fraud.checkpoint")


class Checkpoint:
    def __init__(
        self,
        consumer: Consumer,
        producer: Producer,
        failures: DeliveryFailures,
        interval: float = 1.0,
        max_records: int = 100_000,
        flush_timeout: float = 3.0,
    ) -> None:
        self.consumer = consumer
        self.producer = producer
        self.failures = failures
        self.interval = interval
        self.max_records = max_records
        self.flush_timeout = flush_timeout
        self._offsets: dict[tuple[str, int], int] = {}
        self._records = 0
        self._failures_seen = failures.count
        self._opened = time.monotonic()
        self.commits = 0

    def track(self, messages: Iterable[Any]) -> None:
        """Mark ``messages`` processed (their outputs produced, not yet delivered)."""
        offsets = self._offsets
        for message in messages:
            tp = (message.topic(), message.partition())
            offset = message.offset() + 1
            if offset < offsets.get(tp, -1):
                raise ValueError(f"offset of {tp} goes backwards: {offset}")
            offsets[tp] = offset
            self._records += 1

    def due(self) -> bool:
        return bool(self._offsets) and (
            self._records >= self.max_records
            or time.monotonic() - self._opened >= self.interval
        )

    def commit(self) -> bool:
        """Commit what is tracked; False (and a rewind) if outputs did not all arrive."""
        self._opened = time.monotonic()
        if not self._offsets:
            return True
        # 1. flush: every produced output delivered or failed
        unsent = self.producer.flush(self.flush_timeout)
        # 2. check: nothing still queued, no failed delivery since the last commit
        failed = self.failures.count - self._failures_seen
        self._failures_seen = self.failures.count
        if unsent or failed:
            log.error("not committing: %d outputs unsent, %d failed; reprocessing from the "
                      "last commit", unsent, failed)
            self._rewind()
            return False
        # 3. commit the offsets
        offsets = [TopicPartition(t, p, o) for (t, p), o in self._offsets.items()]
        try:
            self.consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            # Outputs are in Kafka, so a failed commit means duplicates later, never loss.
            log.warning("offset commit failed (records may be processed again): %s",
                        exc.args[0].str())
            return False
        self._offsets.clear()
        self._records = 0
        self.commits += 1
        return True

    def forget(self, partitions: Iterable[TopicPartition]) -> None:
        for tp in partitions:
            self._offsets.pop((tp.topic, tp.partition), None)

    def _rewind(self) -> None:
        positions = [TopicPartition(t, p) for t, p in self._offsets]
        self._offsets.clear()
        self._records = 0
        try:
            for tp in self.consumer.committed(positions, timeout=10):
                # An unset offset means "never committed": start from the beginning.
                self.consumer.seek(TopicPartition(tp.topic, tp.partition, max(tp.offset, 0)))
        except KafkaException as exc:
            log.error("rewind failed: %s", exc.args[0].str())
