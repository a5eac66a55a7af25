"""The same payments, delivered three ways to real detectors on the embedded broker,
get the same figures and verdicts as the detector's own stages fed one record at a
time in one process: a catch-up that reads one partition far ahead of the others, two
instances fed live at a steady pace, and an instance killed mid-stream and restarted.

Mule rings' payers sit on every partition, so each ring's fan-in is counted where the
source partitions' records meet: what went wrong before event time was merged across
partitions (a ring's count fell back to 0 whenever one partition ran ahead).
"""

from __future__ import annotations

import time

import orjson
from confluent_kafka import Producer

from bench.topology import LocalTopology, partition_of
from services.config import Topics
from services.detector.rules import RuleSettings, SourceRules, TargetRules
from tests.integration.test_stateful_detector import detector_env, wait_until_running
from tests.kafka_helpers import (
    RESTART_DELAY,
    ServiceProcess,
    heartbeats_until,
    read_topics,
    start,
    values,
    wait_committed,
)

START_TS = 1_767_225_600_000
PARTITIONS = 4


def payments() -> list[tuple[bytes, bytes]]:
    """Three rings of fresh payers paying their mule every few seconds among customers
    paying shops, 50 to 450 ms apart, some of them at the same instant."""
    out: list[tuple[bytes, bytes]] = []
    ts = START_TS
    for i in range(360):
        ts += (0, 50, 150, 450)[i % 4]
        if i % 4 == 1:
            ring = i % 3
            source, target, amount = f"R{ring}PAYER{i:04d}", f"MULE{ring:04d}", 870.0 - ring
        else:
            source, target, amount = f"CUSTOMER{i % 37:03d}", f"SHOP{i % 7:03d}", 20.0 + i % 9
        out.append((source.encode(), orjson.dumps({
            "id": f"pay-{i}", "ts": ts, "source": source, "target": target,
            "amount": amount, "currency": "EUR"})))
    return out


def expected(sent: list[tuple[bytes, bytes]]) -> dict[str, dict]:
    """The detector's own stages in one process, one record at a time."""
    settings = RuleSettings()  # the detector's defaults, as the services run them
    local = LocalTopology(lambda: SourceRules(settings), lambda: TargetRules(settings),
                          partitions=PARTITIONS, threshold=5000.0)
    local.send(sent)
    steps: list[tuple[str, int, int]] = []
    for _ in range(len(sent)):
        steps += [("source", p, 1) for p in range(PARTITIONS)]
        steps += [("target", p, 1) for p in range(PARTITIONS)]
    return local.run(steps)


def send(broker: str, topic: str, records: list[tuple[bytes, bytes]],
         pace: float = 0.0, each: int = 8) -> None:
    """To the partitions the detector's stages expect, ``each`` at a time ``pace``
    seconds apart."""
    producer = Producer({"bootstrap.servers": broker, "linger.ms": 0})
    for start_at in range(0, len(records), each):
        for key, value in records[start_at:start_at + each]:
            producer.produce(topic, value, key, partition=partition_of(key, PARTITIONS))
        if pace:
            producer.flush(10)
            time.sleep(pace)
    assert producer.flush(10) == 0


def judged(broker: str, topics: Topics, expect: int) -> dict[str, dict]:
    """What the detectors said of each payment: every copy of a verdict (an open
    transaction cut by a kill may show one) must say the same."""
    found = read_topics(broker, [topics.legit, topics.fraud], expect, timeout=120)
    out: dict[str, dict] = {}
    for topic in (topics.legit, topics.fraud):
        for tx in values(found[topic]):
            detection = tx["detection"]
            said = {"fraud": topic == topics.fraud,
                    "rules": [hit["rule"] for hit in detection["rules"]],
                    "features": detection["features"]}
            assert out.setdefault(tx["id"], said) == said, f"{tx['id']} judged two ways"
    return out


def assert_same(got: dict[str, dict], want: dict[str, dict]) -> None:
    assert set(got) == set(want)
    differ = [tx for tx in want if got[tx] != want[tx]]
    assert not differ, f"{len(differ)} differ, first {differ[0]}: " \
                       f"{got[differ[0]]} != {want[differ[0]]}"
    rings = [tx for tx, verdict in want.items() if "fan_in" in verdict["rules"]]
    assert len(rings) >= 30, "the rings were caught"


def test_a_catch_up_with_one_partition_far_ahead_gives_the_live_verdicts(
        broker: str, topics: Topics, service_env: dict[str, str],
        services: list[ServiceProcess]) -> None:
    sent = payments()
    by_partition = sorted(sent, key=lambda kv: -partition_of(kv[0], PARTITIONS))
    send(broker, topics.transactions, by_partition)  # partition 3 whole, then 2, ...
    start(services, "detector", detector_env(service_env, "d1"))
    assert_same(judged(broker, topics, len(sent)), expected(sent))


def test_two_instances_fed_live_give_the_same_verdicts(
        broker: str, topics: Topics, service_env: dict[str, str],
        services: list[ServiceProcess]) -> None:
    for name in ("d1", "d2"):
        start(services, "detector", detector_env(service_env, name))
    wait_until_running(broker, topics, 2)
    sent = payments()
    send(broker, topics.transactions, sent, pace=0.03)
    assert_same(judged(broker, topics, len(sent)), expected(sent))


def test_a_restart_mid_stream_catches_up_to_the_same_verdicts(
        broker: str, topics: Topics, service_env: dict[str, str],
        services: list[ServiceProcess]) -> None:
    env = detector_env(service_env, "d1")
    first = start(services, "detector", env)
    wait_until_running(broker, topics, 1)
    sent = payments()
    half = len(sent) // 2
    send(broker, topics.transactions, sent[:half], pace=0.02)
    wait_committed(broker, env["DETECTOR_GROUP"], {topics.transactions: half}, timeout=60)
    # Killed with records waiting in the merge for the watermark: their offsets on the
    # repartition topic were held back, so the next instance reads them again.
    first.process.kill()
    first.process.wait(10)
    send(broker, topics.transactions, sent[half:])
    time.sleep(RESTART_DELAY)  # as a supervisor: one rebalance, not two
    start(services, "detector", env)
    assert_same(judged(broker, topics, len(sent)), expected(sent))

    def restored(status: list[dict]) -> bool:
        return any(beat.get("kind") == "heartbeat"
                   and beat["counters"].get("state_restored", 0) > 0 for beat in status)

    assert restored(heartbeats_until(broker, topics, restored)), \
        "the restarted instance read its state back from the changelogs"
