"""Test helpers that talk to the embedded broker: start services, read and write topics."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, Message, Producer, TopicPartition

from services.evaluator import report

ROOT = Path(__file__).resolve().parent.parent

MODULES = {
    "generator": "services.generator.service",
    "detector": "services.detector.service",
    "broker": "services.broker",
    "tail": "services.tail",
    "evaluator": "services.evaluator.service",
}


class ServiceProcess:
    """A service run as its own process, the way a user runs it."""

    def __init__(self, name: str, args: list[str], env: dict[str, str]) -> None:
        self.name = name
        self.process = subprocess.Popen(
            [sys.executable, "-m", MODULES[name], *args], cwd=ROOT, env=env,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )

    def wait(self, timeout: float) -> int:
        return self.process.wait(timeout)

    def output(self) -> str:
        if self.process.poll() is None:
            return ""
        assert self.process.stdout is not None
        return self.process.stdout.read()

    def terminate(self) -> None:
        self.process.terminate()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)


def start(services: list[ServiceProcess], name: str, env: dict[str, str],
          *args: str) -> ServiceProcess:
    service = ServiceProcess(name, list(args), env)
    services.append(service)
    return service


def read_topics(
    bootstrap: str, topics: list[str], expect: int, timeout: float = 60.0, settle: float = 1.0
) -> dict[str, list[Message]]:
    """Every record of ``topics`` from the beginning, by topic: waits until ``expect``
    have arrived in all (or ``timeout``), then ``settle`` seconds more so that extra
    records would show."""
    consumer = Consumer({
        "bootstrap.servers": bootstrap, "group.id": f"test-{uuid.uuid4().hex}",
        "enable.auto.commit": False, "isolation.level": "read_committed",
    })
    deadline = time.monotonic() + timeout
    try:
        assignment = []
        for topic in topics:
            while True:  # the topic may not exist yet: the service under test creates it
                partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
                if partitions or time.monotonic() >= deadline:
                    break
                time.sleep(0.1)
            assignment += [TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions]
        consumer.assign(assignment)
        found: dict[str, list[Message]] = {topic: [] for topic in topics}
        count = 0
        settle_until = None
        while True:
            now = time.monotonic()
            if settle_until is None and (count >= expect or now >= deadline):
                settle_until = now + settle
            if settle_until is not None and now >= settle_until:
                return found
            for message in consumer.consume(1000, 0.1):
                if message.error() is None:
                    found[message.topic()].append(message)
                    count += 1
    finally:
        consumer.close()


def read_topic(
    bootstrap: str, topic: str, expect: int, timeout: float = 60.0, settle: float = 1.0
) -> list[Message]:
    return read_topics(bootstrap, [topic], expect, timeout, settle)[topic]


def values(messages: list[Message]) -> list[dict]:
    return [orjson.loads(m.value()) for m in messages]


def produce(bootstrap: str, topic: str, records: list[tuple[bytes | None, bytes | None]]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap})
    for key, value in records:
        producer.produce(topic, value, key)
    assert producer.flush(10) == 0


def wait_for_quality(bootstrap: str, topic: str, wanted: Callable[[report.Quality], bool],
                     timeout: float = 30.0) -> report.Quality:
    """The first quality message on the status topic for which ``wanted`` holds."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"t-{uuid.uuid4().hex}"})
    seen: report.Quality | None = None
    try:
        deadline = time.monotonic() + timeout
        # Every partition (the embedded broker gives an auto-created topic four), once
        # the evaluator has created the topic.
        while not (partitions := consumer.list_topics(topic, timeout=10).topics[topic]
                   .partitions) and time.monotonic() < deadline:
            time.sleep(0.1)
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        while time.monotonic() < deadline:
            for message in consumer.consume(100, 0.2):
                quality = report.parse(message.value()) if message.error() is None else None
                if quality is not None:
                    seen = quality
                    if wanted(quality):
                        return quality
    finally:
        consumer.close()
    raise AssertionError(f"no such quality message within {timeout:g} s; last: {seen}")
