"""fraud-detector: consume a batch, route it, produce the results, checkpoint."""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Sequence
from typing import Any

from confluent_kafka import (
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)

from services import config, control, kafka
from services.checkpoint import (
    AT_LEAST_ONCE,
    EXACTLY_ONCE,
    GUARANTEES,
    Checkpoint,
    for_guarantee,
)
from services.control_channel import ControlFollower, StatusPublisher
from services.detector.routing import Routed, Router
from services.detector.rules import RULE_NAMES
from services.detector.snapshots import TOPIC_CONFIG as SNAPSHOT_TOPIC
from services.detector.stateful import InternalTopics, Output, StatefulDetector
from services.lifecycle import Shutdown, run_service, settle_heap, setup_logging

log = logging.getLogger("fraud.detector")
SERVICE = "detector"
PARTITIONS = 4
SEND_WAIT = 0.001  # seconds; see loop
# Seconds between two writes of the state changes once caught up (``caught_up``); the
# commit writes what is left.
CHANGES_EVERY = 0.1


def parse_args(argv: Sequence[str] | None) -> config.argparse.Namespace:
    env = os.environ
    parser = config.base_parser("fraud-detector", "Route transactions to legit or fraud.")
    config.env_option(
        parser, "--threshold", "FRAUD_THRESHOLD", "900",
        "the classic rule fires when amount >= this (with a model, a hit it scores "
        "under model_veto is let through)", env,
        type=config.number("--threshold (FRAUD_THRESHOLD)", low=0, high=1e9,
                           low_inclusive=False),
    )
    config.env_option(parser, "--group", "DETECTOR_GROUP", "fraud-detector",
                      "consumer group of the detectors", env)
    config.env_option(
        parser, "--batch-size", "DETECTOR_BATCH_SIZE", "1000", "records per consume call",
        env, type=config.whole("--batch-size (DETECTOR_BATCH_SIZE)", low=1, high=100_000),
    )
    config.env_option(
        parser, "--processing-guarantee", "PROCESSING_GUARANTEE", EXACTLY_ONCE,
        f"{EXACTLY_ONCE} (Kafka transactions) or {AT_LEAST_ONCE}", env,
        type=_guarantee)
    config.env_option(
        parser, "--instance", "DETECTOR_INSTANCE", socket.gethostname(),
        "this instance's name, the same across its restarts and unique in the group "
        "(its static group membership and transactional id)", env,
        shown_default="the host name", type=_instance_name)
    config.env_option(
        parser, "--rules", "DETECTOR_RULES", "all",
        "'threshold' (the classic rule alone, stateless), 'all', or a comma-separated "
        f"choice of {', '.join(RULE_NAMES)} (the threshold always applies)", env,
        type=_rules)
    config.env_option(
        parser, "--model", "DETECTOR_MODEL", "on",
        "'on': an online model scores every transaction and learns from the labels "
        "topic (needs rules); it starts as the group's newest snapshot on "
        "<group>-model-snapshots, where there is one; 'off'", env,
        type=_on_off("--model (DETECTOR_MODEL)"))
    config.env_option(
        parser, "--partition-idle", "DETECTOR_PARTITION_IDLE_S", "2",
        "seconds without a record after which a transactions partition stops holding "
        "back event time (the rules' watermark) until it speaks again", env,
        type=config.number("--partition-idle (DETECTOR_PARTITION_IDLE_S)", low=0.01,
                           high=3600))
    parser.add_argument("--verbose", action="store_true", help="debug logging")
    return config.parse(parser, argv)


def _rules(text: str) -> tuple[str, ...]:
    """The stateful rules to run: none for 'threshold', every one for 'all'."""
    if text == "threshold":
        return ()
    if text == "all":
        return RULE_NAMES
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    unknown = [name for name in names if name not in RULE_NAMES]
    if unknown or not names:
        raise config.argparse.ArgumentTypeError(
            f"--rules (DETECTOR_RULES): {text!r} is not 'threshold', 'all' or a list of "
            + ", ".join(RULE_NAMES))
    return names


