"""Pipeline benchmark on one embedded broker: the detector against a pass-through
baseline, and the generator's achieved rate.

    python -m bench.pipeline [--records 100000] [--runs 3] [--seconds 10] [--quick]
                             [--variants raw,passthrough,detector,...] [--no-generator]
                             [--json bench/results/pipeline.json]

Detector vs pass-through
    One input topic (4 partitions) is preloaded with N generated transactions, made
    and sent the way the generator makes and sends them. Then the pass-through
    (bench.passthrough) and the detector (services.detector.service) take turns, each
    as its own process with fresh output topics and a fresh consumer group, so that
    each reads the whole input from the beginning. Per run:

    - throughput: N - 1 records over the span from the first output record's
      timestamp to the last one's (for the full detector, the first output is its
      first stage's, to the repartition topic). The producer stamps a record when
      produce() is called, so start-up, group join and the final flush fall outside
      the span;
    - CPU per record: the process's user + system time between the same two instants.
      A thread samples it every 2 ms against the wall clock (summing the per-thread
      schedstat counters, in nanoseconds; /proc/PID/stat counts in 10 ms ticks), and
      the CPU time at each of the two timestamps is interpolated between the samples
      around it;
    - before anything is reported, the counts: once the process has stopped, its
      outputs' end offsets hold exactly N records (the detector's: exactly the legit
      and fraud records the preload made, no dead letters), and it stopped cleanly
      (exit 0: offsets committed, no failed delivery).

    Each variant is reported against two baselines of the same run: the raw client
    (bench.raw: ``consume(10000)``, re-produce the bytes, a 10 ms linger, nothing
    else), the floor of any Kafka process in Python; and the pass-through that runs
    the detector's own loop (checkpoints, control reader, heartbeats) and copies each
    record. Against each: the throughput ratio, and CPU per record (against the raw
    client, as a ratio: lower is better; against the pass-through, as its inverse,
    "CPU efficiency"). Against the raw client, each run is paired with the raw
    client's run of the same round, and the median of those ratios is reported.

    Two more baselines bound what any detector can reach (bench.passthrough): the
    pass-through that first checks each record against the detector's schema, as a
    detector must to keep bad records out of its verdicts, and the one that sends each
    record through a topic of its own and consumes it again before it goes out, as the
    stateful detector re-keys every transaction through its repartition topic.

    The detector routes a whole batch before it produces that batch's first record,
    so the routing of its first batch (1,000 of 100,000 records) falls before its
    span: that flatters it by about 1 %. Figures are medians of --runs runs; read the
    ratios, since both sides share the machine's noise.

    The embedded broker keeps about 5 MB per partition, and the detector's outputs
    are about twice the size of its inputs: N stays near 100,000. A run whose start
    the broker dropped fails instead of reporting.

Generator
    For each target (1,000, 10,000 and 100,000 per second) the generator runs with
    --seed on a fresh topic: a warm-up, then --seconds measured. Achieved rate: the
    growth of the topic's end offsets over the measured window (records that landed,
    not records attempted), and its error against the target. The generator sends a
    turn's records at once (up to 50 ms of them), so a window's edges can cut one
    turn's batch: over 10 s that is within 0.5 %. Alongside, what the
    generator says of itself in its heartbeats (its rate over its last 5 s, whether it
    keeps up, records it gave up on). Once stopped, its count must match the topic's.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.harness import (
    BenchmarkError,
    CpuClock,
    CpuTrace,
    Offsets,
    Preloaded,
    committed_counts,
    edge_timestamps,
    fresh_topics,
    goal,
    goal_lines,
    log_tail,
    median,
    preload,
    processes,
    read_all,
    report,
    service_env,
    spawn,
    start_broker,
    stop,
    table,
    wait_until,
)
from services.config import Topics
from services.control import parse_status
from services.detector.stateful import InternalTopics

RESULTS = Path(__file__).resolve().parent / "results" / "pipeline.json"
DETECTOR = "services.detector.service"
PASSTHROUGH = "bench.passthrough"
RAW = "bench.raw"


@dataclasses.dataclass(frozen=True)
class Variant:
    """One side of the comparison: a process and the settings it runs with."""

    module: str
    env: dict[str, str]
    description: str
    stateful: bool = False  # its verdicts are not the threshold's alone


# The two baselines first: every variant is reported against both, the raw client (the
# floor: bench.raw) and the pass-through that runs the detector's own loop. "detector"
# is the classic rule with the baselines' guarantee; the others add what a user turns on.
VARIANTS = {
    "raw": Variant(RAW, {}, "raw client: consume(10000), re-produce the bytes, linger "
                   "10 ms, no checkpoint"),
    "passthrough": Variant(PASSTHROUGH, {"PROCESSING_GUARANTEE": "at_least_once"},
                           "consume, re-produce raw bytes (at least once)"),
    # Two bounds (bench.passthrough): what validating every record leaves of the
    # pass-through, and what a hop through a topic of its own, as the stateful
    # detector's repartition topic, leaves of it.
    "pass-validate": Variant(PASSTHROUGH, {"PROCESSING_GUARANTEE": "at_least_once",
                                           "PASSTHROUGH_WORK": "validate"},
                             "validate (the detector's schema), re-produce raw bytes, "
                             "at least once"),
    "pass-2hops": Variant(PASSTHROUGH, {"PROCESSING_GUARANTEE": "exactly_once",
                                        "PASSTHROUGH_WORK": "two_hops"},
                          "raw bytes through a topic of its own and on, exactly once"),
    "detector": Variant(DETECTOR, {"DETECTOR_RULES": "threshold",
                                   "PROCESSING_GUARANTEE": "at_least_once"},
                        "threshold only, at least once"),
    "detector-eos": Variant(DETECTOR, {"DETECTOR_RULES": "threshold",
                                       "PROCESSING_GUARANTEE": "exactly_once"},
                            "threshold only, exactly once"),
    "detector-rules": Variant(DETECTOR, {"DETECTOR_RULES": "all", "DETECTOR_MODEL": "on",
                                         "PROCESSING_GUARANTEE": "exactly_once"},
                              "every rule, the model, exactly once", stateful=True),
}
TARGETS = (1_000.0, 10_000.0, 100_000.0)
THRESHOLD = 900.0
BATCH_SIZE = 1000
# The project's aims, each against a baseline of the same run: (variant, figure, bound,
# higher is better, what it is). Against the loop's own pass-through, the classic rule
# nearly as fast as copying; against the raw client, the physical limit's share.
GOALS = (("detector", "throughput_ratio", 0.95, True, "threshold only: throughput"),
         ("detector", "cpu_efficiency", 0.75, True, "threshold only: CPU efficiency"),
         ("detector-rules", "throughput_ratio", 0.8, True,
          "every rule + model + exactly-once: throughput"),
         ("detector", "raw_throughput_ratio", 0.7, True, "threshold only: throughput"),
         ("detector-rules", "raw_throughput_ratio", 0.25, True,
          "every rule + model + exactly-once: throughput"),
         ("detector-rules", "raw_cpu_ratio", 4.0, False,
          "every rule + model + exactly-once: CPU per record"))
GENERATOR_GOAL_PCT = 1.0  # achieved rate within 1 % of the target


def progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def check_alive(process: subprocess.Popen[bytes], name: str, log: Path) -> None:
    if process.poll() is not None:
        raise BenchmarkError(f"{name} exited with {process.returncode}:\n{log_tail(log)}")


# -- detector vs pass-through ------------------------------------------------------------


def run_env(bootstrap: str, topics: Topics, group: str, kind: str) -> dict[str, str]:
    """The same settings for every side, whatever the caller's environment holds."""
    return {**service_env(bootstrap, topics, group), "FRAUD_THRESHOLD": f"{THRESHOLD:g}",
            "DETECTOR_BATCH_SIZE": str(BATCH_SIZE), "DETECTOR_INSTANCE": group,
            **VARIANTS[kind].env}


