"""Where the console's data comes from: a feed turns topics into snapshots.

``KafkaFeed.run`` is the console's only Kafka code and runs in a thread worker: it
consumes the output, dead-letter and status topics, counts without decoding, reads
the input rate and the detector group's lag from offsets, sends control commands, and
hands the UI an immutable ``Snapshot`` a few times a second. Tests give the app a
feed of their own with the same interface.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable
from typing import Protocol

from confluent_kafka import OFFSET_END, Consumer, KafkaException, Producer, TopicPartition

from services import control, kafka
from services.config import ConfigError, Topics
from services.security import Secret
from tui.model import Aggregator, Row, Snapshot, TxLabel, account_history, label_of
from tui.record_filter import RecordFilter

log = logging.getLogger("fraud.console")

Sink = Callable[[Snapshot], object]  # what a sink returns is ignored


class Feed(Protocol):
    """What the console needs of a data source."""

    def run(self, sink: Sink, stop: threading.Event) -> None:
        """Deliver snapshots to ``sink`` until ``stop`` is set (runs in a worker thread)."""

    def send(self, setting: str, value: float | bool) -> None:
        """Ask the services to change a setting (never blocks)."""

    def reset(self) -> None:
        """Forget counters and history."""

    def snapshot(self) -> Snapshot:
        """What is known right now (cheap; safe to call from the UI)."""

    def set_filter(self, record_filter: RecordFilter | None) -> None:
        """Show and count only the transactions ``record_filter`` matches."""

    def history(self, account: str) -> tuple[Row, ...]:
        """``account``'s recent transactions as this console saw them, newest first."""

    def label(self, tx_id: str) -> TxLabel | None:
        """The ground truth of a transaction, once its label has come."""


def ts_of(raw: bytes) -> int | None:
    """The ``ts`` member of a transaction, read without decoding the whole record."""
    at = raw.find(b'"ts":')
    if at < 0:
        return None
    end = at + 5
    while end < len(raw) and raw[end] in b"0123456789":
        end += 1
    digits = raw[at + 5:end]
    return int(digits) if digits else None


class AggregatingFeed:
    """The part of a feed the UI calls: commands, reset and snapshots, all cheap.

    Subclasses fill the aggregator from somewhere and publish the commands, signed
    with ``secret`` when there is one (a wrong one shows as refused commands)."""

    def __init__(self, bootstrap: str, clock: Callable[[], float] = time.time,
                 secret: Secret | None = None, topics: Topics | None = None) -> None:
        self.clock = clock
        self.secret = secret
        self.aggregator = Aggregator(clock, bootstrap, topics)
        self._lock = threading.Lock()  # the aggregator is shared with the UI's key actions

    def send(self, setting: str, value: float | bool) -> None:
        with self._lock:
            try:
                key, body = control.command(setting, value, secret=self.secret)
            except control.CommandRefused as exc:
                self.aggregator.refused_locally(setting, value, str(exc))
                return
            self.aggregator.requested(setting, value, control.parse_command(body).id)
        self.publish(key, body)

    def publish(self, key: bytes, body: bytes) -> None:
        raise NotImplementedError

    def reset(self) -> None:
        with self._lock:
            self.aggregator.reset()

    def snapshot(self) -> Snapshot:
        with self._lock:
            return self.aggregator.snapshot()

    def set_filter(self, record_filter: RecordFilter | None) -> None:
        with self._lock:
            self.aggregator.set_filter(record_filter)

    # Both copy what is kept under the lock (a fraction of a millisecond) and search it
    # outside, so the feed worker is never held up by a person's look-up.
    def history(self, account: str) -> tuple[Row, ...]:
        with self._lock:
            recent = self.aggregator.recent()
        return account_history(account, recent)

    def label(self, tx_id: str) -> TxLabel | None:
        with self._lock:
            labels = self.aggregator.labels()
        return label_of(tx_id, labels)


