"""fraud-tail TOPIC: print a topic's records as JSON lines.

Each line is the record's value when it is JSON, or ``{"raw": "..."}`` when it is not,
wrapped with where it came from: ``{"topic", "partition", "offset", "key", "value",
"headers"}`` with ``--meta``. Replaces the tutorial's ``kafka-console-consumer`` step.
A topic that does not exist yet is waited for: a tail is often started first.
"""

from __future__ import annotations

import base64
import contextlib
import os
import sys
import time
import uuid
from collections.abc import Sequence
from typing import Any, cast

import orjson
from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, KafkaException, Message, TopicPartition

from services import config, kafka
from services.lifecycle import Shutdown, run_service

# A consumed record's headers are a list of (str, bytes); the stubs also allow what
# ``produce`` takes.
ConsumedHeaders = list[tuple[str, bytes | None]]


def parse_args(argv: Sequence[str] | None) -> config.argparse.Namespace:
    parser = config.base_parser("fraud-tail", "Print a topic's records as JSON lines.")
    parser.add_argument("topic", type=config.topic_name("TOPIC"), help="topic to read")
    parser.add_argument("--from-beginning", action="store_true",
                        help="start at the oldest record instead of the newest")
    parser.add_argument("--count", action="store_true",
                        help="print how many records were read on standard error at exit")
    parser.add_argument("--max", type=config.whole("--max", low=1, high=10**12),
                        help="stop after this many records")
    parser.add_argument("--idle", type=config.number("--idle", low=0, high=86400,
                                                     low_inclusive=False),
                        help="stop after this many seconds without a record")
    parser.add_argument("--meta", action="store_true",
                        help="wrap each value with topic, partition, offset, key, headers")
    return config.parse(parser, argv)


def _value(raw: bytes | None) -> Any:
    if raw is None:
        return None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        try:
            return {"raw": raw.decode()}
        except UnicodeDecodeError:
            return {"raw_base64": base64.b64encode(raw).decode()}


def _line(message: Message, meta: bool) -> bytes:
    value = _value(message.value())
    if not meta:
        return orjson.dumps(value)
    key = message.key()
    return orjson.dumps({
        "topic": message.topic(), "partition": message.partition(),
        "offset": message.offset(), "timestamp": message.timestamp()[1],
        "key": key.decode(errors="replace") if key is not None else None,
        "headers": {k: (v or b"").decode(errors="replace")
                    for k, v in cast(ConsumedHeaders, message.headers() or [])},
        "value": value,
    })


def wait_for_topic(args: config.argparse.Namespace, shutdown: Shutdown) -> list[int] | None:
    """The topic's partitions, once it exists: a tail is often started before the
    services that create its topic. None when stopped first (a signal, or ``--idle``)."""
    metadata = kafka.wait_for_broker(args.bootstrap, args.connect_timeout)
    client = None
    began = time.monotonic()
    while not shutdown.requested:
        topic = metadata.topics.get(args.topic)
        if topic is not None and topic.partitions and topic.error is None:
            return sorted(topic.partitions)
        if client is None:
            print(f"fraud-tail: waiting for topic {args.topic} to be created",
                  file=sys.stderr, flush=True)
            client = kafka.admin(args.bootstrap, quiet=True)
        if args.idle is not None and time.monotonic() - began >= args.idle:
            return None
        shutdown.wait(0.5)
        # All topics, not this one: asking for it by name would create it where the
        # cluster creates topics on demand.
        with contextlib.suppress(KafkaException):  # the cluster away a moment: ask again
            metadata = client.list_topics(timeout=5)
    return None


def run(args: config.argparse.Namespace, shutdown: Shutdown) -> int:
    partitions = wait_for_topic(args, shutdown)
    if partitions is None:
        if args.count:
            print("0 records", file=sys.stderr)
        return 0
    consumer = kafka.consumer(args.bootstrap, f"fraud-tail-{uuid.uuid4().hex[:8]}",
                              {"enable.auto.commit": False}, on_path=True)
    start = OFFSET_BEGINNING if args.from_beginning else OFFSET_END
    consumer.assign([TopicPartition(args.topic, p, start) for p in partitions])
    out = sys.stdout.buffer
    seen = 0
    last = time.monotonic()
    try:
        while not shutdown.requested:
            # As soon as there is one: a live tail prints records as they come.
            messages = kafka.consume_batch(consumer, 500, 0.2)
            good = [m for m in messages if m.error() is None]
            if args.max is not None:
                good = good[: args.max - seen]
            if good:
                out.write(b"".join(_line(m, args.meta) + b"\n" for m in good))
                out.flush()
                seen += len(good)
                last = time.monotonic()
            if args.max is not None and seen >= args.max:
                break
            if args.idle is not None and time.monotonic() - last >= args.idle:
                break
    except BrokenPipeError:
        # `fraud-tail ... | head` closed the pipe: a normal way to stop reading.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    finally:
        consumer.close()
    if args.count:
        print(f"{seen} records", file=sys.stderr)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    return run_service("fraud-tail", lambda: run(args, Shutdown().install()))


if __name__ == "__main__":
    raise SystemExit(main())