def expected_outputs(kind: str, topics: Topics, source: Preloaded) -> dict[str, int]:
    """Records per output topic once ``kind`` is done; the stateful detector's split
    between legit and fraud is its rules' (checked as a sum by ``measure``)."""
    if VARIANTS[kind].module == RAW:  # all to legit, and it knows no other topic
        return {topics.legit: source.records}
    if VARIANTS[kind].module == PASSTHROUGH:  # all to legit; a bound also validates
        return {topics.legit: source.records, topics.dlq: 0}
    if VARIANTS[kind].stateful:
        return {topics.legit: -1, topics.fraud: -1, topics.dlq: 0}
    return {topics.legit: source.legit, topics.fraud: source.fraud, topics.dlq: 0}


def measure(bootstrap: str, kind: str, source: Preloaded, logs: Path) -> dict[str, float]:
    """One pass of ``kind`` over the preloaded input: its figures, once its counts hold."""
    topics = dataclasses.replace(fresh_topics(kind), transactions=source.topic)
    group = f"bench-{kind}-{uuid.uuid4().hex[:6]}"
    expected = expected_outputs(kind, topics, source)
    log = logs / f"{group}.log"
    offsets = Offsets(bootstrap)
    try:
        with processes() as started, log.open("wb") as stderr:
            process = spawn(started, VARIANTS[kind].module,
                            env=run_env(bootstrap, topics, group, kind), stderr=stderr)
            with CpuTrace(process.pid) as trace:
                # End offsets count commit markers too: they only say when to look.
                wait_until(lambda: process.poll() is not None
                           or offsets.total(*expected) >= source.records,
                           180, f"{kind} to put out {source.records:,} records", every=0.05)
                wait_until(lambda: process.poll() is not None or routed(
                    committed_counts(bootstrap, list(expected)), topics) >= source.records,
                    120, f"{kind} to commit {source.records:,} records", every=0.5)
            check_alive(process, kind, log)
            if stop(process)[0] != 0:
                raise BenchmarkError(f"{kind} did not stop cleanly:\n{log_tail(log)}")
        counts = committed_counts(bootstrap, list(expected))
    finally:
        offsets.close()
    if VARIANTS[kind].stateful:  # every record once, wherever its rules sent it
        if routed(counts, topics) != source.records or counts[topics.dlq]:
            raise BenchmarkError(f"{kind} put out {counts}, expected {source.records:,} "
                                 "in legit and fraud together")
    elif counts != expected:
        raise BenchmarkError(f"{kind} put out {counts}, expected {expected}")
    edges = [t for t, n in expected.items() if n]
    if VARIANTS[kind].stateful:
        # Its first stage's records go out first, to the repartition topic: the span
        # starts there, or a first stage that ran ahead of the first commit (whose
        # forwards the second stage waits for) would do its work outside the span.
        edges.append(InternalTopics.of(group).repartition)
    first, last = edge_timestamps(bootstrap, edges)
    return figures(source.records, first, last, trace)