def _on_off(name: str) -> Callable[[str], bool]:
    def convert(text: str) -> bool:
        if text.lower() in ("on", "true", "1", "yes"):
            return True
        if text.lower() in ("off", "false", "0", "no"):
            return False
        raise config.argparse.ArgumentTypeError(f"{name}: {text!r} is not 'on' or 'off'")

    return convert


def _guarantee(text: str) -> str:
    if text not in GUARANTEES:
        raise config.argparse.ArgumentTypeError(
            f"--processing-guarantee (PROCESSING_GUARANTEE): {text!r} is not one of "
            + ", ".join(GUARANTEES))
    return text


def _instance_name(text: str) -> str:
    if not text or len(text) > 200 or not text.isprintable():
        raise config.argparse.ArgumentTypeError(
            f"--instance (DETECTOR_INSTANCE): {text!r} is not a name of 1..200 characters")
    return text


def run(args: config.argparse.Namespace, shutdown: Shutdown) -> int:
    topics = config.topics(args)
    instance = kafka.instance_id(SERVICE)
    wanted = {topics.transactions: PARTITIONS, topics.legit: PARTITIONS,
              topics.fraud: PARTITIONS, topics.dlq: 1, topics.control: 1, topics.status: 1}
    internal = InternalTopics.of(args.group)
    if args.rules:
        # One partition of each state topic per input partition: state moves with it.
        wanted.update(dict.fromkeys(internal.partitioned(), PARTITIONS))
        if args.model:
            wanted[topics.labels] = PARTITIONS
            wanted[internal.model_snapshots] = 1
    kafka.ensure_topics(args.bootstrap, wanted, args.connect_timeout,
                        compacted=(internal.source_changelog, internal.target_changelog,
                                   internal.model_snapshots) if args.rules else (),
                        configs={internal.model_snapshots: SNAPSHOT_TOPIC})
    stateful = StatefulDetector.build(
        args.bootstrap, topics.transactions, topics.labels, args.group, instance,
        args.rules, args.model, args.threshold, args.partition_idle,
        args.batch_size) if args.rules else None
    failures = kafka.DeliveryFailures(SERVICE)
    exactly_once = args.processing_guarantee == EXACTLY_ONCE
    # Static membership: a restarted instance takes its partitions straight back.
    consumer = kafka.consumer(args.bootstrap, args.group, instance=args.instance,
                              on_path=True)

    def on_assign(_: Consumer, partitions: list[TopicPartition]) -> None:
        if stateful is not None:
            stateful.assign(partitions)

    def on_revoke(_: Consumer, partitions: list[TopicPartition]) -> None:
        # The next owner starts from the committed offsets: commit what is done first.
        checkpoint.commit()
        checkpoint.forget(partitions)
        if stateful is not None:
            stateful.revoke(partitions)

    def on_lost(_: Consumer, partitions: list[TopicPartition]) -> None:
        # Already someone else's (this member's session expired): what was done for
        # them since the last commit must not be committed now.
        log.warning("partitions lost: %s", ", ".join(str(tp.partition) for tp in partitions))
        if stateful is not None:
            stateful.revoke(partitions)
        checkpoint.abandon()

    # Join the group before the rest is set up: where static membership is not honoured
    # (the embedded broker), the join waits out the previous member's session, and that
    # wait then overlaps with initialising transactions. The callbacks run only inside
    # the loop's polls, when the checkpoint they use exists.
    inputs = [topics.transactions] if stateful is None else stateful.inputs()
    consumer.subscribe(inputs, on_assign=on_assign, on_revoke=on_revoke, on_lost=on_lost)
    if exactly_once:
        # One transactional id per instance of a group, the same across its restarts.
        producer = kafka.transactional_producer(
            args.bootstrap, f"{args.group}.{args.instance}", {"on_delivery": failures})
    else:
        producer = kafka.producer(args.bootstrap, {"on_delivery": failures})
    # Heartbeats and command answers have a producer of their own, outside the
    # transactions: they must flow while no transaction is open, and an aborted
    # transaction must not take the status of the moment with it.
    status_producer, cluster = kafka.status_producer(args.bootstrap, SERVICE)
    router = Router(instance, args.threshold)
    checkpoint = for_guarantee(args.processing_guarantee, consumer, producer, failures)
    status = StatusPublisher(status_producer, topics.status, SERVICE, instance)
    initial: dict[str, float | bool] = {"threshold": args.threshold}
    if stateful is not None:
        initial.update(stateful.values())
        checkpoint.before_commit = lambda: produce_all(
            producer, stateful.changes(), too_large=stateful.state_too_large)
        checkpoint.after_rewind = stateful.reload
        checkpoint.holds = stateful.holds
    settings = control.LiveSettings(SERVICE, initial)

    def on_change(cmd: control.ControlCommand) -> None:
        if stateful is not None:
            stateful.apply(cmd.setting, float(cmd.value))
        elif cmd.setting == "threshold":
            router.set_threshold(float(cmd.value))

    follower = ControlFollower(args.bootstrap, topics.control, settings, status, on_change,
                               secret=args.control_secret)
    follower.catch_up()

    def route_batch(records: list[Message]) -> None:  # the classic rule alone
        in_transaction(checkpoint, records, produce_routed, producer, router.route(records),
                       topics.legit, topics.fraud, topics.dlq)

    def stages_batch(records: list[Message]) -> None:  # the stateful rules and the model
        assert stateful is not None
        outputs = stateful.process(records, topics.legit, topics.fraud, topics.dlq)
        in_transaction(checkpoint, records, produce_all, producer, outputs, topics.dlq)

    changes_at = 0.0  # when the state changes last went out between commits

    def caught_up() -> None:
        # The state changes go out now rather than all at once before the commit,
        # where encoding a second's worth of them held up the records that arrived
        # meanwhile (30 ms at 1,000/s); in the open transaction, like the outputs of
        # the records that made them. At most every CHANGES_EVERY: a key changed at
        # each of the turns between is written once for them all.
        nonlocal changes_at
        if stateful is not None:
            # A partition that went idle is news for the second stage, at once.
            changes = stateful.progress()
            now = time.monotonic()
            if now - changes_at >= CHANGES_EVERY:
                changes += stateful.changes()
                changes_at = now
            if changes:
                checkpoint.begin()
                in_transaction(checkpoint, [], produce_all, producer, changes, "",
                               stateful.state_too_large)

    def housekeeping() -> None:
        if stateful is not None:
            stateful.poll_labels()
            stateful.save_model(status_producer)
        follower.poll()
        status_producer.poll(0)
        cluster.check(status_producer)
        status.beat(settings.values, counters)

    def counters() -> dict[str, Any]:
        routed = router.counters.as_dict() if stateful is None else stateful.counters()
        return {**routed, "delivery_failures": failures.count,
                "commits": checkpoint.commits, "rewinds": checkpoint.rewinds}

    log.info("routing %s at threshold %g with %s, %s, as %s of group %s",
             topics.transactions, args.threshold,
             "rules " + ", ".join(args.rules) + (" and a model" if args.model else "")
             if stateful else "no other rule", args.processing_guarantee, args.instance,
             args.group)
    committed = False
    settle_heap()
    try:
        loop(consumer, producer, checkpoint, args.batch_size,
             route_batch if stateful is None else stages_batch, housekeeping, shutdown,
             caught_up)
        committed = checkpoint.close()
    except KafkaException as exc:
        error = exc.args[0]
        # Fenced by a newer process with this instance name, or the cluster gone in the
        # middle of a commit: exit, and let the supervisor start a fresh process, which
        # resumes from the last commit.
        log.error("stopping: %s%s", "fatal: " if error.fatal() else "", error.str())
    finally:
        if stateful is not None:  # what online steps taught it since the last snapshot
            stateful.save_model(status_producer, force=True)
        status.beat(settings.values, counters, force=True)
        status_producer.flush(1)
        producer.flush(1)
        try:
            consumer.close()  # runs on_revoke: a last commit, which may fail as above
        except KafkaException as exc:
            log.error("closing: %s", exc.args[0].str())
            committed = False
        follower.close()
        if stateful is not None:
            stateful.close()
    log.info("stopped: %s, %d delivery failures", counters(), failures.count)
    # Failed deliveries were settled by a rewind (and an abort): their records were
    # routed again. What counts is that the last commit went through.
    return 0 if committed else 1


