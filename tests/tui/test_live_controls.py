"""The console against the real pipeline on the embedded broker.

A user presses keys; the commands land on the control topic; the running generator
and detector obey, confirm on the status topic, and the console shows it.
"""

from __future__ import annotations

import asyncio
import time

import orjson
import pytest
from confluent_kafka import Consumer, TopicPartition

from services.config import Topics
from tests.kafka_helpers import ServiceProcess, produce, read_topic, start, values
from tests.tui.watching import until
from tui.app import FraudConsole
from tui.feed import KafkaFeed


def input_size(bootstrap: str, topic: str) -> int:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "watermarks"})
    try:
        parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        return sum(consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                   for p in parts)
    finally:
        consumer.close()


async def measured_rate(bootstrap: str, topic: str, seconds: float) -> float:
    before = input_size(bootstrap, topic)
    await asyncio.sleep(seconds)
    return (input_size(bootstrap, topic) - before) / seconds


def control_commands(bootstrap: str, topics: Topics, expect: int) -> list[tuple[bytes, dict]]:
    return [(m.key(), orjson.loads(m.value()))
            for m in read_topic(bootstrap, topics.control, expect, timeout=20)]


@pytest.fixture
def pipeline(services: list[ServiceProcess], service_env: dict[str, str]) -> None:
    start(services, "detector", service_env)
    start(services, "generator", service_env, "--tps", "20", "--seed", "7")


def test_keys_steer_the_running_pipeline(
    broker: str, topics: Topics, service_env: dict[str, str], pipeline: None
) -> None:
    asyncio.run(steer(broker, topics, service_env))
    # Keyed by setting, so only each setting's own commands are ordered: sort by time.
    commands = sorted(control_commands(broker, topics, expect=3), key=lambda c: c[1]["ts"])
    assert [(key, body["setting"], body["value"]) for key, body in commands] == [
        (b"tps", "tps", 50.0), (b"threshold", "threshold", 850.0), (b"paused", "paused", True)]
    assert all(body["v"] == 1 and body["origin"] == "console" for _, body in commands)


async def steer(broker: str, topics: Topics, service_env: dict[str, str]) -> None:
    feed = KafkaFeed(broker, topics, service_env["DETECTOR_GROUP"])
    app = FraudConsole(feed)
    async with app.run_test(size=(160, 48)) as pilot:
        await until(app, lambda s: s.applied("tps") == 20.0 and s.applied("threshold") == 900.0
                    and s.totals["legit"] + s.totals["fraud"] > 0,
                    because="both services up and transactions flowing")

        # TPS + : 20 → 50 per second, applied by the generator and measured in the topic.
        await pilot.press("plus")
        await until(app, lambda s: s.requests["tps"].state == "applied"
                    and s.applied("tps") == 50.0, because="tps 50 applied")
        assert 40 <= await measured_rate(broker, topics.transactions, 4.0) <= 60

        # Threshold down ([): 900 → 850; a transaction of 875 is now fraud, and says why.
        await pilot.press("left_square_bracket")
        await until(app, lambda s: s.applied("threshold") == 850.0,
                    because="threshold 850 applied")
        produce(broker, topics.transactions, [(b"PROBEACCOUNT", orjson.dumps(
            {"id": "probe-875", "ts": int(time.time() * 1000), "source": "PROBEACCOUNT",
             "target": "SOMEONEELSE1", "amount": 875.0, "currency": "EUR"}))])
        await until(app, lambda s: any(r.source == "PROBEACCOUNT" for r in s.fraud_rows),
                    because="the 875 transaction in the fraud pane")
        probe = next(r for r in app.last.fraud_rows if r.source == "PROBEACCOUNT")
        assert probe.reasons == "amount >= 850"

        # Pause: the input topic stops growing.
        await pilot.press("p")
        await until(app, lambda s: s.applied("paused") is True, because="generator paused")
        await asyncio.sleep(0.5)
        assert await measured_rate(broker, topics.transactions, 2.0) == 0

        # Garbage on the input is counted as a dead letter.
        produce(broker, topics.transactions, [(b"x", b"\xff not json")])
        await until(app, lambda s: s.dead_letters == 1, because="one dead letter")


def test_a_refused_command_shows_its_reason(
    broker: str, topics: Topics, service_env: dict[str, str], pipeline: None
) -> None:
    """Another console (or a person with a producer) sends what the services refuse."""
    asyncio.run(refused(broker, topics, service_env))
    statuses = values(read_topic(broker, topics.status, 1, timeout=10, settle=0.5))
    assert any(s["kind"] == "ack" and not s["applied"] for s in statuses)


async def refused(broker: str, topics: Topics, service_env: dict[str, str]) -> None:
    feed = KafkaFeed(broker, topics, service_env["DETECTOR_GROUP"])
    app = FraudConsole(feed)
    async with app.run_test(size=(160, 48)):
        await until(app, lambda s: s.applied("threshold") == 900.0, because="detector up")
        produce(broker, topics.control, [(b"threshold", orjson.dumps(
            {"v": 1, "setting": "threshold", "value": -5, "id": "bad-1", "ts": 1,
             "origin": "script"}))])
        snap = await until(app, lambda s: any("refused" in e for e in s.events),
                           because="the refusal")
        assert "detector refused" in snap.events[-1]
        assert "threshold -5 is out of range" in snap.events[-1]
        assert snap.applied("threshold") == 900.0

