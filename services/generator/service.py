"""fraud-generator: the Kafka loop around the pacer and a source of transactions."""

from __future__ import annotations

import argparse
import logging
import os
import time
from collections.abc import Sequence

from services import config, control, kafka
from services.control_channel import ControlFollower, StatusPublisher
from services.generator import replay
from services.generator.pacing import Pacer, RateMeter, turn_length
from services.generator.profiles import (
    DEFAULT_FRAUD_RATE,
    PROFILES,
    ScenarioProfile,
    Source,
    Tutorial,
)
from services.lifecycle import Shutdown, run_service, setup_logging

log = logging.getLogger("fraud.generator")
SERVICE = "generator"
PARTITIONS = 4
# The loop makes and sends what is due in one go, a turn at a time. A turn (produce,
# poll, heartbeat, control) costs about the same for one transaction as for fifty: at
# 10,000/s, waking for each one took 0.4 core. And a turn's records travel as one
# batch a partition, which the broker stores and each reader fetches as one: fewer,
# fuller batches cost them less a record. So a turn lasts long enough to send about
# TURN_RECORDS, from 5 to 50 ms (20 ms at 10,000/s, 50 ms at 4,000/s and below).
# Turns of 5 ms made batches of one or two records at 1,000/s, and the embedded
# broker, which walks a partition's batches from the oldest to find the one a reader
# asks for, fell behind once its partitions filled (end-to-end p50 4 ms, 200 a minute
# later). A transaction is stamped when it is made, at its turn, and sent at once, so
# the turn adds nothing to its latency.
TURN_RECORDS = 200
SHORTEST_TURN, LONGEST_TURN = 0.005, 0.05


def parse_args(argv: Sequence[str] | None) -> config.argparse.Namespace:
    parser = config.base_parser("fraud-generator", "Stream synthetic card transactions.")
    config.env_option(
        parser, "--tps", "TRANSACTIONS_PER_SECOND", "100", "transactions per second",
        os.environ,
        type=config.number("--tps (TRANSACTIONS_PER_SECOND)", low=0, high=1_000_000,
                           low_inclusive=False),
    )
    parser.add_argument("--count", type=config.whole("--count", low=1, high=10**12),
                        help="stop after this many transactions (default: run until stopped)")
    parser.add_argument("--seed", type=int, help="seed for reproducible content")
    config.env_option(
        parser, "--profile", "GENERATOR_PROFILE", "tutorial",
        "what to generate: tutorial (uniform, no ground truth) or scenarios (customers "
        "with habits and labelled fraud scenarios)", os.environ, type=_profile,
        metavar="NAME",
    )
    config.env_option(
        parser, "--fraud-rate", "FRAUD_RATE", str(DEFAULT_FRAUD_RATE),
        "share of transactions that belong to fraud scenarios (scenarios profile)",
        os.environ, type=config.number("--fraud-rate (FRAUD_RATE)", low=0, high=1),
        metavar="SHARE",
    )
    parser.add_argument("--replay", metavar="FILE.csv",
                        help="stream the rows of a labelled CSV (Time, V1..V28, Amount, "
                             "Class) instead of a profile, then stop")
    parser.add_argument("--loop", action="store_true",
                        help="with --replay: start over at the end of the file")
    parser.add_argument("--verbose", action="store_true", help="debug logging")
    args = config.parse(parser, argv)
    if args.loop and not args.replay:
        parser.error("--loop goes with --replay")
    if args.replay:
        try:
            replay.check(args.replay)
        except config.ConfigError as exc:
            parser.error(str(exc))
    return args


def _profile(text: str) -> str:
    if text not in PROFILES:
        raise argparse.ArgumentTypeError(
            f"--profile (GENERATOR_PROFILE): {text!r} is not one of {', '.join(PROFILES)}")
    return text


def source_of(args: argparse.Namespace) -> Source:
    if args.replay:
        return replay.CsvReplay(args.replay, loop=args.loop)
    if args.profile == "scenarios":
        return ScenarioProfile(seed=args.seed, fraud_rate=args.fraud_rate)
    return Tutorial(seed=args.seed)


