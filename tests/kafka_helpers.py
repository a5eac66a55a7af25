"""Test helpers that talk to the embedded broker: start services, read and write topics."""

from __future__ import annotations

import contextlib
import math
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, Message, Producer, TopicPartition

from services.config import Topics
from services.evaluator import report

ROOT = Path(__file__).resolve().parent.parent

MODULES = {
    "generator": "services.generator.service",
    "detector": "services.detector.service",
    "broker": "services.broker",
    "tail": "services.tail",
    "evaluator": "services.evaluator.service",
}


# How long after a SIGKILL the tests start a detector again, as a supervisor does.
# The embedded broker's group knows no static membership: the restarted member's join
# opens a rebalance that waits the session less a second (5 s) for the others, and a
# killed member whose session (6 s from its last heartbeat) ends only after that vote
# is still counted in, so a second rebalance follows when it ends: a restart then
# takes 12 s instead of 6, about one time in two. A join a second after the kill
# puts the vote after the end of the dead member's session: one rebalance.
RESTART_DELAY = 1.0


class ServiceProcess:
    """A service run as its own process, the way a user runs it.

    Its output is read as it comes: a service that logs a lot (librdkafka says so at
    every failed reconnect while a broker is away) would otherwise fill the pipe and
    block in its next log line, and a stop would wait forever.
    """

    def __init__(self, name: str, args: list[str], env: dict[str, str]) -> None:
        self.name = name
        self.process = subprocess.Popen(
            [sys.executable, "-m", MODULES[name], *args], cwd=ROOT, env=env,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        self._lines: list[str] = []
        self._reader = threading.Thread(target=self._drain, daemon=True,
                                        name=f"{name}-output")
        self._reader.start()

    def _drain(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.append(line)

    def wait(self, timeout: float) -> int:
        return self.process.wait(timeout)

    def output(self) -> str:
        """Everything it wrote, once it has exited ("" before)."""
        if self.process.poll() is None:
            return ""
        self._reader.join(10)
        return "".join(self._lines)

    def terminate(self) -> None:
        self.process.terminate()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)


class BrokerProcess:
    """``fraud-broker`` as a process, its log kept in a file for when a test fails."""

    def __init__(self, log: Path) -> None:
        self.log = log
        self.process = subprocess.Popen(
            [sys.executable, "-m", "services.broker"], cwd=ROOT,
            stdout=subprocess.PIPE, stderr=log.open("w"), text=True,
        )
        assert self.process.stdout is not None
        self.bootstrap = self.process.stdout.readline().strip()
        assert self.bootstrap, f"fraud-broker printed no address: {log.read_text()}"

    def __enter__(self) -> str:
        return self.bootstrap

    def __exit__(self, *_: object) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        else:
            print(f"fraud-broker had stopped (code {self.process.returncode}); "
                  f"its log: {self.log}")

    def pause(self) -> None:
        """SIGSTOP: the broker stops answering but keeps its sockets and its memory."""
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.process.send_signal(signal.SIGCONT)

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(10)


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


def heartbeats_until(broker: str, topics: Topics, done: Callable[[list[dict]], bool],
                     timeout: float = 30.0) -> list[dict]:
    """Everything on the status topic, once ``done`` says it shows what is awaited."""
    deadline = time.monotonic() + timeout
    while True:
        status = values(read_topics(broker, [topics.status], 1, timeout=5, settle=0.2)
                        [topics.status])
        if done(status) or time.monotonic() > deadline:
            return status
        time.sleep(0.5)


def produced(generator_log: str) -> int:
    """How many transactions a stopped generator says it sent."""
    found = re.search(r"stopped after (\d+) transactions", generator_log)
    assert found, generator_log
    return int(found.group(1))


def wait_committed(bootstrap: str, group: str, wanted: Mapping[str, int],
                   timeout: float = 30.0) -> None:
    """Until ``group`` has committed at least ``wanted[topic]`` records of each topic
    (the sum of its committed offsets over the topic's partitions)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    committed: dict[str, int] = {}
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for topic in wanted:
                partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
                offsets = consumer.committed([TopicPartition(topic, p) for p in partitions],
                                             timeout=10)
                committed[topic] = sum(max(tp.offset, 0) for tp in offsets)
            if all(committed[topic] >= n for topic, n in wanted.items()):
                return
            time.sleep(0.1)
    finally:
        consumer.close()
    raise AssertionError(f"{group} committed {committed} within {timeout:g} s, "
                         f"not {dict(wanted)}")


def wait_committed_past(bootstrap: str, group: str, wanted: Mapping[tuple[str, int], int],
                        timeout: float = 30.0) -> None:
    """Until ``group``'s committed offset of each ``(topic, partition)`` is past the
    offset ``wanted`` names for it."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    committed: dict[tuple[str, int], int] = {}
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            offsets = consumer.committed([TopicPartition(t, p) for t, p in wanted], timeout=10)
            committed = {(tp.topic, tp.partition): tp.offset for tp in offsets}
            if all(committed[at] > offset for at, offset in wanted.items()):
                return
            time.sleep(0.1)
    finally:
        consumer.close()
    raise AssertionError(f"{group} committed {committed} within {timeout:g} s, "
                         f"not past {dict(wanted)}")


def produce(bootstrap: str, topic: str, records: list[tuple[bytes | None, bytes | None]],
            config: Mapping[str, object] | None = None) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, **(config or {})})
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