def routed(counts: dict[str, int], topics: Topics) -> int:
    """Records put out to legit and fraud (the pass-through's all go to legit)."""
    return counts.get(topics.legit, 0) + counts.get(topics.fraud, 0)


def figures(records: int, first_ms: int, last_ms: int, trace: CpuTrace) -> dict[str, float]:
    # A timestamp is its millisecond, truncated: its middle is the best guess.
    cpu_ns = trace.at((last_ms + 0.5) * 1e6) - trace.at((first_ms + 0.5) * 1e6)
    span = max(last_ms - first_ms, 1) / 1000
    intervals = records - 1
    return {"msgs_per_s": intervals / span, "cpu_us_per_msg": cpu_ns / 1e3 / intervals,
            "cores": cpu_ns / 1e9 / span, "span_ms": last_ms - first_ms}


def compare(bootstrap: str, source: Preloaded, runs: int, logs: Path,
            kinds: Sequence[str] = tuple(VARIANTS)) -> dict[str, list[dict[str, float]]]:
    """The baselines and the detectors in turn, ``runs`` times each."""
    results: dict[str, list[dict[str, float]]] = {kind: [] for kind in kinds}
    for n in range(1, runs + 1):
        for kind, done in results.items():
            done.append(measure(bootstrap, kind, source, logs))
            progress(f"  run {n}/{runs} {kind:<14} {done[-1]['msgs_per_s']:>9,.0f} msgs/s "
                     f"{done[-1]['cpu_us_per_msg']:6.2f} µs/msg")
    return results


