"""The baselines the detector is measured against: consume and re-produce raw bytes.

Everything but the per-record work is the detector's (services/detector/service.py):
its settings parser (the same variables and defaults: KAFKA_BROKER_URL,
TRANSACTIONS_TOPIC, LEGIT_TOPIC, DLQ_TOPIC, CONTROL_TOPIC, STATUS_TOPIC,
DETECTOR_GROUP, DETECTOR_INSTANCE, DETECTOR_BATCH_SIZE, PROCESSING_GUARANTEE), the
same client factories and checkpoints, and its loop (``loop`` and ``in_transaction`` of
the service itself): the same batch call, error filter, produce retry, poll,
checkpoint cadence, control follower and heartbeat. Each record goes to the legit topic
with its key and its bytes untouched. ``PASSTHROUGH_WORK`` says what else it does:

- ``copy`` (the default), the pass-through: nothing. What the detector adds is its
  per-record work: decode, validate, the rule, the appended verdict and the choice
  among three topics.
- ``validate``: each record is first decoded with the detector's own schema, and one
  it refuses goes to the dead letters instead. No detector can do less and still keep
  bad records out of the verdicts, so this bounds what the classic rule can reach.
- ``two_hops``: each record goes through a topic of its own (``<group>-hop``) before
  it goes out, the way the stateful detector re-keys every transaction by target
  through its repartition topic: the bound of any design with that hop.

    KAFKA_BROKER_URL=HOST:PORT TRANSACTIONS_TOPIC=in LEGIT_TOPIC=out python -m bench.passthrough
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence

from confluent_kafka import Consumer, Message, Producer, TopicPartition
from msgspec import DecodeError

from services import config, control, kafka
from services.checkpoint import EXACTLY_ONCE, for_guarantee
from services.control_channel import ControlFollower, StatusPublisher
from services.detector.routing import dead_letter_headers
from services.detector.service import PARTITIONS, in_transaction, loop, parse_args
from services.lifecycle import Shutdown, run_service, settle_heap, setup_logging
from services.transaction import decode_schema, why_refused

log = logging.getLogger("fraud.passthrough")
SERVICE = "passthrough"
WORKS = ("copy", "validate", "two_hops")


def run(args: config.argparse.Namespace, work: str, shutdown: Shutdown) -> int:
    topics = config.topics(args)
    hop = f"{args.group}-hop"
    wanted = {topics.transactions: PARTITIONS, topics.legit: PARTITIONS, topics.dlq: 1,
              topics.control: 1, topics.status: 1}
    if work == "two_hops":
        wanted[hop] = PARTITIONS
    kafka.ensure_topics(args.bootstrap, wanted, args.connect_timeout)
    instance = kafka.instance_id(SERVICE)
    failures = kafka.DeliveryFailures(SERVICE)
    consumer = kafka.consumer(args.bootstrap, args.group, instance=args.instance,
                              on_path=True)
    if args.processing_guarantee == EXACTLY_ONCE:
        producer = kafka.transactional_producer(
            args.bootstrap, f"{args.group}.{args.instance}", {"on_delivery": failures})
    else:
        producer = kafka.producer(args.bootstrap, {"on_delivery": failures})
    status_producer, cluster = kafka.status_producer(args.bootstrap, SERVICE)
    checkpoint = for_guarantee(args.processing_guarantee, consumer, producer, failures)
    status = StatusPublisher(status_producer, topics.status, SERVICE, instance)
    settings = control.LiveSettings(SERVICE, {})
    follower = ControlFollower(args.bootstrap, topics.control, settings, status)
    follower.catch_up()

    def on_revoke(_: Consumer, partitions: list[TopicPartition]) -> None:
        checkpoint.commit()
        checkpoint.forget(partitions)

    def on_lost(_: Consumer, partitions: list[TopicPartition]) -> None:
        checkpoint.abandon()

    def housekeeping() -> None:
        follower.poll()
        status_producer.poll(0)
        cluster.check(status_producer)
        status.beat(settings.values, lambda: {"delivery_failures": failures.count,
                                              "commits": checkpoint.commits})

    inputs = [topics.transactions, hop] if work == "two_hops" else [topics.transactions]
    consumer.subscribe(inputs, on_revoke=on_revoke, on_lost=on_lost)
    log.info("%s: %s to %s, %s", work, topics.transactions, topics.legit,
             args.processing_guarantee)
    # The per-record work and what it takes besides the producer and the records.
    per_record, extra = {
        "copy": (copy, (topics.legit,)),
        "validate": (validate_and_copy, (topics.legit, topics.dlq, args.instance)),
        "two_hops": (copy_through, (topics.transactions, hop, topics.legit)),
    }[work]

    def handle(records: list[Message]) -> None:
        in_transaction(checkpoint, records, per_record, producer, records, *extra)

    committed = False
    settle_heap()
    try:
        loop(consumer, producer, checkpoint, args.batch_size, handle, housekeeping,
             shutdown)
        committed = checkpoint.close()
    finally:
        status_producer.flush(1)
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


def validate_and_copy(producer: Producer, records: list[Message], sink: str, dlq: str,
                      instance: str) -> None:
    """The copy, of the records the detector's schema takes; the rest as dead letters
    with the detector's reasons and headers."""
    produce, schema_decode = producer.produce, decode_schema
    for record in records:
        raw = record.value()
        try:
            schema_decode(raw)  # type: ignore[arg-type]
        except (DecodeError, ValueError, TypeError):  # TypeError: a null value
            kafka.produce_dead_letter(producer, dlq, record.key(), raw, dead_letter_headers(
                record, why_refused(raw), instance))
            continue
        try:
            produce(sink, raw, record.key())
        except BufferError:
            kafka.produce_when_room(producer, sink, record.key(), raw)


def copy_through(producer: Producer, records: list[Message], source: str, hop: str,
                 sink: str) -> None:
    """A record of ``source`` to ``hop``, one of ``hop`` to ``sink``."""
    produce = producer.produce
    for record in records:
        topic = hop if record.topic() == source else sink
        try:
            produce(topic, record.value(), record.key())
        except BufferError:
            kafka.produce_when_room(producer, topic, record.key(), record.value())


def work_of(environ: Mapping[str, str]) -> str:
    work = environ.get("PASSTHROUGH_WORK", "copy")
    if work not in WORKS:
        raise SystemExit(f"PASSTHROUGH_WORK: {work!r} is none of {', '.join(WORKS)}")
    return work


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    work = work_of(os.environ)
    setup_logging(args.verbose)
    return run_service("bench-passthrough", lambda: run(args, work, Shutdown().install()))


if __name__ == "__main__":
    raise SystemExit(main())