def run(args: config.argparse.Namespace, shutdown: Shutdown) -> int:
    topics = config.topics(args)
    source = source_of(args)
    wanted = {topics.transactions: PARTITIONS, topics.control: 1, topics.status: 1}
    if source.labelled:  # the tutorial profile has no ground truth: no labels topic
        wanted[topics.labels] = PARTITIONS
    kafka.ensure_topics(args.bootstrap, wanted, args.connect_timeout)
    instance = kafka.instance_id(SERVICE)
    failures = kafka.DeliveryFailures(SERVICE)
    producer = kafka.producer(args.bootstrap, {"on_delivery": failures})
    # Heartbeats on a producer of their own: their deliveries tell when the cluster
    # stops answering.
    status_producer, cluster = kafka.status_producer(args.bootstrap, SERVICE)
    status = StatusPublisher(status_producer, topics.status, SERVICE, instance)
    settings = control.LiveSettings(SERVICE, {"tps": args.tps, "paused": False})
    pacer = Pacer(rate=args.tps, now=time.monotonic())

    def on_change(cmd: control.ControlCommand) -> None:
        now = time.monotonic()
        if cmd.setting == "tps":
            pacer.retarget(float(cmd.value), now)
            source.pace(pacer.rate, time.time_ns() // 1_000_000)
            meter.reset()
        elif cmd.setting == "paused":
            pacer.pause(bool(cmd.value), now)
            meter.reset()

    meter = RateMeter()
    follower = ControlFollower(args.bootstrap, topics.control, settings, status, on_change,
                               secret=args.control_secret)
    follower.catch_up()
    # The schedule starts now: the time reading the control topic took is not owed.
    pacer.retarget(pacer.rate, time.monotonic())
    source.pace(pacer.rate, time.time_ns() // 1_000_000)
    limit = args.count
    produced = 0
    dropped_seen = 0
    last_drop_at = -10.0  # when the pacer last gave up on messages it could not send
    warned_at = -10.0
    log.info("producing to %s at %g/s%s", topics.transactions, pacer.rate,
             " (paused)" if pacer.paused else "")

    def counters() -> dict[str, float | int | bool]:
        return {"produced": produced, "rate": round(meter.rate(), 1),
                "delivery_failures": failures.count, "dropped": pacer.dropped,
                "keeping_up": time.monotonic() - last_drop_at > 5}

    try:
        while not shutdown.requested:
            now = time.monotonic()
            count = pacer.due(now)
            if limit is not None:
                count = min(count, limit - produced)
            if count:
                batch = source.batch(count, time.time_ns() // 1_000_000)
                for key, value in batch.transactions:
                    kafka.produce_when_room(producer, topics.transactions, key, value)
                for key, value in batch.labels:
                    kafka.produce_when_room(producer, topics.labels, key, value)
                count = len(batch.transactions)  # a replay may have run out of rows
                produced += count
                pacer.sent(count)
                meter.add(now, count)
            producer.poll(0)
            status_producer.poll(0)
            cluster.check(status_producer)
            if pacer.dropped != dropped_seen:
                dropped_seen, last_drop_at = pacer.dropped, now
                if now - warned_at >= 5:
                    warned_at = now
                    log.warning("cannot keep up with %g/s: achieving %.0f/s on this machine",
                                pacer.rate, meter.rate())
            status.beat(settings.values, counters)
            if (limit is not None and produced >= limit) or source.finished:
                break
            follower.poll()
            turn = turn_length(pacer.rate, TURN_RECORDS, SHORTEST_TURN, LONGEST_TURN)
            pause = pacer.wait(time.monotonic(), shortest=turn, longest=LONGEST_TURN)
            if count:
                # This turn's records go out now rather than after linger.ms, since
                # flush() ignores the linger while it runs (rd_kafka_flush). It returns
                # once they are delivered, at the latest when the next turn is due.
                began = time.monotonic()
                producer.flush(pause)
                pause -= time.monotonic() - began
            time.sleep(max(0.0, pause))
    finally:
        status.beat(settings.values, counters, force=True)
        left = producer.flush(4)
        status_producer.flush(0.2)
        follower.close()
    if left:
        log.error("%d transactions not delivered at exit", left)
    if isinstance(source, replay.CsvReplay):
        log.info("replayed %d rows of %s (%d bad rows skipped)", source.rows, args.replay,
                 source.bad_rows)
    log.info("stopped after %d transactions (%d delivery failures)", produced, failures.count)
    return 1 if left or failures.count else 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(args.verbose)
    return run_service("fraud-generator", lambda: run(args, Shutdown().install()))


if __name__ == "__main__":
    raise SystemExit(main())
