"""The Kafka side of control and status: follow the control topic, publish status.

Every service instance reads every command (no consumer group, all partitions from the
beginning), so settings survive restarts: a service started later applies the newest
value of each setting before it does any work.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, cast

from confluent_kafka import (
    OFFSET_BEGINNING,
    TIMESTAMP_NOT_AVAILABLE,
    Consumer,
    KafkaError,
    Message,
    Producer,
    TopicPartition,
)

from services import control, kafka
from services.security import Secret

log = logging.getLogger("fraud.control")


class ControlFollower:
    """Reads control commands and applies those meant for this service; with a
    ``secret``, only those signed with it."""

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        settings: control.LiveSettings,
        status: StatusPublisher,
        on_change: Callable[[control.ControlCommand], None] | None = None,
        secret: Secret | None = None,
    ) -> None:
        self.topic = topic
        self.secret = secret
        self.settings = settings
        self.status = status
        self.on_change = on_change
        self._consumer: Consumer = kafka.consumer(
            bootstrap, f"{status.instance}-control", {"enable.partition.eof": True}
        )
        partitions = self._consumer.list_topics(topic, timeout=10).topics[topic].partitions
        self._assigned = [TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions]
        self._consumer.assign(self._assigned)

    def catch_up(self, timeout: float = 10.0) -> None:
        """Apply every command already on the topic, so that the service starts with
        the settings in force rather than its defaults."""
        ends = {tp.partition: self._consumer.get_watermark_offsets(tp, timeout=timeout)[1]
                for tp in self._assigned}
        done = {p for p, end in ends.items() if end == 0}
        deadline = time.monotonic() + timeout
        while len(done) < len(ends) and time.monotonic() < deadline:
            # A short wait: consume() waits all of it unless 100 commands are there.
            for message in self._consumer.consume(100, 0.02):
                # A consumed record always has both; the stubs allow None for others.
                partition, offset = cast(int, message.partition()), cast(int, message.offset())
                error = message.error()
                if error:
                    if error.code() == KafkaError._PARTITION_EOF:
                        done.add(partition)
                    continue
                self._apply(message)
                if offset + 1 >= ends[partition]:
                    done.add(partition)
        if len(done) < len(ends):
            log.warning("control topic %s not read to its end within %g s", self.topic, timeout)

    def poll(self) -> None:
        """Apply what arrived since the last call; never blocks."""
        for message in self._consumer.consume(100, 0):
            if not message.error():
                self._apply(message)

    def _apply(self, message: Message) -> None:
        kind, written_at = message.timestamp()
        outcome = self.settings.apply(
            message.value(), secret=self.secret, key=message.key(),
            written_at=None if kind == TIMESTAMP_NOT_AVAILABLE else written_at)
        if outcome.applied is None:
            return
        ref: dict[str, Any] = {"partition": message.partition(), "offset": message.offset()}
        if outcome.ident:
            ref["id"] = outcome.ident
        cmd = outcome.command
        if outcome.applied:
            assert cmd is not None
            log.info("applied %s = %s (from %s)", cmd.setting, cmd.value, cmd.origin)
            if self.on_change is not None:
                self.on_change(cmd)
        else:
            log.warning("refused control command at offset %d: %s", message.offset(),
                        outcome.reason)
        self.status.publish(control.ack(self.settings.service, self.status.instance, ref,
                                        bool(outcome.applied), outcome.reason, cmd))

    def close(self) -> None:
        self._consumer.close()


class StatusPublisher:
    """Heartbeats and command answers on the status topic, keyed by instance."""

    def __init__(
        self, producer: Producer, topic: str, service: str, instance: str,
        interval: float = 1.0,
    ) -> None:
        self.producer = producer
        self.topic = topic
        self.service = service
        self.instance = instance
        self.interval = interval
        self._next = 0.0

    def publish(self, value: bytes) -> None:
        try:
            self.producer.produce(self.topic, value, self.instance.encode())
        except BufferError:
            log.warning("producer queue full; status message dropped")

    def beat(
        self, settings: Mapping[str, Any], counters: Callable[[], Mapping[str, Any]],
        force: bool = False,
    ) -> None:
        """A heartbeat, when one is due (every ``interval``) or ``force``d. The loops
        call this every turn: ``counters`` is asked only when a heartbeat goes out."""
        now = time.monotonic()
        if force or now >= self._next:
            self._next = now + self.interval
            self.publish(control.heartbeat(self.service, self.instance, settings, counters()))
