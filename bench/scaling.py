"""Scaling benchmark on one embedded broker: 1, 2 and 4 instances in one consumer group,
for the pass-through baseline, the classic detector and the full one.

    python -m bench.scaling [--records 100000] [--runs 3] [--counts 1,2,4] [--quick]
                            [--variants passthrough,detector,detector-eos,detector-rules]
                            [--json bench/results/scaling.json]

What runs
    For each count N and each run, the variants in turn, each as N processes in one
    fresh consumer group with fresh topics: the pass-through (bench.passthrough), the
    detector (services.detector.service) with the threshold alone at least once and
    exactly once, and with every rule and the model exactly once, with the settings
    bench/pipeline.py gives them and a DETECTOR_INSTANCE of its own per instance (its
    static membership and transactional id). The full detector's instances share the
    input's partitions and those of its repartition topic, each stage's state moving
    with its partitions through the changelogs; its counts are checked as
    bench/pipeline.py checks them (every record once in legit or fraud, where its rules
    sent it, no dead letters).

The group join
    Started on a filled topic, the first instances to join take every partition and
    start at once; one that joins after the first generation (the embedded broker
    closes it 3 s after the first join) finds the work taken. Tried with a fourth
    instance started 3.5 s late: the other three did all the work and the figure was
    162,000 msgs/s against 415,000 with four that joined together, and every count
    still checked out. So the input is held back until the group is stable:

    1. the input topic is created empty and the N instances started on it, each under
       bench.member, which reports every change of its assignment on stderr (the
       broker answers no group description and the services log no assignment);
    2. once every partition has exactly one holder and every instance holds its
       share, the instances are stopped (SIGSTOP, checked in /proc), the input is
       preloaded while nobody reads it (about 0.5 s: far within the 6 s session, so
       the members stay in the group), and they are continued (SIGCONT) together;
    3. afterwards any assignment change between the group settling and the
       instances being stopped fails the run.

    (Kafka's own way, preloading in one open transaction that read_committed readers
    cannot see until it commits, does not work here: the embedded broker's Fetch
    ignores isolation.level.)

Figures, per run
    - throughput: N - 1 records over the span from the first output record's
      timestamp to the last one's across all output topics: start-up, the join and
      the preload fall outside it;
    - CPU per record: the user + system time of every instance between the same two
      instants (harness.CpuTrace per process), summed; cores: that CPU over the span.
      Beside them, over the same span, the broker's cores, the rest of the machine's
      (this process's sampling and whatever else runs: /proc/stat, in 10 ms ticks) and
      the cores left idle, which say whether the machine was the limit;
    - before anything is reported, the counts as bench/pipeline.py checks them: every
      input record out exactly once (the detector's as the preload's legit and fraud,
      no dead letters) and every instance stopped cleanly (exit 0).

    Medians of --runs runs; speed-up is against the smallest count of the same
    variant, and each row is also set against the pass-through at the same count.

    Other work on the machine (another benchmark, say) shows as the rest of the
    machine's cores. Each run starts after half a second in which the machine was
    busy with less than --max-other cores (waiting a minute at most), and a run whose
    span the rest of the machine took more than --max-other cores of is run again,
    six times at most; one still disturbed then is kept, and marked in the report.

Partitions and cores
    The input is asked for with N partitions, but the embedded broker names no
    controller, so topics are auto-created with its default of 4 partitions whatever
    is asked (the report gives the partitions the input had). With 4 partitions every
    count gets an even share (4, 2 or 1 per instance). A single partition could not
    hold the input anyway: the broker keeps ~5 MB per partition, and 100,000 records
    take about 5.3 MB of it compressed.

    N instances and the broker share the machine's cores: on a 2-core machine, 4
    instances cannot use more than 2 cores between them and the broker, and the
    report says so next to the figures.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from bench.harness import (
    TICKS,
    BenchmarkError,
    CpuClock,
    CpuTrace,
    Offsets,
    Preloaded,
    committed_counts,
    edge_timestamps,
    fresh_topics,
    log_tail,
    median,
    preload,
    processes,
    report,
    spawn,
    start_broker,
    stop,
    table,
    wait_until,
)
from bench.member import PREFIX
from bench.pipeline import (
    BATCH_SIZE,
    THRESHOLD,
    VARIANTS,
    check_alive,
    expected_outputs,
    progress,
    routed,
    run_env,
)
from services import kafka
from services.config import Topics
from services.detector.stateful import InternalTopics

RESULTS = Path(__file__).resolve().parent / "results" / "scaling.json"
KINDS = ("passthrough", "detector", "detector-eos", "detector-rules")
COUNTS = (1, 2, 4)
# Sampling each process every 5 ms rather than harness's 2 ms: with five processes traced
# this benchmark's own share of a 2-core machine drops from ~0.2 core to ~0.09.
EVERY = 0.005
QUIET = 0.3  # cores the rest of the machine may take during a span (--max-other)
ATTEMPTS = 6  # runs of one measurement at most, while the rest of the machine disturbs it


# -- the group ---------------------------------------------------------------------------


Held = frozenset[tuple[str, int]]  # (topic, partition)


@dataclass(frozen=True)
class MemberEvent:
    """One line of bench.member: an assignment change and what the instance holds since."""

    event: str  # assigned, revoked or lost
    holds: Held
    at_ns: int


def member_events(text: str) -> list[MemberEvent]:
    """The assignment changes an instance reported, oldest first."""
    events = []
    for line in text.splitlines():
        if not line.startswith(PREFIX):
            continue
        fields = line[len(PREFIX):].split()
        if len(fields) != 6 or fields[2] != "holds" or fields[4] != "at":
            continue
        held = () if fields[3] == "-" else fields[3].split(",")
        holds = frozenset((topic, int(partition)) for topic, _, partition in
                          (item.rpartition(":") for item in held))
        events.append(MemberEvent(fields[0], holds, int(fields[5])))
    return events


def settled(holdings: Sequence[Held | None], partitions: dict[str, int]) -> bool:
    """Whether the group is stable: every partition of every topic it reads (``topic:
    count``) held by exactly one instance, and every instance holding its share (which
    means every instance has joined)."""
    wanted = sorted((topic, p) for topic, count in partitions.items() for p in range(count))
    if not holdings or len(wanted) < len(holdings) or any(h is None for h in holdings):
        return False
    held = [h for h in holdings if h is not None]
    sizes = [len(h) for h in held]
    return sorted(p for h in held for p in h) == wanted and max(sizes) - min(sizes) <= 1


@dataclass
class Member:
    """One instance: its process, its log and its CPU trace."""

    process: subprocess.Popen[bytes]
    log: Path
    trace: CpuTrace

    def events(self) -> list[MemberEvent]:
        return member_events(self.log.read_text(errors="replace") if self.log.exists()
                             else "")

    def holds(self) -> Held | None:
        events = self.events()
        return events[-1].holds if events else None


def instance_env(bootstrap: str, topics: Topics, group: str, kind: str,
                 index: int) -> dict[str, str]:
    """bench/pipeline.py's settings, with an instance name of its own per instance."""
    return {**run_env(bootstrap, topics, group, kind), "DETECTOR_INSTANCE": f"{group}-{index}"}


