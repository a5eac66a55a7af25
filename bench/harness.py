"""What every benchmark here needs: an embedded broker, child processes, topic offsets
and CPU clocks.

Figures are taken from outside the process under test: records are counted by the
topics' end offsets (never by reading them all back, which would compete for the same
cores; end offsets also survive the embedded broker dropping old data) and CPU time is
read from /proc for that process alone.
"""

from __future__ import annotations

import bisect
import contextlib
import json
import math
import os
import platform
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, TracebackType
from typing import IO, Any

import confluent_kafka
import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from services import kafka
from services.broker import tune_clients
from services.config import Topics
from services.generator.synthetic import TutorialProfile

ROOT = Path(__file__).resolve().parent.parent
TICKS = os.sysconf("SC_CLK_TCK")
Children = list[subprocess.Popen[bytes]]
Output = int | IO[bytes] | None


class BenchmarkError(RuntimeError):
    """A run that cannot be reported: a process failed or the counts are wrong."""


# -- processes ---------------------------------------------------------------------------


def stop_on_signals() -> None:
    """Turn SIGTERM and SIGHUP into SystemExit, so ``finally`` blocks stop the children
    (Python's default for these signals is to die without running them)."""

    def leave(signum: int, _: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, leave)


@contextlib.contextmanager
def processes() -> Iterator[Children]:
    """Children of a benchmark; all stopped when it ends, however it ends."""
    started: Children = []
    try:
        yield started
    finally:
        stop(*reversed(started))


def stop(*children: subprocess.Popen[bytes], timeout: float = 10.0) -> list[int]:
    """SIGTERM to all (the services' graceful stop), SIGKILL to those still running
    after ``timeout``; their exit codes."""
    for process in children:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for process in children:
        try:
            process.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
    return [process.returncode for process in children]


def spawn(started: Children, module: str, args: Sequence[str] = (),
          env: dict[str, str] | None = None, stdout: Output = subprocess.DEVNULL,
          stderr: Output = subprocess.DEVNULL) -> subprocess.Popen[bytes]:
    """``python -m module args`` as a child that dies with this process (bench.child),
    so that not even a SIGKILL of the benchmark leaves a service running."""
    command = [sys.executable, "-m", "bench.child", str(os.getpid()), module, *args]
    process = subprocess.Popen(command, cwd=ROOT, env=env or dict(os.environ),
                               stdout=stdout, stderr=stderr)
    started.append(process)
    return process


def start_broker(started: Children) -> str:
    """An embedded broker, its clients tuned as fraud-console tunes them: the
    services started from here on and this process's own readers."""
    tune_clients(os.environ)
    broker = spawn(started, "services.broker", stdout=subprocess.PIPE)
    assert broker.stdout is not None
    bootstrap = broker.stdout.readline().decode().strip()
    if not bootstrap:
        raise BenchmarkError("the embedded broker did not start")
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


def log_tail(path: Path, lines: int = 15) -> str:
    text = path.read_text(errors="replace") if path.exists() else ""
    return "\n".join(text.splitlines()[-lines:]) or "(no output)"


# -- CPU time ----------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process so far, in clock ticks (10 ms) of precision."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


class CpuClock:
    """CPU time (user + system) of one process, in nanoseconds.

    It sums the run time the scheduler keeps for each thread in nanoseconds
    (/proc/PID/task/TID/schedstat), because /proc/PID/stat counts in clock ticks of
    10 ms: too coarse for windows of a few hundred milliseconds. A thread that ends
    keeps its last reading. Files stay open and are re-read with pread (about a
    microsecond each), so sampling every few milliseconds costs the machine little.
    Without schedstat (a kernel without CONFIG_SCHED_INFO) it falls back to ticks.
    """

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.precise = Path(f"/proc/{pid}/task/{pid}/schedstat").exists()
        self._files: dict[str, int] = {}
        self._last: dict[str, int] = {}
        self._ended = 0

    def read(self) -> int:
        if not self.precise:
            return round(cpu_seconds(self.pid) * 1e9)
        self._open_new_threads()
        running = 0
        for tid, fd in list(self._files.items()):
            try:
                self._last[tid] = int(os.pread(fd, 64, 0).split()[0])
            except ProcessLookupError:  # the thread has ended
                self._ended += self._last.pop(tid, 0)
                os.close(self._files.pop(tid))
                continue
            running += self._last[tid]
        return self._ended + running

    def _open_new_threads(self) -> None:
        for tid in os.listdir(f"/proc/{self.pid}/task"):
            if tid not in self._files:
                # A thread may end between the listing and the open.
                with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                    self._files[tid] = os.open(f"/proc/{self.pid}/task/{tid}/schedstat",
                                               os.O_RDONLY)

    def close(self) -> None:
        for fd in self._files.values():
            os.close(fd)
        self._files.clear()