class KafkaFeed(AggregatingFeed):
    def __init__(
        self,
        bootstrap: str,
        topics: Topics,
        detector_group: str = "fraud-detector",
        clock: Callable[[], float] = time.time,
        interval: float = 0.25,
        secret: Secret | None = None,
    ) -> None:
        super().__init__(bootstrap, clock, secret, topics)
        self.bootstrap = bootstrap
        self.topics = topics
        self.detector_group = detector_group
        self.interval = interval
        # Commands wait here for the worker thread, the only one that talks to Kafka.
        self._outbox: queue.SimpleQueue[tuple[bytes, bytes]] = queue.SimpleQueue()
        # Asks for the detector group's commits; it never joins (or disturbs) the group.
        self._group_reader: Consumer | None = None

    def publish(self, key: bytes, body: bytes) -> None:
        self._outbox.put((key, body))

    # -- the worker thread --------------------------------------------------------

    def run(self, sink: Sink, stop: threading.Event) -> None:
        consumer: Consumer | None = None
        producer: Producer | None = None
        next_snapshot = 0.0
        next_offsets = 0.0
        try:
            while not stop.is_set():
                if consumer is None:
                    consumer, producer = self._connect()
                    if consumer is None:
                        sink(self.snapshot())
                        stop.wait(1.0)
                        continue
                assert producer is not None
                self._consume(consumer)
                self._send_outbox(producer)
                now = time.monotonic()
                if now >= next_offsets:
                    next_offsets = now + 1.0
                    self._read_offsets(consumer)
                if now >= next_snapshot:
                    next_snapshot = now + self.interval
                    sink(self.snapshot())
        finally:
            if producer is not None:
                producer.flush(2)
            for client in (consumer, self._group_reader):
                if client is not None:
                    client.close()

    def _connect(self) -> tuple[Consumer | None, Producer | None]:
        """Clients assigned to the end of every topic, or None while the broker is away."""
        try:
            kafka.ensure_topics(self.bootstrap, {
                self.topics.legit: 4, self.topics.fraud: 4, self.topics.dlq: 1,
                self.topics.status: 1, self.topics.control: 1, self.topics.transactions: 4,
                self.topics.labels: 4,
            }, timeout=2.0)
        except (ConfigError, KafkaException) as exc:
            log.debug("cluster not reachable: %s", exc)
            with self._lock:
                self.aggregator.set_connected(False)
            return None, None
        # Its own group, never committed: the console reads live, from the end. Its
        # fetch waits are part of the end-to-end latency it shows.
        consumer = kafka.consumer(self.bootstrap, f"fraud-console-{uuid.uuid4().hex[:8]}",
                                  on_path=True)
        # Labels too, kept undecoded, so a transaction's detail can say what it truly was.
        watched = (self.topics.legit, self.topics.fraud, self.topics.dlq, self.topics.status,
                   self.topics.labels)
        metadata = consumer.list_topics(timeout=5)
        consumer.assign([TopicPartition(t, p, OFFSET_END)
                         for t in watched for p in metadata.topics[t].partitions])
        producer = kafka.producer(self.bootstrap, {"linger.ms": 0})
        with self._lock:
            self.aggregator.set_connected(True)
        return consumer, producer

    def _consume(self, consumer: Consumer) -> None:
        messages = kafka.consume_batch(consumer, 10_000, 0.05)
        if not messages:
            return
        legit: list[bytes | None] = []
        fraud: list[bytes | None] = []
        # Where each was read, in columns: no tuple per record (see tui.recent).
        legit_partitions: list[int] = []
        legit_offsets: list[int] = []
        fraud_partitions: list[int] = []
        fraud_offsets: list[int] = []
        status: list[bytes | None] = []
        labels: list[bytes | None] = []
        dead = 0
        topics = self.topics
        for message in messages:
            if message.error() is not None:
                continue
            topic = message.topic()
            if topic == topics.legit:
                legit.append(message.value())
                legit_partitions.append(message.partition() or 0)
                legit_offsets.append(message.offset() or 0)
            elif topic == topics.fraud:
                fraud.append(message.value())
                fraud_partitions.append(message.partition() or 0)
                fraud_offsets.append(message.offset() or 0)
            elif topic == topics.status:
                status.append(message.value())
            elif topic == topics.labels:
                labels.append(message.value())
            else:
                dead += 1
        arrived = self.clock() * 1000
        latencies = [arrived - ts for raw in (legit[-100:] + fraud[-100:])
                     if raw is not None and (ts := ts_of(raw)) is not None]
        with self._lock:
            aggregator = self.aggregator
            if legit:
                aggregator.add_output("legit", legit, legit_partitions, legit_offsets)
            if fraud:
                aggregator.add_output("fraud", fraud, fraud_partitions, fraud_offsets)
            if labels:
                aggregator.add_labels(labels)
            if dead:
                aggregator.add_dead_letters(dead)
            if status:
                aggregator.add_status(status)
            aggregator.add_latencies(latencies)

    def _send_outbox(self, producer: Producer) -> None:
        while True:
            try:
                key, body = self._outbox.get_nowait()
            except queue.Empty:
                break
            producer.produce(self.topics.control, body, key)
        producer.poll(0)

    def _read_offsets(self, consumer: Consumer) -> None:
        """Input rate from the input topic's end offsets; the detector group's lag."""
        topic = self.topics.transactions
        try:
            partitions = consumer.list_topics(topic, timeout=2).topics[topic].partitions
            ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=2)[1]
                    for p in partitions}
            lag = self._lag(ends)
        except KafkaException as exc:
            log.debug("offsets not readable: %s", exc)
            with self._lock:
                self.aggregator.set_connected(False)
            return
        with self._lock:
            self.aggregator.set_connected(True)
            self.aggregator.add_input_watermark(sum(ends.values()))
            self.aggregator.lag = lag

    def _lag(self, ends: dict[int, int]) -> int | None:
        """How far the detector group's commits are behind the input's end."""
        if self._group_reader is None:
            self._group_reader = kafka.consumer(self.bootstrap, self.detector_group)
        tps = [TopicPartition(self.topics.transactions, p) for p in ends]
        committed = self._group_reader.committed(tps, timeout=2)
        if all(tp.offset < 0 for tp in committed):
            return None
        return sum(max(0, ends[tp.partition] - max(tp.offset, 0)) for tp in committed)