@contextlib.contextmanager
def frozen(children: Sequence[subprocess.Popen[bytes]]) -> Iterator[None]:
    """``children`` stopped (SIGSTOP) for the duration, and continued together after."""
    try:
        for child in children:
            child.send_signal(signal.SIGSTOP)
        wait_until(lambda: all(process_state(c.pid) in "Tt" for c in children), 5,
                   "the instances to stop")
        yield
    finally:
        for child in children:
            child.send_signal(signal.SIGCONT)


def process_state(pid: int) -> str:
    """The state letter of /proc/PID/stat (R, S, T for stopped, Z...)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


class MachineClock:
    """Busy CPU time of the whole machine, all cores summed, in ns: what /proc/stat
    counts as neither idle nor waiting for I/O. It counts in clock ticks (10 ms per
    core), coarse over a span of a few hundred ms, but enough to tell whether the
    cores had time to spare or went to something else."""

    def read(self) -> int:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()
        user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, fields[1:9])
        return (user + nice + system + irq + softirq + steal) * 1_000_000_000 // TICKS

    def close(self) -> None:
        pass


class MachineTrace(CpuTrace):
    """CpuTrace of the whole machine rather than of one process."""

    def __init__(self, every: float = 0.002) -> None:
        super().__init__(os.getpid(), every)
        self.clock.close()
        self.clock = MachineClock()  # type: ignore[assignment]  # read() and close() alike


def wait_for_quiet(limit: float, timeout: float = 60.0) -> float:
    """Wait, up to ``timeout``, for half a second in which the machine is busy with
    less than ``limit`` cores; the busy cores of the last half second."""
    clock = MachineClock()
    deadline = time.monotonic() + timeout
    while True:
        before, began = clock.read(), time.monotonic()
        time.sleep(0.5)
        busy = (clock.read() - before) / 1e9 / (time.monotonic() - began)
        if busy < limit or time.monotonic() >= deadline:
            return busy


# -- one run -----------------------------------------------------------------------------


def measure(bootstrap: str, kind: str, count: int, records: int, logs: Path,
            broker_pid: int) -> tuple[dict[str, Any], Preloaded]:
    """``count`` instances of ``kind`` in one group over a fresh input, held back until
    the group is stable: their figures, once the counts and the group check out."""
    topics = fresh_topics(f"{kind}{count}")
    group = f"bench-scaling-{kind}-{count}-{uuid.uuid4().hex[:6]}"
    kafka.ensure_topics(bootstrap, {topics.transactions: count})
    offsets = Offsets(bootstrap)
    load = os.getloadavg()[0]
    try:
        partitions = len(offsets.spans(topics.transactions))
        if partitions < count:
            raise BenchmarkError(f"{count} instances cannot each get one of the input's "
                                 f"{partitions} partitions")
        with processes() as started, contextlib.ExitStack() as open_files:
            members = []
            for index in range(count):
                log = logs / f"{group}-{index}.log"
                process = spawn(started, "bench.member", [VARIANTS[kind].module],
                                env=instance_env(bootstrap, topics, group, kind, index),
                                stderr=open_files.enter_context(log.open("wb")))
                members.append(Member(process, log, CpuTrace(process.pid, EVERY)))
            with contextlib.ExitStack() as tracing:
                for member in members:
                    tracing.enter_context(member.trace)
                broker = tracing.enter_context(CpuTrace(broker_pid, EVERY))
                machine = tracing.enter_context(MachineTrace(every=0.01))  # its tick
                # A stateful detector reads its repartition topic too (it makes it).
                read = [topics.transactions] + ([InternalTopics.of(group).repartition]
                                                if VARIANTS[kind].stateful else [])
                wait_until(lambda: alive(members, kind) and settled(
                    [m.holds() for m in members],
                    {topic: len(offsets.spans(topic)) for topic in read}), 60,
                    f"{count} {kind} instances to share the partitions of "
                    f"{', '.join(read)}", every=0.1)
                settled_ns = time.time_ns()
                began = time.monotonic()
                with frozen([m.process for m in members]):
                    source = preload(bootstrap, topics.transactions, records, THRESHOLD,
                                     partitions=count)
                held_back = time.monotonic() - began
                expected = expected_outputs(kind, topics, source)
                drain(bootstrap, offsets, members, kind, topics, expected, group)
            done_ns = time.time_ns()
            alive(members, kind)
            codes = stop(*(m.process for m in members))
            if any(codes):
                failed = codes.index(next(c for c in codes if c))
                raise BenchmarkError(f"{kind} instance {failed} did not stop cleanly "
                                     f"(exit {codes[failed]}):\n{log_tail(members[failed].log)}")
        counts = committed_counts(bootstrap, list(expected))
    finally:
        offsets.close()
    if VARIANTS[kind].stateful:  # every record once, wherever its rules sent it
        if routed(counts, topics) != source.records or counts[topics.dlq]:
            raise BenchmarkError(f"{kind} x{count} put out {counts}, expected "
                                 f"{source.records:,} in legit and fraud together")
    elif counts != expected:
        raise BenchmarkError(f"{kind} x{count} put out {counts}, expected {expected}")
    for index, member in enumerate(members):
        moved = [e for e in member.events() if settled_ns < e.at_ns < done_ns]
        if moved:
            raise BenchmarkError(f"{kind} instance {index} of {count}: its partitions "
                                 f"changed during the run ({moved[0]})")
    edges = [t for t, n in expected.items() if n]
    if VARIANTS[kind].stateful:  # its first outputs are its first stage's (bench.pipeline)
        edges.append(InternalTopics.of(group).repartition)
    first, last = edge_timestamps(bootstrap, edges)
    return {**figures(records, first, last, [m.trace for m in members], broker, machine),
            "partitions": partitions, "held_back_s": held_back, "load_1min": load}, source


def drain(bootstrap: str, offsets: Offsets, members: Sequence[Member], kind: str,
          topics: Topics, expected: dict[str, int], group: str) -> None:
    """Wait until the outputs hold every input record, committed, and the group's
    offsets have reached the end of the input."""
    records = sum(high for _, high in offsets.spans(topics.transactions))
    what = f"{len(members)} {kind} instances"
    # End offsets count commit markers too: they only say when to look.
    wait_until(lambda: alive(members, kind) and offsets.total(*expected) >= records,
               180, f"{what} to put out {records:,} records", every=0.05)
    wait_until(lambda: alive(members, kind) and routed(
        committed_counts(bootstrap, list(expected)), topics) >= records,
        120, f"{what} to commit {records:,} records", every=0.5)
    # Stopping one member rebalances the group, and the embedded broker refuses the
    # others' commits meanwhile (their exit code then says so): stop only once all of
    # the input's offsets are committed.
    ends = [high for _, high in offsets.spans(topics.transactions)]
    wait_until(lambda: alive(members, kind) and group_offsets(
        bootstrap, group, topics.transactions, len(ends)) == ends,
        30, f"{what} to commit their input offsets", every=0.2)


def group_offsets(bootstrap: str, group: str, topic: str, partitions: int) -> list[int]:
    """The offsets ``group`` committed on each partition of ``topic`` (negative: none)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                         "enable.auto.commit": False})
    try:
        return [tp.offset for tp in consumer.committed(
            [TopicPartition(topic, p) for p in range(partitions)], timeout=10)]
    finally:
        consumer.close()