class CpuTrace:
    """A process's CPU time sampled every ``every`` seconds by a thread, against the
    wall clock, so that it can be read afterwards at any instant of the traced span:
    for instance at the timestamps of records the process produced."""

    def __init__(self, pid: int, every: float = 0.002) -> None:
        self.clock = CpuClock(pid)
        self.every = every
        self.samples: list[tuple[int, int]] = []  # (wall clock ns, CPU ns)
        self.error: OSError | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name=f"cpu-{pid}", daemon=True)

    def __enter__(self) -> CpuTrace:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join()
        self.clock.close()

    def _sample(self) -> None:
        try:
            while not self._stop.is_set():
                self.samples.append((time.time_ns(), self.clock.read()))
                self._stop.wait(self.every)
        except OSError as exc:  # the process is gone: the caller finds out from it
            self.error = exc

    def at(self, wall_ns: float) -> float:
        """CPU ns at ``wall_ns``, linear between the two samples around it."""
        times = [t for t, _ in self.samples]
        i = bisect.bisect_left(times, wall_ns)
        if i == 0 or i == len(times):
            raise BenchmarkError("an output record's time lies outside the CPU trace"
                                 + (f" (sampling stopped: {self.error})" if self.error else ""))
        (t0, c0), (t1, c1) = self.samples[i - 1], self.samples[i]
        return c0 + (c1 - c0) * (wall_ns - t0) / (t1 - t0)


# -- topics ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Preloaded:
    """An input topic filled with generated transactions, and what a detector should
    make of them."""

    topic: str
    records: int
    bytes: int
    partitions: int
    fraud: int  # records whose amount reaches the threshold

    @property
    def legit(self) -> int:
        return self.records - self.fraud


def preload(bootstrap: str, topic: str, count: int, threshold: float, seed: int = 1,
            partitions: int = 4, batch: int = 10_000) -> Preloaded:
    """``count`` transactions made and sent the way the generator makes and sends them
    (TutorialProfile, keyed by source account, the services' producer), in batches
    that each carry the time they were made."""
    kafka.ensure_topics(bootstrap, {topic: partitions})
    producer = kafka.producer(bootstrap)
    profile = TutorialProfile(seed=seed)
    size = fraud = 0
    for start in range(0, count, batch):
        made = profile.batch(min(batch, count - start), time.time_ns() // 1_000_000)
        for key, value in made:
            kafka.produce_when_room(producer, topic, key, value)
            size += len(value)
            if orjson.loads(value)["amount"] >= threshold:
                fraud += 1
    if producer.flush(60):
        raise BenchmarkError("the preload did not reach the broker")
    offsets = Offsets(bootstrap)
    try:
        spans = offsets.spans(topic)
    finally:
        offsets.close()
    if sum(high for _, high in spans) != count or any(low for low, _ in spans):
        raise BenchmarkError(f"the input topic holds {spans} (low, high) per partition, "
                             f"not {count} records from offset 0: use fewer --records")
    return Preloaded(topic, count, size, len(spans), fraud)


class Offsets:
    """End offsets of topics, summed: how many records they received so far."""

    def __init__(self, bootstrap: str) -> None:
        self.consumer = Consumer({"bootstrap.servers": bootstrap,
                                  "group.id": f"bench-offsets-{uuid.uuid4().hex[:6]}"})
        self._partitions: dict[str, list[int]] = {}

    def total(self, *topics: str) -> int:
        return sum(self.end(topic) for topic in topics)

    def end(self, topic: str) -> int:
        return sum(high for _, high in self.spans(topic))

    def spans(self, topic: str) -> list[tuple[int, int]]:
        """``(low, high)`` watermarks of each partition; none while the topic is missing."""
        return [self.consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10,
                                                    cached=False)
                for p in self._partitions_of(topic)]

    def _partitions_of(self, topic: str) -> list[int]:
        partitions = self._partitions.get(topic)
        if not partitions:
            metadata = self.consumer.list_topics(topic, timeout=10).topics[topic]
            partitions = sorted(metadata.partitions) if metadata.error is None else []
            if partitions:
                self._partitions[topic] = partitions
        return partitions

    def close(self) -> None:
        self.consumer.close()


