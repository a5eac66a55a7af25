"""fraud-broker: an embedded Kafka broker for trying things out without a cluster.

librdkafka carries a mock cluster (the ``test.mock.num.brokers`` property); it lives
inside the client that creates it. This process creates one, prints its bootstrap
address on the first line of standard output, and keeps it alive until SIGINT or
SIGTERM. Clients in other processes reach it over TCP like any broker.

It keeps everything in memory (roughly the last 5 MB of each partition) and loses it
when it stops: it is for demos, tests and benchmarks, not for keeping data.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import MutableMapping, Sequence

from confluent_kafka import Producer

from services.config import OneLineParser, whole
from services.lifecycle import Shutdown, setup_logging

log = logging.getLogger("fraud.broker")

# What the clients of this broker should be told (the environment fraud-console and
# the benchmarks give them). It holds a fetch that finds nothing for the whole
# fetch.wait.max.ms, records arriving meanwhile included, where Apache Kafka answers
# at once: a wait of 1 ms on a transaction's path took the full detector's p99 at
# 1,000/s from 30 to 14-18 ms end to end (bench.latency), for 0.02 core more at 100/s.
CLIENT_TUNING = {"KAFKA_FETCH_WAIT_MS": "1"}


def tune_clients(env: MutableMapping[str, str]) -> None:
    """``CLIENT_TUNING`` into ``env``, where it does not say otherwise already."""
    for name, value in CLIENT_TUNING.items():
        env.setdefault(name, value)


def start(brokers: int = 1) -> tuple[Producer, str]:
    """A client hosting a mock cluster of ``brokers`` brokers, and its bootstrap address."""
    host = Producer({"test.mock.num.brokers": brokers,
                     "logger": logging.getLogger("fraud.librdkafka")})
    metadata = host.list_topics(timeout=10)
    bootstrap = ",".join(f"{b.host}:{b.port}" for b in
                         sorted(metadata.brokers.values(), key=lambda b: b.id))
    return host, bootstrap


def main(argv: Sequence[str] | None = None) -> int:
    parser: argparse.ArgumentParser = OneLineParser(
        prog="fraud-broker",
        description="Run an embedded Kafka broker (in memory) and print its address.",
    )
    parser.add_argument("--brokers", type=whole("--brokers", low=1, high=9), default=1,
                        help="number of brokers in the cluster (default: %(default)s)")
    args = parser.parse_args(argv)
    setup_logging()
    shutdown = Shutdown().install()
    host, bootstrap = start(args.brokers)
    print(bootstrap, flush=True)
    log.info("embedded broker listening on %s (in memory; Ctrl+C stops it)", bootstrap)
    while not shutdown.wait(1.0):
        host.poll(0)
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