def alive(members: Sequence[Member], kind: str) -> bool:
    """True while every instance runs; one that exited fails the run at once."""
    for index, member in enumerate(members):
        check_alive(member.process, f"{kind} instance {index}", member.log)
    return True


def figures(records: int, first_ms: int, last_ms: int, traces: Sequence[CpuTrace],
            broker: CpuTrace, machine: CpuTrace) -> dict[str, Any]:
    """Throughput and CPU between the first and the last output record: the instances'
    CPU summed, and beside it the broker's, the rest of the machine's (this process's
    sampling, and whatever else runs) and the cores left idle."""

    def cores(trace: CpuTrace) -> float:
        # A timestamp is its millisecond, truncated: its middle is the best guess.
        return (trace.at((last_ms + 0.5) * 1e6) - trace.at((first_ms + 0.5) * 1e6)) / 1e9 / span

    span = max(last_ms - first_ms, 1) / 1000
    each = [cores(trace) for trace in traces]
    instances, broker_cores, busy = sum(each), cores(broker), cores(machine)
    intervals = records - 1
    return {"msgs_per_s": intervals / span,
            "cpu_us_per_msg": instances * span * 1e6 / intervals,
            "cores": instances, "broker_cores": broker_cores,
            "other_cores": max(busy - instances - broker_cores, 0.0),
            "idle_cores": max((os.cpu_count() or 1) - busy, 0.0),
            "instance_cores": each, "span_ms": last_ms - first_ms}