def edge_timestamps(bootstrap: str, topics: Sequence[str]) -> tuple[int, int]:
    """Timestamps (ms) of the first and of the last record across ``topics``.

    Per partition the records keep the order their producer made them in, so its first
    and last records are its earliest and latest. A partition whose start the broker
    already dropped (it keeps ~5 MB of each) has lost its first record: an error.
    """
    consumer = Consumer({"bootstrap.servers": bootstrap, "enable.auto.commit": False,
                         "group.id": f"bench-edges-{uuid.uuid4().hex[:6]}",
                         "isolation.level": "read_committed", "enable.partition.eof": True})
    stamps: list[int] = []
    try:
        for topic in topics:
            for p in consumer.list_topics(topic, timeout=10).topics[topic].partitions:
                low, high = consumer.get_watermark_offsets(TopicPartition(topic, p),
                                                           timeout=10, cached=False)
                if low:
                    raise BenchmarkError(f"the broker dropped the start of {topic}[{p}] "
                                         "(it keeps ~5 MB per partition): use fewer --records")
                if high:
                    stamps += [_timestamp(consumer, topic, p, 0),
                               _last_timestamp(consumer, topic, p, high)]
    finally:
        consumer.close()
    if not stamps:
        raise BenchmarkError(f"no records in {', '.join(topics)}")
    return min(stamps), max(stamps)


def _timestamp(consumer: Consumer, topic: str, partition: int, offset: int) -> int:
    consumer.assign([TopicPartition(topic, partition, offset)])
    message = consumer.poll(10)
    if message is None or message.error() is not None or message.offset() != offset:
        raise BenchmarkError(f"cannot read {topic}[{partition}]@{offset}")
    return message.timestamp()[1]


def _last_timestamp(consumer: Consumer, topic: str, partition: int, high: int) -> int:
    """The newest record's timestamp. With transactions the last offsets are commit
    markers, which no reader sees: the newest record is the last one read before the end."""
    consumer.assign([TopicPartition(topic, partition, max(0, high - 100))])
    newest = None
    while True:
        message = consumer.poll(5)
        if message is None:
            break
        if message.error() is None:
            newest = message.timestamp()[1]
            if message.offset() >= high - 1:
                break
        elif message.error().code() == KafkaError._PARTITION_EOF:
            break
    if newest is None:
        raise BenchmarkError(f"cannot read the end of {topic}[{partition}]")
    return newest


