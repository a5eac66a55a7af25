"""Pipeline benchmark on one embedded broker: the detector against a pass-through
baseline, and the generator's achieved rate.

    python -m bench.pipeline [--records 60000] [--runs 3] [--quick] [--json PATH]

Detector vs pass-through. One input topic is preloaded with generated transactions;
each run starts a fresh consumer group, so the process reads all of them. Measured:

- throughput, from the first output record to the last, by the timestamps the
  process's producer gave them (start-up and group join do not count);
- CPU time per record, from /proc: the process's user + system time between the
  moment its first output appears and the moment its last one does.

Pass-through and detector alternate, run after run, and every figure is a median,
so that a noisy machine moves both alike; ratios are what to compare. The records
per run stay below what the embedded broker keeps (~5 MB per partition): the
detector's outputs are twice the size of its inputs.

Generator. At each target rate it runs for a few seconds after a warm-up second;
the achieved rate is the growth of the topic's end offsets over that window.
"""

from __future__ import annotations

import argparse
import json
import time
import uuid
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from bench.harness import (
    Offsets,
    cpu_seconds,
    fresh_topics,
    median,
    preload,
    processes,
    service_env,
    spawn,
    start_broker,
    table,
    wait_until,
)

RESULTS = Path(__file__).resolve().parent / "results" / "pipeline.json"


def edge_timestamps(bootstrap: str, topics: list[str]) -> tuple[int, int]:
    """Timestamps (ms) of the first and the last record across ``topics``."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-edges",
                         "enable.auto.commit": False})
    first, last = None, None
    try:
        for topic in topics:
            partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
            for p in partitions:
                low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
                if high <= low:
                    continue
                for offset in (low, high - 1):
                    consumer.assign([TopicPartition(topic, p, offset)])
                    message = consumer.poll(10)
                    if message is None or message.error() is not None:
                        raise RuntimeError(f"cannot read {topic}[{p}]@{offset}")
                    ts = message.timestamp()[1]
                    first = ts if first is None else min(first, ts)
                    last = ts if last is None else max(last, ts)
    finally:
        consumer.close()
    if first is None or last is None:
        raise RuntimeError("no output records")
    return first, last


def run_once(bootstrap: str, kind: str, source: str, records: int) -> dict[str, float]:
    """One pass of ``kind`` ("passthrough" or "detector") over the preloaded input."""
    group = f"bench-{kind}-{uuid.uuid4().hex[:6]}"
    topics = fresh_topics(kind)
    if kind == "passthrough":
        module, args = "bench.passthrough", [bootstrap, source, topics.legit, group]
        outputs = [topics.legit]
        env = None
    else:
        module, args = "services.detector.service", []
        outputs = [topics.legit, topics.fraud, topics.dlq]
        env = service_env(bootstrap, topics, group)
        env["TRANSACTIONS_TOPIC"] = source
    offsets = Offsets(bootstrap)
    try:
        with processes() as started:
            process = spawn(started, module, args, env)
            # Start-up is idle time for the process: poll finely to catch its first output.
            wait_until(lambda: offsets.total(*outputs) > 0, 60, f"{kind} output", every=0.002)
            cpu_start = cpu_seconds(process.pid)
            wait_until(lambda: offsets.total(*outputs) >= records, 120,
                       f"{kind} to finish", every=0.05)
            cpu_end = cpu_seconds(process.pid)
            if process.poll() is not None:
                raise RuntimeError(f"{kind} exited early with {process.returncode}")
    finally:
        offsets.close()
    first, last = edge_timestamps(bootstrap, outputs[:2])
    seconds = max(last - first, 1) / 1000
    return {"msgs_per_s": (records - 1) / seconds,
            "cpu_us_per_msg": (cpu_end - cpu_start) / records * 1e6,
            "seconds": seconds}


def generator_rate(bootstrap: str, target: float, seconds: float) -> dict[str, float]:
    topics = fresh_topics(f"gen{int(target)}")
    offsets = Offsets(bootstrap)
    try:
        with processes() as started:
            process = spawn(started, "services.generator.service",
                            ["--tps", str(target), "--seed", "1"],
                            service_env(bootstrap, topics, "bench-unused"))
            wait_until(lambda: offsets.total(topics.transactions) > 0, 60, "generator output",
                       every=0.05)
            time.sleep(1.0)  # warm-up: connections, first batches
            n0, t0, c0 = offsets.total(topics.transactions), time.monotonic(), \
                cpu_seconds(process.pid)
            time.sleep(seconds)
            n1, t1, c1 = offsets.total(topics.transactions), time.monotonic(), \
                cpu_seconds(process.pid)
    finally:
        offsets.close()
    achieved = (n1 - n0) / (t1 - t0)
    return {"target": target, "achieved": achieved,
            "error_pct": (achieved - target) / target * 100, "cores": (c1 - c0) / (t1 - t0)}


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.pipeline", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=60_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=4.0,
                        help="measured seconds per generator target")
    parser.add_argument("--quick", action="store_true", help="a smoke run: small and once")
    parser.add_argument("--json", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.quick:
        args.records, args.runs, args.seconds = 10_000, 1, 2.0

    started_at = time.monotonic()
    with processes() as started:
        bootstrap = start_broker(started)
        source = fresh_topics("input").transactions
        size = preload(bootstrap, source, args.records)
        runs: dict[str, list[dict[str, float]]] = {"passthrough": [], "detector": []}
        for _ in range(args.runs):
            for kind in runs:
                runs[kind].append(run_once(bootstrap, source=source, kind=kind,
                                           records=args.records))
        generator = [generator_rate(bootstrap, target, args.seconds)
                     for target in (1_000.0, 10_000.0, 100_000.0)]

    summary: dict[str, Any] = {"records": args.records, "bytes_per_record": size / args.records,
                               "runs": args.runs}
    for kind, results in runs.items():
        summary[kind] = {key: median([r[key] for r in results]) for key in results[0]}
        summary[kind]["all_msgs_per_s"] = [round(r["msgs_per_s"]) for r in results]
    base, det = summary["passthrough"], summary["detector"]
    summary["throughput_ratio"] = det["msgs_per_s"] / base["msgs_per_s"]
    summary["cpu_efficiency_ratio"] = base["cpu_us_per_msg"] / det["cpu_us_per_msg"]
    summary["generator"] = generator
    summary["wall_seconds"] = time.monotonic() - started_at

    print(f"\nDetector vs pass-through: {args.records:,} records of "
          f"~{size / args.records:.0f} B, median of {args.runs} runs each\n")
    print(table(["", "msgs/s", "CPU µs/msg", "runs (msgs/s)"], [
        [kind, f"{summary[kind]['msgs_per_s']:,.0f}", f"{summary[kind]['cpu_us_per_msg']:.1f}",
         ", ".join(f"{v:,}" for v in summary[kind]["all_msgs_per_s"])] for kind in runs]))
    print(f"\nthroughput ratio detector/pass-through: {summary['throughput_ratio']:.2f}x"
          f" (goal >= 0.9x)")
    print(f"CPU efficiency pass-through/detector:   {summary['cpu_efficiency_ratio']:.2f}x")
    print("\nGenerator achieved rate\n")
    print(table(["target/s", "achieved/s", "error", "cores"], [
        [f"{g['target']:,.0f}", f"{g['achieved']:,.0f}", f"{g['error_pct']:+.2f} %",
         f"{g['cores']:.2f}"] for g in generator]))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(summary, indent=2))
    print(f"\n{summary['wall_seconds']:.0f} s; written to {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