# -- report ------------------------------------------------------------------------------

Runs = dict[int, dict[str, list[dict[str, Any]]]]  # count -> variant -> runs
MEDIANS = ("msgs_per_s", "cpu_us_per_msg", "cores", "broker_cores", "other_cores",
           "idle_cores", "span_ms")


def summarize(runs: Runs, source: Preloaded, cpus: int,
              max_other: float = QUIET) -> dict[str, Any]:
    """Medians per count and variant, each set against the smallest count of its
    variant (speed-up) and against the pass-through at its count; runs that other work
    disturbed (over ``max_other`` cores) are counted."""
    counts = sorted(runs)
    base = counts[0]
    rows = []
    for count in counts:
        for kind, done in runs[count].items():
            mid = {key: median([r[key] for r in done]) for key in MEDIANS}
            rows.append({"instances": count, "variant": kind,
                         "description": VARIANTS[kind].description,
                         "partitions": done[0]["partitions"], "median": mid,
                         "noisy_runs": sum(r["other_cores"] > max_other for r in done),
                         "runs": done})
    by = {(row["instances"], row["variant"]): row["median"]["msgs_per_s"] for row in rows}
    for row in rows:
        own = by.get((base, row["variant"]))
        through = by.get((row["instances"], "passthrough"))
        row["speed_up"] = row["median"]["msgs_per_s"] / own if own else None
        row["vs_passthrough"] = row["median"]["msgs_per_s"] / through if through else None
        row["instances_over_cores"] = row["instances"] > cpus
    # If CPU per record held, what the machine's cores would carry against the base.
    ceilings = {row["variant"]: {"cores": row["median"]["cores"],
                                 "broker_cores": row["median"]["broker_cores"],
                                 "speed_up": cpus / (row["median"]["cores"]
                                                     + row["median"]["broker_cores"])}
                for row in rows if row["instances"] == base}
    return {
        "input": {"records": source.records, "bytes_per_record": source.bytes / source.records,
                  "fraud": source.fraud, "legit": source.legit, "threshold": THRESHOLD,
                  "batch_size": BATCH_SIZE},
        "counts": counts,
        "speed_up_base": base,
        "runs": max(len(done) for per in runs.values() for done in per.values()),
        "cpus": cpus,
        "max_other_cores": max_other,
        "attempts": sum(r.get("attempts", 1) for row in rows for r in row["runs"]),
        "ceilings": ceilings,
        "rows": rows,
    }


def ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def render(summary: dict[str, Any]) -> str:
    src, cpus, base = summary["input"], summary["cpus"], summary["speed_up_base"]
    quiet = summary["max_other_cores"]
    head = (f"Scaling: {src['records']:,} transactions per run (~{src['bytes_per_record']:.0f} B, "
            f"{src['fraud']:,} fraud), batch {src['batch_size']:,}, threshold "
            f"{src['threshold']:g}, median of {summary['runs']} runs; N instances in one "
            "group, the input held back until the group was stable")
    rows = [[row["instances"], row["variant"], f"{m['msgs_per_s']:,.0f}",
             f"{m['cpu_us_per_msg']:.2f}", f"{m['cores']:.2f}", f"{m['broker_cores']:.2f}",
             f"{m['other_cores']:.2f}", f"{m['idle_cores']:.2f}",
             ratio(row["speed_up"]), ratio(row["vs_passthrough"]),
             " / ".join(f"{r['msgs_per_s']:,.0f}" + ("*" if r["other_cores"] > quiet else "")
                        for r in row["runs"])]
            for row in summary["rows"] for m in [row["median"]]]
    lines = [head, "", table(["N", "variant", "msgs/s", "CPU µs/msg", "cores", "broker",
                              "other", "idle", f"speed-up vs N={base}", "vs pass-through",
                              "msgs/s per run"], rows), "",
             "cores: the N instances' CPU summed over the span, beside the broker's, the rest "
             "of the machine's (this benchmark's sampling, anything else running) and the "
             "cores left idle"]
    over = sorted({row["instances"] for row in summary["rows"] if row["instances_over_cores"]})
    lines.append(f"machine: {cpus} cores, shared by the instances, the broker and this "
                 f"benchmark: the instances together cannot use more than {cpus}"
                 + (f"; with N = {', '.join(map(str, over))} there are more instances than "
                    "cores, so throughput cannot grow with N beyond what "
                    f"{cpus} cores carry" if over else ""))
    for kind, ceiling in summary["ceilings"].items():
        lines.append(f"  {kind}: at N={base} it used {ceiling['cores']:.2f} cores and the "
                     f"broker {ceiling['broker_cores']:.2f}: {cpus} cores allow at most "
                     f"{ceiling['speed_up']:.2f}x its N={base} throughput at the same CPU per "
                     "record")
    partitions = sorted({row["partitions"] for row in summary["rows"]})
    lines.append(f"partitions: the input had {', '.join(map(str, partitions))} for every N"
                 + (" (asked for N: the embedded broker gives every topic its default of 4), "
                    "shared evenly by the instances" if partitions != summary["counts"] else ""))
    measured = sum(len(row["runs"]) for row in summary["rows"])
    noisy = sum(row["noisy_runs"] for row in summary["rows"])
    lines.append(f"other work: a run during which the rest of the machine took more than "
                 f"{quiet:g} cores was run again, {ATTEMPTS} times at most: "
                 f"{summary['attempts']} runs for {measured}"
                 + (f"; {noisy} still disturbed, kept and marked *" if noisy else ""))
    lines.append("counts verified: every run put out exactly its input (the threshold's "
                 "legit and fraud as made; the full detector's, every record once in legit "
                 "or fraud), no dead letters, clean exits, and no instance's partitions "
                 "moved once the group had settled")
    return "\n".join(lines)