def loop(
    consumer: Consumer,
    producer: Producer,
    checkpoint: Checkpoint,
    batch_size: int,
    handle: Callable[[list[Message]], None],
    housekeeping: Callable[[], None],
    shutdown: Shutdown,
    caught_up: Callable[[], None] | None = None,
) -> None:
    """The hot path: consume a batch → ``handle`` it (route, produce in the open
    transaction) → checkpoint when due. Whenever nothing fetched is left to handle,
    ``caught_up`` runs, and what was produced goes out at once."""

    def send_now() -> None:
        if caught_up is not None:
            caught_up()
        if len(producer):
            # Rather than after linger.ms: flush() ignores the linger while it runs
            # (rd_kafka_flush). It waits for delivery at most SEND_WAIT. Under load
            # there is always more to consume, and the linger gathers the outputs
            # of many batches into large requests.
            producer.flush(SEND_WAIT)

    while not shutdown.requested:
        messages = kafka.consume_batch(consumer, batch_size, 0.1, send_now)
        if messages:
            handle([m for m in messages if m.error() is None or not _is_error(m)])
        producer.poll(0)
        if checkpoint.due():
            checkpoint.commit()
        housekeeping()


def in_transaction(checkpoint: Checkpoint, records: list[Message],
                   produce: Callable[..., None], *args: Any) -> None:
    """A batch's outputs, in the open transaction with exactly-once.

    The records are tracked first, so that an abort rewinds their partitions too. A
    transaction that fails under this batch (a delivery of an earlier one, say) is
    aborted, and everything since the last commit is processed again.
    """
    try:
        if records:
            checkpoint.begin()
        checkpoint.track(records)
        produce(*args)
    except KafkaException as exc:
        checkpoint.give_up(exc)


