"""fraud-detector: consume a batch, route it, produce the results, checkpoint."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence

from confluent_kafka import Consumer, KafkaException, Message, Producer, TopicPartition

from services import config, control, kafka
from services.checkpoint import Checkpoint
from services.control_channel import ControlFollower, StatusPublisher
from services.detector.routing import DLQ, FRAUD, LEGIT, Router
from services.lifecycle import Shutdown, run_service, setup_logging

log = logging.getLogger("fraud.detector")
SERVICE = "detector"
PARTITIONS = 4


def parse_args(argv: Sequence[str] | None) -> config.argparse.Namespace:
    env = os.environ
    parser = config.base_parser("fraud-detector", "Route transactions to legit or fraud.")
    config.env_option(
        parser, "--threshold", "FRAUD_THRESHOLD", "900", "fraud when amount >= this", env,
        type=config.number("--threshold (FRAUD_THRESHOLD)", low=0, high=1e9,
                           low_inclusive=False),
    )
    config.env_option(parser, "--group", "DETECTOR_GROUP", "fraud-detector",
                      "consumer group of the detectors", env)
    config.env_option(
        parser, "--batch-size", "DETECTOR_BATCH_SIZE", "1000", "records per consume call",
        env, type=config.whole("--batch-size (DETECTOR_BATCH_SIZE)", low=1, high=100_000),
    )
    parser.add_argument("--verbose", action="store_true", help="debug logging")
    return config.parse(parser, argv)


def run(args: config.argparse.Namespace, shutdown: Shutdown) -> int:
    topics = config.topics(args)
    kafka.ensure_topics(args.bootstrap, {
        topics.transactions: PARTITIONS, topics.legit: PARTITIONS, topics.fraud: PARTITIONS,
        topics.dlq: 1, topics.control: 1, topics.status: 1,
    }, args.connect_timeout)
    instance = kafka.instance_id(SERVICE)
    failures = kafka.DeliveryFailures(SERVICE)
    producer = kafka.producer(args.bootstrap, {"on_delivery": failures})
    consumer = kafka.consumer(args.bootstrap, args.group)
    router = Router(instance, args.threshold)
    checkpoint = Checkpoint(consumer, producer, failures)
    status = StatusPublisher(producer, topics.status, SERVICE, instance)
    settings = control.LiveSettings(SERVICE, {"threshold": args.threshold})

    def on_change(cmd: control.ControlCommand) -> None:
        if cmd.setting == "threshold":
            router.set_threshold(float(cmd.value))

    follower = ControlFollower(args.bootstrap, topics.control, settings, status, on_change,
                               secret=args.control_secret)
    follower.catch_up()

    def on_revoke(_: Consumer, partitions: list[TopicPartition]) -> None:
        # The next owner starts from the committed offsets: commit what is done first.
        checkpoint.commit()
        checkpoint.forget(partitions)

    def housekeeping() -> None:
        follower.poll()
        status.beat(settings.values, counters())

    def counters() -> dict[str, int]:
        return {**router.counters.as_dict(), "delivery_failures": failures.count,
                "commits": checkpoint.commits}

    consumer.subscribe([topics.transactions], on_revoke=on_revoke)
    destinations = {LEGIT: topics.legit, FRAUD: topics.fraud, DLQ: topics.dlq}
    log.info("routing %s at threshold %g", topics.transactions, router.threshold)
    try:
        loop(consumer, producer, router, checkpoint, destinations, args.batch_size,
             housekeeping, shutdown)
    finally:
        committed = checkpoint.commit()
        status.beat(settings.values, counters(), force=True)
        producer.flush(2)
        consumer.close()
        follower.close()
    log.info("stopped: %s, %d delivery failures", router.counters.as_dict(), failures.count)
    return 0 if committed and not failures.count else 1


def loop(
    consumer: Consumer,
    producer: Producer,
    router: Router,
    checkpoint: Checkpoint,
    destinations: dict[str, str],
    batch_size: int,
    housekeeping: Callable[[], None],
    shutdown: Shutdown,
) -> None:
    """The hot path: consume a batch → route → produce → checkpoint when due."""
    produce = producer.produce
    legit_topic, fraud_topic, dlq_topic = destinations[LEGIT], destinations[FRAUD], \
        destinations[DLQ]
    while not shutdown.requested:
        messages = kafka.consume_batch(consumer, batch_size, 0.1)
        if messages:
            records = [m for m in messages if m.error() is None or not _is_error(m)]
            routed = router.route(records)
            for topic, outputs in ((legit_topic, routed.legit), (fraud_topic, routed.fraud)):
                for key, value in outputs:
                    try:
                        produce(topic, value, key)
                    except BufferError:
                        kafka.produce_when_room(producer, topic, key, value)
            for key, value, headers in routed.dlq:
                kafka.produce_when_room(producer, dlq_topic, key, value, headers)
            checkpoint.track(records)
        producer.poll(0)
        if checkpoint.due():
            checkpoint.commit()
        housekeeping()


def _is_error(message: Message) -> bool:
    error = message.error()
    if error is None:
        return False
    if error.fatal():
        raise KafkaException(error)
    log.warning("consumer: %s", error.str())
    return True


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(args.verbose)
    return run_service("fraud-detector", lambda: run(args, Shutdown().install()))


if __name__ == "__main__":
    raise SystemExit(main())