# -- generator ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Mark:
    """A topic's record count and the generator's CPU time at one instant."""

    records: int
    at: float  # monotonic seconds, the middle of the offsets query
    wall_ms: float
    cpu_ns: int


def mark(offsets: Offsets, topic: str, clock: CpuClock) -> Mark:
    before = time.monotonic()
    records = offsets.end(topic)
    after = time.monotonic()
    wall_ms = time.time() * 1000 - (after - before) * 500
    return Mark(records, (before + after) / 2, wall_ms, clock.read())


def generator_rate(bootstrap: str, target: float, warmup: float, seconds: float,
                   logs: Path) -> dict[str, Any]:
    topics = fresh_topics(f"gen{target:g}")
    log = logs / f"generator-{target:g}.log"
    offsets = Offsets(bootstrap)
    try:
        with processes() as started, log.open("wb") as stderr:
            process = spawn(started, "services.generator.service",
                            ["--tps", f"{target:g}", "--seed", "1"],
                            service_env(bootstrap, topics, "bench-unused"), stderr=stderr)
            start, end = window(process, offsets, topics.transactions, warmup, seconds, log)
            if stop(process)[0] != 0:
                raise BenchmarkError(f"the generator did not stop cleanly:\n{log_tail(log)}")
        total = offsets.end(topics.transactions)
    finally:
        offsets.close()
    beats = heartbeats(bootstrap, topics.status)
    if not beats or beats[-1]["produced"] != total:
        raise BenchmarkError(f"the generator's last heartbeat {beats[-1:]} does not match "
                             f"the {total:,} records on its topic")
    # Its own view of the window: the last heartbeat sent before the window closed.
    seen = [b for b in beats if b["ts"] <= end.wall_ms][-1:]
    if not seen:
        raise BenchmarkError("the generator sent no heartbeat during the measured window")
    own = seen[0]
    achieved = (end.records - start.records) / (end.at - start.at)
    return {"target": target, "achieved": achieved, "error_pct": percent(achieved, target),
            "reported": own["rate"], "reported_error_pct": percent(own["rate"], target),
            "keeping_up": own["keeping_up"], "dropped": beats[-1]["dropped"],
            "cores": (end.cpu_ns - start.cpu_ns) / 1e9 / (end.at - start.at),
            "window_s": end.at - start.at, "produced": total}


def window(process: subprocess.Popen[bytes], offsets: Offsets, topic: str, warmup: float,
           seconds: float, log: Path) -> tuple[Mark, Mark]:
    """Marks at the start and the end of the measured window, after the warm-up."""
    clock = CpuClock(process.pid)
    try:
        wait_until(lambda: process.poll() is not None or offsets.end(topic) > 0, 60,
                   "the generator's first record", every=0.05)
        check_alive(process, "the generator", log)
        time.sleep(warmup)
        start = mark(offsets, topic, clock)
        time.sleep(seconds)
        end = mark(offsets, topic, clock)
        check_alive(process, "the generator", log)
    finally:
        clock.close()
    return start, end


def heartbeats(bootstrap: str, topic: str) -> list[dict[str, Any]]:
    """The generator's heartbeat counters, oldest first, each with the beat's ``ts``."""
    beats = []
    for raw in read_all(bootstrap, topic):
        status = parse_status(raw)
        if status and status["kind"] == "heartbeat" and status["service"] == "generator":
            beats.append({**status["counters"], "ts": status["ts"]})
    return sorted(beats, key=lambda beat: beat["ts"])