def committed_counts(bootstrap: str, topics: Sequence[str]) -> dict[str, int]:
    """How many records of each topic a read_committed reader sees (commit markers and
    aborted records are not records)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "enable.auto.commit": False,
                         "group.id": f"bench-count-{uuid.uuid4().hex[:6]}",
                         "isolation.level": "read_committed", "enable.partition.eof": True})
    counts = dict.fromkeys(topics, 0)
    try:
        assignment = [TopicPartition(topic, p, OFFSET_BEGINNING) for topic in topics
                      for p in consumer.list_topics(topic, timeout=10).topics[topic].partitions]
        consumer.assign(assignment)
        left = len(assignment)
        deadline = time.monotonic() + 60
        while left and time.monotonic() < deadline:
            for message in consumer.consume(10_000, 0.5):
                if message.error() is None:
                    counts[message.topic()] += 1
                elif message.error().code() == KafkaError._PARTITION_EOF:
                    left -= 1
    finally:
        consumer.close()
    return counts


def read_all(bootstrap: str, topic: str) -> list[bytes]:
    """Every value of a small topic (a status topic, say), partition after partition."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "enable.auto.commit": False,
                         "group.id": f"bench-read-{uuid.uuid4().hex[:6]}"})
    values: list[bytes] = []
    try:
        for p in consumer.list_topics(topic, timeout=10).topics[topic].partitions:
            values += _read_partition(consumer, TopicPartition(topic, p))
    finally:
        consumer.close()
    return values


def _read_partition(consumer: Consumer, partition: TopicPartition) -> list[bytes]:
    low, high = consumer.get_watermark_offsets(partition, timeout=10, cached=False)
    consumer.assign([TopicPartition(partition.topic, partition.partition, low)])
    values: list[bytes] = []
    offset, deadline = low, time.monotonic() + 10
    while offset < high and time.monotonic() < deadline:
        for message in consumer.consume(500, 0.5):
            if message.error() is None:
                offset = message.offset() + 1
                if message.value() is not None:
                    values.append(message.value())
    return values


# -- waiting and reporting ---------------------------------------------------------------


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


def percentile(ordered: Sequence[float], q: float) -> float:
    """Nearest rank: the smallest value with at least ``q`` of all values at or below
    it. ``ordered`` is sorted."""
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered), max(1, math.ceil(q * len(ordered)))) - 1]


def report(name: str, args: Any, benchmark: Callable[[Any], dict[str, Any]],
           render: Callable[[dict[str, Any]], str]) -> int:
    """A benchmark's main: run it, add the machine and the wall time, print its table
    and write its JSON to ``args.json``; exit 1 (one line) when it cannot report."""
    stop_on_signals()
    began, load = time.monotonic(), os.getloadavg()
    try:
        summary = benchmark(args)
    except (BenchmarkError, TimeoutError) as exc:
        print(f"{name}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{name}: interrupted", file=sys.stderr)
        return 130
    summary["machine"] = {"cpus": os.cpu_count(), "load_before": load,
                          "load_after": os.getloadavg(), "python": platform.python_version(),
                          "confluent_kafka": confluent_kafka.__version__,
                          "librdkafka": confluent_kafka.libversion()[0]}
    summary["wall_seconds"] = time.monotonic() - began
    print("\n" + render(summary))
    print(f"\n{summary['wall_seconds']:.0f} s in all; "
          f"load average {load[0]:.2f} before, {summary['machine']['load_after'][0]:.2f} after")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"written to {args.json}")
    return 0


def goal(what: str, measured: float | None, bound: float, higher_is_better: bool,
         unit: str = "", holds: bool = True) -> dict[str, Any]:
    """One of the project's performance goals, as every benchmark reports it: the
    figure, its bound and whether the measurement meets it. ``holds``: a condition
    the figure alone does not show (a latency is no goal met while a backlog grows)."""
    met = holds and measured is not None and (measured >= bound if higher_is_better
                                              else measured < bound)
    return {"what": what, "measured": measured, "bound": bound,
            "higher_is_better": higher_is_better, "unit": unit, "met": met}


def goal_lines(goals: Sequence[dict[str, Any]]) -> list[str]:
    return [f"goal: {g['what']} {'>=' if g['higher_is_better'] else '<'} "
            f"{g['bound']:g}{g['unit']}: "
            + ("–" if g["measured"] is None else f"{g['measured']:.2f}{g['unit']}")
            + (" met" if g["met"] else " NOT met") for g in goals]


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A fixed-width text table: the first column left-aligned, the others right."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in
                       enumerate(zip(row, widths, strict=True))).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
