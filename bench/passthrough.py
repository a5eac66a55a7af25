"""The baseline the detector is measured against: consume and re-produce raw bytes.

Same clients, settings, batch size and checkpointing as the detector
(services/detector/service.py), so the difference between the two is the
detector's own per-record work: decoding, the rule, encoding the verdict.

    python -m bench.passthrough BOOTSTRAP INPUT OUTPUT GROUP
"""

from __future__ import annotations

import sys

from services import kafka
from services.checkpoint import Checkpoint
from services.lifecycle import Shutdown


def main(argv: list[str]) -> int:
    bootstrap, source, sink, group = argv
    shutdown = Shutdown().install()
    failures = kafka.DeliveryFailures("passthrough")
    producer = kafka.producer(bootstrap, {"on_delivery": failures})
    consumer = kafka.consumer(bootstrap, group)
    checkpoint = Checkpoint(consumer, producer, failures)
    consumer.subscribe([source])
    produce = producer.produce
    try:
        while not shutdown.requested:
            messages = kafka.consume_batch(consumer, 1000, 0.1)
            records = [m for m in messages if m.error() is None]
            for message in records:
                while True:
                    try:
                        produce(sink, message.value(), message.key())
                        break
                    except BufferError:
                        producer.poll(0.05)
            checkpoint.track(records)
            producer.poll(0)
            if checkpoint.due():
                checkpoint.commit()
    finally:
        checkpoint.commit()
        producer.flush(2)
        consumer.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
