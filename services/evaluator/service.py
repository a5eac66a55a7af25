"""fraud-evaluator: join verdicts with labels, publish detection quality once a second.

It reads the legit and fraud topics (read_committed, as every consumer downstream of
the detector) and the labels topic by assignment, outside any consumer group and
without committing: its state is a window of event time, rebuilt at start by reading
back that far, so every instance sees every partition and a restart loses nothing
that is still in the window.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Sequence

from confluent_kafka import Consumer, KafkaException, TopicPartition

from services import config, kafka
from services.control_channel import StatusPublisher
from services.evaluator import report
from services.evaluator.quality import Evaluator
from services.lifecycle import Shutdown, run_service, setup_logging

log = logging.getLogger("fraud.evaluator")
SERVICE = "evaluator"
PARTITIONS = 4
# Where a partition cannot be positioned by time, at most this many of its newest
# records are read back to rebuild the window.
REBUILD_RECORDS = 200_000


def parse_args(argv: Sequence[str] | None) -> config.argparse.Namespace:
    env = os.environ
    parser = config.base_parser(
        "fraud-evaluator",
        "Join the detector's verdicts with the ground truth and publish precision, "
        "recall and F1 over a sliding window on the status topic.")
    config.env_option(
        parser, "--window", "EVALUATOR_WINDOW", "60", "seconds of event time the figures "
        "cover", env, type=config.whole("--window (EVALUATOR_WINDOW)", low=1, high=86_400),
        metavar="SECONDS")
    config.env_option(
        parser, "--join-wait", "EVALUATOR_JOIN_WAIT", "30", "seconds of event time a verdict "
        "or a label waits for its partner", env,
        type=config.whole("--join-wait (EVALUATOR_JOIN_WAIT)", low=1, high=86_400),
        metavar="SECONDS")
    config.env_option(
        parser, "--max-pending", "EVALUATOR_MAX_PENDING", "100000", "verdicts (and as many "
        "labels) kept waiting for their partner at most", env,
        type=config.whole("--max-pending (EVALUATOR_MAX_PENDING)", low=1, high=10_000_000),
        metavar="N")
    parser.add_argument("--verbose", action="store_true", help="debug logging")
    return config.parse(parser, argv)


def run(args: config.argparse.Namespace, shutdown: Shutdown) -> int:
    topics = config.topics(args)
    kafka.ensure_topics(args.bootstrap, {
        topics.legit: PARTITIONS, topics.fraud: PARTITIONS, topics.labels: PARTITIONS,
        topics.status: 1,
    }, args.connect_timeout)
    instance = kafka.instance_id(SERVICE)
    failures = kafka.DeliveryFailures(SERVICE)
    producer = kafka.producer(args.bootstrap, {"on_delivery": failures})
    status = StatusPublisher(producer, topics.status, SERVICE, instance)
    evaluator = Evaluator(args.window, args.join_wait * 1000, args.max_pending)
    # A group of its own that never commits: nothing is rebalanced, nothing resumed.
    consumer = kafka.consumer(args.bootstrap, f"fraud-evaluator-{uuid.uuid4().hex[:8]}")
    since_ms = int(time.time() * 1000) - (args.window + args.join_wait) * 1000
    consumer.assign(start_positions(consumer, [topics.legit, topics.fraud, topics.labels],
                                    since_ms))
    labels_topic = topics.labels
    settings = {"window": args.window, "join_wait": args.join_wait}

    def publish() -> None:
        evaluator.join.expire()
        tally = evaluator.window.tally()
        status.publish(report.encode(SERVICE, instance, int(time.time() * 1000), args.window,
                                     evaluator.window.span_ms(), tally, evaluator.counters()))
        status.beat(settings, lambda: {**evaluator.counters(),
                                       "delivery_failures": failures.count}, force=True)

    log.info("joining %s and %s with %s over %d s windows", topics.legit, topics.fraud,
             labels_topic, args.window)
    next_report = 0.0
    try:
        while not shutdown.requested:
            for message in kafka.consume_batch(consumer, 5_000, 0.1):
                error = message.error()
                if error is not None:
                    if error.fatal():
                        raise KafkaException(error)
                    log.warning("consumer: %s", error.str())
                elif message.topic() == labels_topic:
                    evaluator.label(message.value(), message.timestamp()[1])
                else:
                    evaluator.verdict(message.value())
            now = time.monotonic()
            if now >= next_report:
                next_report = now + 1.0
                publish()
            producer.poll(0)
    finally:
        publish()
        left = producer.flush(2)
        consumer.close()
    log.info("stopped: %s", evaluator.counters())
    return 1 if left or failures.count else 0


def start_positions(consumer: Consumer, topics: list[str], since_ms: int
                    ) -> list[TopicPartition]:
    """Every partition of ``topics``, positioned at the first record from ``since_ms``.

    librdkafka's embedded mock cluster does not look offsets up by time (it answers
    -1), and a real cluster answers -1 when no record is that recent. Either way the
    partition is read from at most ``REBUILD_RECORDS`` before its end: on a real
    cluster those records are all older than the window and are merely counted as
    late; on the mock they rebuild it.
    """
    metadata = consumer.list_topics(timeout=10)
    wanted = [TopicPartition(topic, p, since_ms)
              for topic in topics for p in metadata.topics[topic].partitions]
    try:
        found = consumer.offsets_for_times(wanted, timeout=10)
    except KafkaException as exc:
        log.warning("offsets by time not available (%s); reading back by count", exc)
        found = [TopicPartition(tp.topic, tp.partition, -1) for tp in wanted]
    positions = []
    for tp in found:
        if tp.offset < 0 or tp.error is not None:
            low, high = consumer.get_watermark_offsets(
                TopicPartition(tp.topic, tp.partition), timeout=10)
            tp = TopicPartition(tp.topic, tp.partition, max(low, high - REBUILD_RECORDS))
        positions.append(tp)
    return positions


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(args.verbose)
    return run_service("fraud-evaluator", lambda: run(args, Shutdown().install()))


if __name__ == "__main__":
    raise SystemExit(main())