def produce_routed(producer: Producer, routed: Routed, legit: str, fraud: str,
                   dlq: str) -> None:
    """The classic detector's outputs: the hot path, a produce call per record."""
    produce = producer.produce
    for topic, outputs in ((legit, routed.legit), (fraud, routed.fraud)):
        for key, value in outputs:
            try:
                produce(topic, value, key)
            except BufferError:
                kafka.produce_when_room(producer, topic, key, value)
    for key, value, headers in routed.dlq:  # type: ignore[assignment]  # value may be None
        kafka.produce_dead_letter(producer, dlq, key, value, headers)


def produce_all(producer: Producer, outputs: list[Output], dlq: str = "",
                too_large: Callable[[str, bytes | None, bytes | None], None] | None = None
                ) -> None:
    """Every output to its topic (and partition, when it names one). ``too_large``
    takes an output larger than the client may send, where leaving it out is better
    than stopping (a state change: ``StatefulDetector.state_too_large``)."""
    produce = producer.produce
    for topic, key, value, headers, partition in outputs:
        if topic == dlq:
            kafka.produce_dead_letter(producer, topic, key, value, headers or [])
            continue
        try:
            # Positional, and no headers unless there are some: a keyword argument,
            # even ``headers=None``, cost 0.4 µs more a call in the client.
            if headers is None:
                if partition is None:
                    produce(topic, value, key)
                else:
                    produce(topic, value, key, partition)
            elif partition is None:
                produce(topic, value, key, headers=headers)
            else:
                produce(topic, value, key, partition=partition, headers=headers)
        except BufferError:
            kafka.produce_when_room(producer, topic, key, value, headers, partition)
        except KafkaException as exc:
            if too_large is None or exc.args[0].code() != KafkaError.MSG_SIZE_TOO_LARGE:
                raise
            too_large(topic, key, value)


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
