"""The floor every detector is measured against: a raw librdkafka pass-through.

    KAFKA_BROKER_URL=HOST:PORT TRANSACTIONS_TOPIC=in LEGIT_TOPIC=out python -m bench.raw

The least a process can do and still move each record from the input topic to an
output: ``consume(10000)``, re-produce the bytes with their key, a 10 ms linger. No
checkpoint (it commits nothing), no heartbeat, no control reader, no error filter
beyond skipping what the client reports as an error. Its clients are the services'
own (services.kafka: the same fetch settings, idempotence, acks and compression), so
that what sets it apart from the detector is the detector's work, not the wire.

It stops on SIGTERM once what it produced is delivered, exiting 0 when every record
was.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

from confluent_kafka import Consumer, KafkaError, Message

from services import kafka
from services.detector.service import PARTITIONS
from services.lifecycle import Shutdown, run_service, settle_heap, setup_logging

log = logging.getLogger("fraud.raw")
BATCH = 10_000
LINGER_MS = 10
IDLE_WAIT = 0.1  # seconds


def run(environ: Mapping[str, str], shutdown: Shutdown) -> int:
    bootstrap = environ.get("KAFKA_BROKER_URL", "localhost:9092")
    source = environ.get("TRANSACTIONS_TOPIC", "queueing.transactions")
    sink = environ.get("LEGIT_TOPIC", "streaming.transactions.legit")
    group = environ.get("DETECTOR_GROUP", "bench-raw")
    kafka.ensure_topics(bootstrap, {source: PARTITIONS, sink: PARTITIONS})
    failed = 0

    def on_delivery(error: KafkaError | None, _: object) -> None:
        nonlocal failed
        if error is not None:
            failed += 1

    producer = kafka.producer(bootstrap, {"linger.ms": LINGER_MS,
                                          "on_delivery": on_delivery})
    consumer = kafka.consumer(bootstrap, group, on_path=True)
    consumer.subscribe([source])
    log.info("raw pass-through: %s to %s", source, sink)
    produce, consume = producer.produce, consumer.consume
    # The collector tuned as in every service: without it, the collections that each
    # batch of 10,000 records set off cost the raw client more than the services' loop.
    settle_heap()
    try:
        while not shutdown.requested:
            # What is fetched already, at once; a wait only when there is none, until
            # the first record. (``consume(n, t)`` with a time waits all of it unless
            # n records are there: with 0.1 s, or 5 ms, it held records back and ran
            # at 0.6 to 0.8x of the services' loop.)
            for message in consume(BATCH, 0) or first(consumer):
                if message.error() is not None:
                    continue
                try:
                    produce(sink, message.value(), message.key())
                except BufferError:
                    kafka.produce_when_room(producer, sink, message.key(), message.value())
            producer.poll(0)
    finally:
        left = producer.flush(10)
        consumer.close()
    return 0 if not left and not failed else 1


def first(consumer: Consumer) -> list[Message]:
    """The next record to arrive (or none within ``IDLE_WAIT``), with any behind it."""
    message = consumer.poll(IDLE_WAIT)
    return [] if message is None else [message, *consumer.consume(BATCH - 1, 0)]


def main() -> int:
    setup_logging(False)
    return run_service("bench-raw", lambda: run(os.environ, Shutdown().install()))


if __name__ == "__main__":
    raise SystemExit(main())
