"""Nothing lost, nothing doubled: detectors killed with SIGKILL in the middle of a run.

Every generated transaction must come out exactly once across legit, fraud and dead
letters, read as a ``read_committed`` consumer reads them. On Apache Kafka the
transactions a killed detector left open are aborted and never shown to such a
reader. The embedded broker runs the transaction protocol (it writes the commit and
abort markers) but its Fetch ignores ``isolation.level``, so it still shows those
records; ``left_open_by_kills`` picks them out (the outputs a killed process wrote
at or after the position its successor resumed from, where the committed offsets
stood), and the tests check that they are no more than one open transaction: all
written in the last seconds before the kill. Likewise for a transaction a detector
aborts itself (it says where it rewound to). Everything else must be exactly once.
"""

from __future__ import annotations

import random
import signal
import socket
import time
from collections import Counter
from collections.abc import Callable

import orjson
import pytest

from services.config import Topics
from tests.kafka_helpers import (
    RESTART_DELAY,
    Kill,
    Output,
    Outputs,
    ServiceProcess,
    aborted_by_rewinds,
    left_open_by_kills,
    positions,
    read_topic,
    rewinds,
    start,
)

KILLS = 5
# At least: the five kills and restarts (about 7 s each on the embedded broker, see
# RESTART_DELAY) keep the traffic going for 45 s or more, over 20,000 transactions.
TRANSACTIONS = 15_000
# Per second. The embedded broker keeps about 5 MB a partition: at this rate five
# restarts at the 30 s bound still fit, and the test reads every transaction back.
RATE = 500
RESUME_BOUND = 30.0  # seconds from a kill: the liveness promised with a supervisor
OPEN_TRANSACTION_SPAN = 5.0  # seconds: a checkpoint is 1 s, plus a commit's time


def process_name(detector: ServiceProcess) -> str:
    """How a detector process signs its outputs (``kafka.instance_id``)."""
    return f"detector-{socket.gethostname()}-{detector.process.pid}"


def wrote(detector: ServiceProcess, since: float = 0.0):
    name = process_name(detector)
    return lambda records: any(r.process == name and r.at >= since for r in records)


def kill(detector: ServiceProcess) -> Kill:
    detector.process.send_signal(signal.SIGKILL)
    detector.wait(5)
    return Kill(process_name(detector), time.time())


def committed_view(
    outputs: Outputs, where: dict[str, tuple[int, int]], kills: list[Kill],
    detectors: list[ServiceProcess],
) -> tuple[Counter[str | None], list[tuple[Output, float]]]:
    """Ids as a ``read_committed`` reader of Apache Kafka sees them, and what the
    embedded broker showed on top of that: the outputs of the transactions left open by
    kills and of those the (stopped) ``detectors`` aborted themselves, each with the
    time its transaction ended."""
    given_up = [r for d in detectors for r in rewinds(process_name(d), d.output())]
    killed_at = {k.process: k.at for k in kills}
    hidden = [(r, killed_at[r.process])
              for r in left_open_by_kills(outputs.records, where, kills)]
    hidden += aborted_by_rewinds(outputs.records, where, given_up)
    ids = {id(r) for r, _ in hidden}
    return Counter(r.id for r in outputs.records if id(r) not in ids), hidden


def every_id(where: dict[str, tuple[int, int]]) -> Callable[[list[Output]], bool]:
    return lambda records: {r.id for r in records} >= set(where)


def assert_open_transactions_only(hidden: list[tuple[Output, float]],
                                  span: float = OPEN_TRANSACTION_SPAN) -> None:
    """Each output set aside was written in the last ``span`` seconds of its
    transaction: a committed one reprocessed would be older."""
    for record, ended in hidden:
        age = ended - record.at
        assert age <= span, (f"{record.id} by {record.process}, written {age:.1f} s before "
                             "its transaction ended, was committed yet reprocessed")