@dataclass(frozen=True)
class Output:
    """One record the detector wrote, with what a check needs to know about it."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: dict[str, bytes]
    process: str  # the detector process that wrote it (its heartbeat instance)
    id: str | None  # the transaction's id, when the value is a transaction
    at: float  # when it was written, seconds since the epoch


class Outputs:
    """Everything on the detector's output topics, read from the beginning the way a
    downstream ``read_committed`` reader reads it, and kept reading while a test runs."""

    def __init__(self, bootstrap: str, topics: Topics,
                 tick: Callable[[], object] | None = None) -> None:
        """``tick`` runs while it waits for the topics: a test that supervises the
        detector which creates them keeps doing so meanwhile."""
        self.topics = [topics.legit, topics.fraud, topics.dlq]
        self.records: list[Output] = []
        self._consumer = Consumer({
            "bootstrap.servers": bootstrap, "group.id": f"test-{uuid.uuid4().hex}",
            "enable.auto.commit": False, "isolation.level": "read_committed",
            "fetch.wait.max.ms": 50,
        })
        assignment = []
        deadline = time.monotonic() + 30
        for topic in self.topics:
            while True:  # created by the detector when it starts
                found = self._consumer.list_topics(topic, timeout=10).topics[topic]
                if found.partitions or time.monotonic() >= deadline:
                    break
                if tick is not None:
                    tick()
                time.sleep(0.1)
            assignment += [TopicPartition(topic, p, OFFSET_BEGINNING) for p in found.partitions]
        self._consumer.assign(assignment)

    def read(self, seconds: float = 0.2) -> list[Output]:
        """What arrived within ``seconds``."""
        new = []
        until = time.monotonic() + seconds
        while True:
            for message in self._consumer.consume(10_000, max(0.0, until - time.monotonic())):
                if message.error() is None:
                    new.append(_output(message))
            if time.monotonic() >= until:
                break
        self.records += new
        return new

    def wait(self, done: Callable[[list[Output]], bool], timeout: float,
             settle: float = 1.0) -> bool:
        """Reads until ``done(records)`` or ``timeout``, then ``settle`` seconds more so
        that records beyond the expected would show."""
        deadline = time.monotonic() + timeout
        while not done(self.records) and time.monotonic() < deadline:
            self.read()
        self.read(settle)
        return done(self.records)

    def close(self) -> None:
        self._consumer.close()


def _output(message: Message) -> Output:
    headers = dict(message.headers() or [])
    value = message.value()
    try:
        body = orjson.loads(value) if value is not None else None
    except orjson.JSONDecodeError:
        body = None
    ident = body.get("id") if isinstance(body, dict) else None
    if "dlq.instance" in headers:
        process = headers["dlq.instance"].decode()
    else:
        process = body["detection"]["instance"]
    return Output(message.topic(), message.key(), value, headers, process,
                  ident if isinstance(ident, str) else None, message.timestamp()[1] / 1000)


def positions(bootstrap: str, topic: str, expect: int) -> dict[str, tuple[int, int]]:
    """Where each transaction sits in ``topic``: ``{id: (partition, offset)}``."""
    return {orjson.loads(m.value())["id"]: (m.partition(), m.offset())
            for m in read_topic(bootstrap, topic, expect, settle=0.5)}


@dataclass
class Kill:
    """A detector process killed with SIGKILL, and when."""

    process: str
    at: float


def left_open_by_kills(records: list[Output], where: Mapping[str, tuple[int, int]],
                       kills: list[Kill]) -> list[Output]:
    """The outputs of the transactions that killed processes left open.

    On Apache Kafka these are never visible to a ``read_committed`` reader: the open
    transaction is aborted when the restarted instance initialises its transactions
    (or after ``transaction.timeout.ms``). The embedded broker writes commit and abort
    markers but its Fetch ignores ``isolation.level``: it shows them. They are the
    outputs a killed process wrote for input positions from which another process
    then resumed, which is where the committed offsets stood.
    """
    left = []
    for kill in kills:
        resumed: dict[int, int] = {}  # input partition -> first offset after the kill
        for record in records:
            if record.process != kill.process and record.at >= kill.at and record.id in where:
                partition, offset = where[record.id]
                resumed[partition] = min(offset, resumed.get(partition, offset))
        for record in records:
            if record.process == kill.process and record.id in where:
                partition, offset = where[record.id]
                if offset >= resumed.get(partition, 2**63):
                    left.append(record)
    return left


class Relay:
    """A TCP port in front of a broker, which can be moved to another broker: a broker
    that restarts at the same address. Moving it drops every open connection."""

    def __init__(self, target: str) -> None:
        self._target = target
        self._server = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self._server.getsockname()[1]}"
        self._open: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def move_to(self, target: str) -> None:
        with self._lock:
            self._target = target
            for conn in self._open:
                with contextlib.suppress(OSError):
                    conn.close()
            self._open.clear()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            with self._lock:
                host, port = self._target.rsplit(":", 1)
                try:
                    upstream = socket.create_connection((host, int(port)), timeout=2)
                except OSError:
                    client.close()  # nothing there: a refused connection, as from no broker
                    continue
                upstream.settimeout(None)
                self._open += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while chunk := source.recv(65536):
                sink.sendall(chunk)
        for conn in (source, sink):
            with contextlib.suppress(OSError):
                conn.close()

    def close(self) -> None:
        self._server.close()
        self.move_to(self._target)


@dataclass
class Rewind:
    """A detector that gave up a transaction and went back to the committed offset."""

    process: str
    partition: int
    offset: int
    at: float


def rewinds(process: str, log: str) -> list[Rewind]:
    """What a detector process says it rewound (``checkpoint.Checkpoint._rewind``)."""
    return [Rewind(process, int(p), int(o), float(at)) for p, o, at in
            re.findall(r"rewound \S+ \[(\d+)\] to offset (\d+) at ([\d.]+)", log)]


def aborted_by_rewinds(records: list[Output], where: Mapping[str, tuple[int, int]],
                       given_up: list[Rewind]) -> list[tuple[Output, float]]:
    """The outputs of the transactions that detectors aborted themselves.

    Hidden from ``read_committed`` readers on Apache Kafka, shown by the embedded
    broker (see ``left_open_by_kills``): the outputs a process wrote, before it rewound,
    for input positions at or after the offset it rewound to; each with the time of
    its rewind. An output's time is its millisecond: one written in the millisecond of
    the rewind came after it (those of the aborted transaction went out before the
    abort's round trip to the cluster), as the first outputs after a rewind often do.
    """
    aborted = []
    for record in records:
        if record.id not in where:
            continue
        partition, offset = where[record.id]
        written_ms = round(record.at * 1000)
        for r in given_up:
            if (r.process == record.process and r.partition == partition
                    and offset >= r.offset and written_ms < math.floor(r.at * 1000)):
                aborted.append((record, r.at))
                break
    return aborted
