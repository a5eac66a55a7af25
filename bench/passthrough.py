"""The baseline the detector is measured against: consume and re-produce raw bytes.

Everything but the per-record work is the detector's (services/detector/service.py):
its settings parser (the same variables and defaults: KAFKA_BROKER_URL,
TRANSACTIONS_TOPIC, LEGIT_TOPIC, CONTROL_TOPIC, STATUS_TOPIC, DETECTOR_GROUP,
DETECTOR_BATCH_SIZE), the same client factories, and its loop (``loop`` and
``in_transaction`` of the service itself): the same batch call, error filter, produce
retry, poll, checkpoint cadence, control follower and heartbeat. Each record goes to
the legit topic with its key and its bytes untouched. What the detector adds is its
per-record work: decode, validate, the rule, the appended verdict and the choice among three topics.

    KAFKA_BROKER_URL=HOST:PORT TRANSACTIONS_TOPIC=in LEGIT_TOPIC=out python -m bench.passthrough
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from confluent_kafka import Consumer, Message, Producer, TopicPartition

from services import config, control, kafka
from services.checkpoint import AtLeastOnceCheckpoint
from services.control_channel import ControlFollower, StatusPublisher
from services.detector.service import PARTITIONS, in_transaction, loop, parse_args
from services.lifecycle import Shutdown, run_service, settle_heap, setup_logging

log = logging.getLogger("fraud.passthrough")
SERVICE = "passthrough"


def run(args: config.argparse.Namespace, shutdown: Shutdown) -> int:
    topics = config.topics(args)
    kafka.ensure_topics(args.bootstrap, {
        topics.transactions: PARTITIONS, topics.legit: PARTITIONS,
        topics.control: 1, topics.status: 1,
    }, args.connect_timeout)
    instance = kafka.instance_id(SERVICE)
    failures = kafka.DeliveryFailures(SERVICE)
    producer = kafka.producer(args.bootstrap, {"on_delivery": failures})
    consumer = kafka.consumer(args.bootstrap, args.group, on_path=True)
    checkpoint = AtLeastOnceCheckpoint(consumer, producer, failures)
    status = StatusPublisher(producer, topics.status, SERVICE, instance)
    settings = control.LiveSettings(SERVICE, {})
    follower = ControlFollower(args.bootstrap, topics.control, settings, status)
    follower.catch_up()

    def on_revoke(_: Consumer, partitions: list[TopicPartition]) -> None:
        checkpoint.commit()
        checkpoint.forget(partitions)

    def housekeeping() -> None:
        follower.poll()
        status.beat(settings.values, lambda: {"delivery_failures": failures.count,
                                              "commits": checkpoint.commits})

    consumer.subscribe([topics.transactions], on_revoke=on_revoke)
    log.info("copying %s to %s", topics.transactions, topics.legit)
    def copy_batch(records: list[Message]) -> None:
        in_transaction(checkpoint, records, copy, producer, records, topics.legit)

    settle_heap()
    try:
        loop(consumer, producer, checkpoint, args.batch_size, copy_batch, housekeeping,
             shutdown)
    finally:
        committed = checkpoint.commit()
        producer.flush(2)
        consumer.close()
        follower.close()
    return 0 if committed and not failures.count else 1


def copy(producer: Producer, records: list[Message], sink: str) -> None:
    """What the detector's routing and verdicts are measured against: nothing."""
    produce = producer.produce
    for record in records:
        try:
            produce(sink, record.value(), record.key())
        except BufferError:
            kafka.produce_when_room(producer, sink, record.key(), record.value())


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(args.verbose)
    return run_service("bench-passthrough", lambda: run(args, Shutdown().install()))


if __name__ == "__main__":
    raise SystemExit(main())