def test_a_detector_killed_five_times_loses_and_doubles_nothing(
    broker: str, topics: Topics, service_env: dict[str, str], services: list[ServiceProcess]
) -> None:
    seed = random.randrange(10**6)
    rng = random.Random(seed)
    env = {**service_env, "DETECTOR_INSTANCE": "solo"}
    # Traffic until every kill and restart is done and 15,000 have been sent: each kill
    # and restart happens while transactions arrive, however slow the restarts are.
    generator = start(services, "generator", service_env, "--tps", str(RATE), "--seed", "11")
    began = time.monotonic()
    detector = start(services, "detector", env)
    started = [detector]
    outputs = Outputs(broker, topics)
    kills: list[Kill] = []
    resumed_in: list[float] = []
    try:
        assert outputs.wait(wrote(detector), 60, settle=0), "the detector never wrote"
        for _ in range(KILLS):
            time.sleep(rng.uniform(0.2, 2.5))  # a random point of its work
            kills.append(kill(detector))
            killed = kills[-1].at
            time.sleep(RESTART_DELAY)
            detector = start(services, "detector", env)
            started.append(detector)
            if not outputs.wait(wrote(detector, killed), RESUME_BOUND, settle=0):
                detector.kill()
                raise AssertionError(
                    f"detector silent for {RESUME_BOUND:.0f} s after a kill (seed {seed}):\n"
                    + detector.output()[-3000:])
            resumed_in.append(time.time() - killed)
        time.sleep(max(0.0, began + TRANSACTIONS / RATE + 2 - time.monotonic()))
        generator.process.send_signal(signal.SIGTERM)
        assert generator.wait(10) == 0, generator.output()
        sent = int(generator.output().rsplit("stopped after ", 1)[1].split()[0])
        assert sent >= TRANSACTIONS
        where = positions(broker, topics.transactions, sent)
        assert len(where) == sent
        outputs.wait(every_id(where), 60, settle=2)
        detector.process.send_signal(signal.SIGTERM)
        assert detector.wait(10) == 0
        seen, left_open = committed_view(outputs, where, kills, started)
    finally:
        outputs.close()

    assert seen == Counter(list(where)), f"lost or doubled (seed {seed}): " + ", ".join(
        f"{i} x{seen[i]}" for i in set(seen) | set(where) if seen[i] != 1)[:500]
    assert_open_transactions_only(left_open)
    print(f"{KILLS} kills among {sent:,} transactions, resumed after the kill in "
          f"{', '.join(f'{s:.1f}' for s in resumed_in)} s, "
          f"{len(left_open)} records of open or aborted transactions shown by the embedded "
          "broker")
    assert max(resumed_in) < RESUME_BOUND


@pytest.mark.parametrize("instances", [2, 3])
def test_a_member_killed_mid_run_hands_its_partitions_over_intact(
    instances: int, broker: str, topics: Topics, service_env: dict[str, str],
    services: list[ServiceProcess],
) -> None:
    seed = random.randrange(10**6)
    rng = random.Random(seed)
    count = 30_000
    # The kill falls a few seconds in (the group's first join, then up to 2 s) and the
    # hand-over takes a session or two; at 3,000/s the 30,000 still arrive for ten
    # seconds, so the victim dies mid-run and its partitions move under traffic.
    generator = start(services, "generator", service_env, "--tps", "3000",
                      "--count", str(count), "--seed", "12")
    detectors = [start(services, "detector", {**service_env, "DETECTOR_INSTANCE": f"d{n}"})
                 for n in range(instances)]
    outputs = Outputs(broker, topics)
    try:
        everyone = lambda records: all(wrote(d)(records) for d in detectors)  # noqa: E731
        assert outputs.wait(everyone, 60, settle=0), "the group never shared the work"
        time.sleep(rng.uniform(0.2, 2.0))
        victim = rng.choice(detectors)
        kills = [kill(victim)]
        assert generator.wait(60) == 0, generator.output()
        where = positions(broker, topics.transactions, count)
        outputs.wait(every_id(where), 60, settle=2)
        survivors = [d for d in detectors if d is not victim]
        for survivor in survivors:
            survivor.process.send_signal(signal.SIGTERM)
        codes = [survivor.wait(10) for survivor in survivors]
        seen, left_open = committed_view(outputs, where, kills, detectors)
    finally:
        outputs.close()

    assert seen == Counter(list(where)), f"lost or doubled (seed {seed})"
    assert_open_transactions_only(left_open)
    assert codes == [0] * len(survivors)
    print(f"{instances} members, one killed: {count} transactions, {len(left_open)} records "
          "of open or aborted transactions shown by the embedded broker")


def test_a_restarted_generator_sends_only_new_transactions(
    broker: str, topics: Topics, service_env: dict[str, str], services: list[ServiceProcess]
) -> None:
    first = start(services, "generator", service_env, "--tps", "2000", "--count", "3000",
                  "--seed", "5")
    assert first.wait(30) == 0, first.output()
    # The same seed again, stopped mid-run: same content, never the same ids.
    second = start(services, "generator", service_env, "--tps", "2000", "--seed", "5")
    time.sleep(1.5)
    second.process.send_signal(signal.SIGTERM)
    assert second.wait(10) == 0, second.output()
    sent = int(second.output().rsplit("stopped after ", 1)[1].split()[0])

    ids = Counter(orjson.loads(m.value())["id"]
                  for m in read_topic(broker, topics.transactions, 3000 + sent, settle=1))
    runs = Counter(i.rsplit("-", 1)[0] for i in ids)

    assert max(ids.values()) == 1  # each exactly once
    assert sorted(runs.values()) == sorted([3000, sent])  # two runs, disjoint ids