def generator_median(tries: list[dict[str, Any]]) -> dict[str, Any]:
    """One target's figures as medians of its runs; a run that fell behind or dropped
    records shows in ``keeping_up`` and ``dropped`` whatever the others did."""
    target = tries[0]["target"]
    achieved, reported = median([t["achieved"] for t in tries]), \
        median([t["reported"] for t in tries])
    return {"target": target, "achieved": achieved, "error_pct": percent(achieved, target),
            "reported": reported, "reported_error_pct": percent(reported, target),
            "keeping_up": all(t["keeping_up"] for t in tries),
            "dropped": max(t["dropped"] for t in tries),
            "cores": median([t["cores"] for t in tries]),
            "window_s": median([t["window_s"] for t in tries]), "runs": tries}


def percent(value: float, target: float) -> float:
    return (value - target) / target * 100


# -- report ------------------------------------------------------------------------------


def summarize(source: Preloaded, runs: dict[str, list[dict[str, float]]],
              generator: list[dict[str, Any]], precise_cpu: bool) -> dict[str, Any]:
    sides = {kind: {"median": {key: median([r[key] for r in done]) for key in done[0]},
                    "runs": done} for kind, done in runs.items()}
    base = sides["passthrough"]["median"]
    raw = sides.get("raw")
    for side in sides.values():
        side["throughput_ratio"] = side["median"]["msgs_per_s"] / base["msgs_per_s"]
        side["cpu_efficiency"] = base["cpu_us_per_msg"] / side["median"]["cpu_us_per_msg"]
        if raw is not None:
            # Each run against the raw client's run just before it, then the median:
            # on a machine shared with other work, load drifts between runs more than
            # within one.
            pairs = list(zip(side["runs"], sides["raw"]["runs"], strict=True))
            side["raw_throughput_ratios"] = [r["msgs_per_s"] / b["msgs_per_s"]
                                             for r, b in pairs]
            side["raw_cpu_ratios"] = [r["cpu_us_per_msg"] / b["cpu_us_per_msg"]
                                      for r, b in pairs]
            side["raw_throughput_ratio"] = median(side["raw_throughput_ratios"])
            side["raw_cpu_ratio"] = median(side["raw_cpu_ratios"])
    goals = [goal(f"detector, {what} vs {baseline_of(figure)}", sides[kind].get(figure),
                  bound, higher, "x")
             for kind, figure, bound, higher, what in GOALS
             if kind in sides and (raw is not None or not figure.startswith("raw"))]
    goals += [goal(f"generator at {g['target']:,.0f}/s: error", abs(g["error_pct"]),
                   GENERATOR_GOAL_PCT, False, " %") for g in generator]
    return {
        "input": {"topic": source.topic, "records": source.records,
                  "bytes_per_record": source.bytes / source.records,
                  "partitions": source.partitions, "fraud": source.fraud,
                  "legit": source.legit, "threshold": THRESHOLD, "batch_size": BATCH_SIZE},
        "runs": len(runs["passthrough"]),
        "cpu_clock": "schedstat ns" if precise_cpu else "stat ticks",
        **sides,
        "goals": goals,
        "generator": generator,
    }


def render(summary: dict[str, Any]) -> str:
    src = summary["input"]
    head = (f"Detector vs pass-through: {src['records']:,} transactions "
            f"(~{src['bytes_per_record']:.0f} B, {src['partitions']} partitions, "
            f"{src['fraud']:,} fraud), batch {src['batch_size']:,}, "
            f"median of {summary['runs']} runs each")
    rows = [[kind, VARIANTS[kind].description, f"{m['msgs_per_s']:,.0f}",
             f"{m['cpu_us_per_msg']:.2f}", f"{m['cores']:.2f}",
             ratio(summary[kind], "raw_throughput_ratio"),
             ratio(summary[kind], "raw_cpu_ratio"),
             ratio(summary[kind], "throughput_ratio"), ratio(summary[kind], "cpu_efficiency"),
             " / ".join(f"{r['msgs_per_s']:,.0f}" for r in summary[kind]["runs"])]
            for kind in VARIANTS if kind in summary for m in [summary[kind]["median"]]]
    lines = [head, "", table(["", "", "msgs/s", "CPU µs/msg", "cores", "vs raw",
                              "CPU/msg vs raw", "vs pass-through", "CPU efficiency",
                              "msgs/s per run"], rows), ""]
    lines += goal_lines(summary["goals"])
    lines += ["counts verified: every run put out exactly its input (the threshold's legit "
              "and fraud as made), no dead letters, clean exit",
              "", generator_table(summary["generator"])]
    return "\n".join(lines)


