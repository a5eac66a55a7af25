"""What every benchmark needs: an embedded broker, processes, offsets and CPU clocks.

Figures are taken from the outside: records are counted by the topics' end offsets
(never by reading them back: the embedded broker keeps only ~5 MB per partition) and
CPU time is read from /proc for the process under test alone.
"""

from __future__ import annotations

import contextlib
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition

from services.config import Topics
from services.generator.synthetic import TutorialProfile

ROOT = Path(__file__).resolve().parent.parent
TICKS = os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Children of a benchmark; all stopped when it ends, however it ends."""
    started: list[subprocess.Popen[bytes]] = []
    try:
        yield started
    finally:
        for process in reversed(started):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(5)


def spawn(started: list[subprocess.Popen[bytes]], module: str, args: Sequence[str] = (),
          env: dict[str, str] | None = None, stdout: int | None = subprocess.DEVNULL,
          ) -> subprocess.Popen[bytes]:
    process = subprocess.Popen([sys.executable, "-m", module, *args], cwd=ROOT,
                               env=env or dict(os.environ), stdout=stdout,
                               stderr=subprocess.DEVNULL)
    started.append(process)
    return process


def start_broker(started: list[subprocess.Popen[bytes]]) -> str:
    broker = spawn(started, "services.broker", stdout=subprocess.PIPE)
    assert broker.stdout is not None
    bootstrap = broker.stdout.readline().decode().strip()
    if not bootstrap:
        raise RuntimeError("the embedded broker did not start")
    return bootstrap


def fresh_topics(tag: str = "") -> Topics:
    suffix = f"{tag}.{uuid.uuid4().hex[:6]}" if tag else uuid.uuid4().hex[:6]
    return Topics(**{name: f"bench.{default}.{suffix}"
                     for name, default in Topics().__dict__.items()})


def service_env(bootstrap: str, topics: Topics, group: str) -> dict[str, str]:
    return {**os.environ, "KAFKA_BROKER_URL": bootstrap,
            "TRANSACTIONS_TOPIC": topics.transactions, "LEGIT_TOPIC": topics.legit,
            "FRAUD_TOPIC": topics.fraud, "DLQ_TOPIC": topics.dlq,
            "CONTROL_TOPIC": topics.control, "STATUS_TOPIC": topics.status,
            "DETECTOR_GROUP": group}


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def preload(bootstrap: str, topic: str, count: int, seed: int = 1) -> int:
    """``count`` generated transactions on ``topic`` (4 partitions, keyed by source);
    returns their total size in bytes."""
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20,
                         "compression.type": "lz4", "queue.buffering.max.messages": 500_000})
    profile = TutorialProfile(seed=seed)
    size = 0
    ts = int(time.time() * 1000)
    for key, value in profile.batch(count, ts):
        while True:
            try:
                producer.produce(topic, value, key)
                break
            except BufferError:
                producer.poll(0.05)
        size += len(value)
    if producer.flush(60):
        raise RuntimeError("preload did not complete")
    return size


class Offsets:
    """End offsets of topics, summed: how many records they received so far."""

    def __init__(self, bootstrap: str) -> None:
        self.consumer = Consumer({"bootstrap.servers": bootstrap,
                                  "group.id": f"bench-offsets-{uuid.uuid4().hex[:6]}"})
        self._partitions: dict[str, list[int]] = {}

    def total(self, *topics: str) -> int:
        return sum(self.end(topic) for topic in topics)

    def end(self, topic: str) -> int:
        partitions = self._partitions.get(topic)
        if not partitions:
            metadata = self.consumer.list_topics(topic, timeout=10).topics[topic]
            partitions = sorted(metadata.partitions) if metadata.error is None else []
            if not partitions:
                return 0
            self._partitions[topic] = partitions
        return sum(self.consumer.get_watermark_offsets(TopicPartition(topic, p),
                                                       timeout=10, cached=False)[1]
                   for p in partitions)

    def close(self) -> None:
        self.consumer.close()


def wait_until(condition: Callable[[], bool], timeout: float, what: str,
               every: float = 0.005) -> float:
    """Poll ``condition``; the monotonic time it first held."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return time.monotonic()
        time.sleep(every)
    raise TimeoutError(f"timed out waiting for {what}")


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A fixed-width text table."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in
                       enumerate(zip(row, widths, strict=True))) for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