# -- main --------------------------------------------------------------------------------


def counts_list(text: str) -> tuple[int, ...]:
    try:
        counts = tuple(sorted({int(part) for part in text.split(",") if part.strip()}))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a list like 1,2,4") from None
    if not counts or counts[0] < 1 or counts[-1] > 16:
        raise argparse.ArgumentTypeError(f"{text!r}: counts go from 1 to 16")
    return counts


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.scaling", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, help="input records per run (default: 100,000)")
    parser.add_argument("--runs", type=int, help="runs of each count and variant (default: 3)")
    parser.add_argument("--counts", type=counts_list, default=COUNTS,
                        help="instance counts, comma-separated (default: 1,2,4)")
    parser.add_argument("--variants", default=",".join(KINDS),
                        help="variants to run, comma-separated (default: %(default)s)")
    parser.add_argument("--max-other", type=float, default=QUIET,
                        help="cores the rest of the machine may take during a run; a run "
                             f"over it is run again, {ATTEMPTS} times at most "
                             "(default: %(default)s)")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke check: 20,000 records, 1 run")
    parser.add_argument("--json", type=Path, default=RESULTS,
                        help="where to write the results (default: %(default)s)")
    args = parser.parse_args(argv)
    chosen = {kind.strip() for kind in args.variants.split(",") if kind.strip()}
    if not chosen or chosen - set(KINDS):
        parser.error(f"--variants takes {', '.join(KINDS)}")
    args.variants = [kind for kind in KINDS if kind in chosen]
    args.records = args.records or (20_000 if args.quick else 100_000)
    args.runs = args.runs or (1 if args.quick else 3)
    if args.records < 2 or args.runs < 1:
        parser.error("--records must be at least 2, --runs at least 1")
    return args


def benchmark(args: argparse.Namespace) -> dict[str, Any]:
    runs: Runs = {count: {kind: [] for kind in args.variants} for count in args.counts}
    source = None
    with tempfile.TemporaryDirectory(prefix="bench-scaling-") as tmp, \
            processes() as started:
        logs = Path(tmp)
        bootstrap = start_broker(started)
        broker_pid = started[-1].pid
        progress(f"embedded broker at {bootstrap}; {args.records:,} records per run")
        for n in range(1, args.runs + 1):
            for count in args.counts:
                for kind in args.variants:
                    for attempt in range(1, ATTEMPTS + 1):
                        wait_for_quiet(args.max_other)
                        result, source = measure(bootstrap, kind, count, args.records, logs,
                                                 broker_pid)
                        result["attempts"] = attempt
                        progress(f"  run {n}/{args.runs} N={count} {kind:<13} "
                                 f"{result['msgs_per_s']:>9,.0f} msgs/s "
                                 f"{result['cpu_us_per_msg']:6.2f} µs/msg "
                                 f"{result['cores']:.2f} cores, broker "
                                 f"{result['broker_cores']:.2f}, other "
                                 f"{result['other_cores']:.2f}, idle {result['idle_cores']:.2f}")
                        if result["other_cores"] <= args.max_other:
                            break
                        progress(f"    other work took {result['other_cores']:.2f} cores "
                                 f"(over {args.max_other:g})"
                                 + (": again" if attempt < ATTEMPTS else ": kept, as noisy"))
                    runs[count][kind].append(result)
    assert source is not None
    summary = summarize(runs, source, os.cpu_count() or 1, args.max_other)
    summary["cpu_clock"] = "schedstat ns" if CpuClock(os.getpid()).precise else "stat ticks"
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    return report("bench.scaling", parse_args(argv), benchmark, render)


if __name__ == "__main__":
    raise SystemExit(main())