def baseline_of(figure: str) -> str:
    return "raw client" if figure.startswith("raw_") else "pass-through"


def ratio(side: dict[str, Any], figure: str) -> str:
    return f"{side[figure]:.2f}x" if figure in side else "–"


def generator_table(rows: list[dict[str, Any]]) -> str:
    seconds = rows[0]["window_s"] if rows else 0.0
    runs = len(rows[0]["runs"]) if rows else 0
    return (f"Generator achieved rate: records landed over {seconds:.1f} s after a warm-up, "
            f"a fresh topic per run, median of {runs} runs\n\n" + table(
                ["target/s", "landed/s", "error", "own rate/s", "error", "keeping up",
                 "dropped", "cores"],
                [[f"{g['target']:,.0f}", f"{g['achieved']:,.0f}", f"{g['error_pct']:+.2f} %",
                  f"{g['reported']:,.0f}", f"{g['reported_error_pct']:+.2f} %",
                  "yes" if g["keeping_up"] else "no", f"{g['dropped']:,}",
                  f"{g['cores']:.2f}"] for g in rows]))


# -- main --------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.pipeline", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, help="input records (default: 100,000)")
    parser.add_argument("--runs", type=int, help="runs of each side (default: 3)")
    parser.add_argument("--seconds", type=float,
                        help="measured seconds per generator target (default: 10)")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke check: 20,000 records, 1 run, 2 s per target")
    parser.add_argument("--variants", default=",".join(VARIANTS),
                        help="variants to run, comma-separated; the pass-through always "
                        "runs (default: every one)")
    parser.add_argument("--no-generator", action="store_true",
                        help="skip the generator's achieved rates")
    parser.add_argument("--json", type=Path, default=RESULTS,
                        help="where to write the results (default: %(default)s)")
    args = parser.parse_args(argv)
    quick = args.quick
    args.records = args.records or (20_000 if quick else 100_000)
    args.runs = args.runs or (1 if quick else 3)
    args.seconds = args.seconds or (2.0 if quick else 10.0)
    args.warmup = 1.0 if quick else 2.0
    chosen = {kind.strip() for kind in args.variants.split(",") if kind.strip()}
    if chosen - set(VARIANTS):
        parser.error(f"--variants takes {', '.join(VARIANTS)}")
    args.variants = [kind for kind in VARIANTS if kind in chosen | {"passthrough"}]
    if args.records < 2 or args.runs < 1 or args.seconds <= 0:
        parser.error("--records must be at least 2, --runs at least 1, --seconds above 0")
    return args


def benchmark(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as tmp, \
            processes() as started:
        logs = Path(tmp)
        bootstrap = start_broker(started)
        progress(f"embedded broker at {bootstrap}; preloading {args.records:,} records")
        source = preload(bootstrap, fresh_topics("input").transactions, args.records,
                         THRESHOLD)
        runs = compare(bootstrap, source, args.runs, logs, args.variants)
        generator = []
        for target in () if args.no_generator else TARGETS:
            tries = []
            for n in range(1, args.runs + 1):
                tries.append(generator_rate(bootstrap, target, args.warmup, args.seconds,
                                            logs))
                progress(f"  run {n}/{args.runs} generator at {target:,.0f}/s: "
                         f"{tries[-1]['achieved']:,.0f}/s")
            generator.append(generator_median(tries))
    return summarize(source, runs, generator, CpuClock(os.getpid()).precise)


def main(argv: Sequence[str] | None = None) -> int:
    return report("bench.pipeline", parse_args(argv), benchmark, render)


if __name__ == "__main__":
    raise SystemExit(main())
