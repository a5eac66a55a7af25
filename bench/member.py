"""Run a service module as a consumer-group member that says which partitions it holds.

    python -m bench.member MODULE [ARG ...]

A benchmark of several instances in one group must know when every instance has its
partitions, and whether any moved afterwards. The embedded broker answers no group
description (DescribeGroups and ListGroups are unsupported) and the services log no
assignment, so this runs MODULE's ``main`` in this process with one change: a consumer
that subscribes reports each change of its assignment on stderr, one line each::

    bench.member: assigned in:0,in:1 holds in:0,in:1 at 1700000000000000000

(the partitions that changed, all it holds since, each as topic:partition, and the
wall clock in ns: a stateful detector holds partitions of two topics). Only the
rebalance callbacks are wrapped, and they still call the module's own: its loop and
per-record work are untouched, and the process keeps its pid (bench.child execs it).
"""

from __future__ import annotations

import runpy
import sys
import time
from collections.abc import Callable, Sequence

from confluent_kafka import Consumer, TopicPartition

from services import kafka

PREFIX = "bench.member:"
Rebalance = Callable[[Consumer, list[TopicPartition]], None]


Held = set[tuple[str, int]]  # (topic, partition)


def report(event: str, changed: Sequence[TopicPartition], held: Held) -> None:
    # Topic names hold neither "," nor ":" (Kafka allows letters, digits, ".", "_", "-").
    parts = ",".join(f"{topic}:{partition}" for topic, partition in
                     sorted((tp.topic, tp.partition) for tp in changed))
    holds = ",".join(f"{topic}:{partition}" for topic, partition in sorted(held))
    print(f"{PREFIX} {event} {parts or '-'} holds {holds or '-'} at {time.time_ns()}",
          file=sys.stderr, flush=True)


class ReportingConsumer(Consumer):
    """A consumer whose subscription reports its assignment (incremental with the
    services' cooperative-sticky assignor: each callback names what changed)."""

    def subscribe(self, topics: list[str], on_assign: Rebalance | None = None,
                  on_revoke: Rebalance | None = None,
                  on_lost: Rebalance | None = None) -> None:
        held: Held = set()

        def assigned(consumer: Consumer, partitions: list[TopicPartition]) -> None:
            if on_assign is not None:
                on_assign(consumer, partitions)
            held.update((tp.topic, tp.partition) for tp in partitions)
            report("assigned", partitions, held)

        def revoked(consumer: Consumer, partitions: list[TopicPartition]) -> None:
            if on_revoke is not None:
                on_revoke(consumer, partitions)
            held.difference_update((tp.topic, tp.partition) for tp in partitions)
            report("revoked", partitions, held)

        def lost(consumer: Consumer, partitions: list[TopicPartition]) -> None:
            # Without on_lost the client calls on_revoke: keep that behaviour.
            callback = on_lost if on_lost is not None else on_revoke
            if callback is not None:
                callback(consumer, partitions)
            held.difference_update((tp.topic, tp.partition) for tp in partitions)
            report("lost", partitions, held)

        super().subscribe(topics, on_assign=assigned, on_revoke=revoked, on_lost=lost)


def main(argv: list[str]) -> None:
    module, *args = argv
    kafka.Consumer = ReportingConsumer  # what kafka.consumer builds
    sys.argv = [module, *args]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main(sys.argv[1:])
