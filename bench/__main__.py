"""The whole benchmark in one command: every figure, every goal, one table.

    python -m bench [--quick] [--runs 3] [--only pipeline,latency,console,scaling]
                    [--report]

Each part runs as its own process on its own embedded broker, one after the other
(never two at once: they would share the cores they measure), and writes its JSON to
bench/results/PART.json:

- pipeline: the detector (threshold only; with exactly-once; every rule and the
  model) against two baselines in the same run, a raw client's pass-through
  (bench/raw.py) and the one that runs the detector's own loop, and the generator's
  achieved rate at 1k, 10k and 100k per second (bench/pipeline.py);
- latency: end to end, from the generator's ``ts`` to a reader of the output topics,
  at 1k and 10k per second (bench/latency.py);
- console: fraud-console's key-to-screen latency, snapshot cost and CPU while 50k
  per second flow (bench/console.py);
- scaling: throughput with 1, 2 and 4 partitions and detector instances
  (bench/scaling.py).

Every figure is a median of ``--runs`` runs. Each part checks its own goals; they are
gathered, with the machine they ran on, into bench/results/summary.json.
``--report`` skips the runs and reports from the results already written; ``--quick``
(a smoke run) writes to bench/results/quick/ instead.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import confluent_kafka

from bench.harness import ROOT, table

RESULTS = ROOT / "bench" / "results"
PARTS = ("pipeline", "latency", "console", "scaling")


def part_args(part: str, results: Path, quick: bool, runs: int | None) -> list[str]:
    args = ["--json", str(results / f"{part}.json")]
    if quick:
        args.append("--quick")
    if runs is not None:
        args += ["--runs", str(runs)]
    return args


def run_part(part: str, results: Path, quick: bool, runs: int | None) -> int:
    command = [sys.executable, "-m", f"bench.{part}", *part_args(part, results, quick, runs)]
    print(f"\n=== {' '.join(command[1:])}", flush=True)
    return subprocess.call(command, cwd=ROOT)


def load(results: Path, part: str) -> Any:
    path = results / f"{part}.json"
    return json.loads(path.read_text()) if path.exists() else None


def machine() -> dict[str, Any]:
    model = ""
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {"cpu": model, "cores": os.cpu_count(), "system": platform.platform(),
            "python": platform.python_version(),
            "confluent_kafka": confluent_kafka.__version__,
            "librdkafka": confluent_kafka.libversion()[0], "load": os.getloadavg()}


def summary(results: Path, parts: Sequence[str]) -> dict[str, Any]:
    goals: list[dict[str, Any]] = []
    missing = []
    for part in parts:
        result = load(results, part)
        if result is None:
            missing.append(part)
        else:
            goals += [{"part": part, **g} for g in result.get("goals", [])]
    return {"machine": machine(), "goals": goals, "missing": missing,
            "written": time.strftime("%Y-%m-%d %H:%M:%S %z")}


def render(report: dict[str, Any]) -> str:
    m = report["machine"]
    rows = [[g["part"], g["what"],
             "–" if g["measured"] is None else f"{g['measured']:.2f}{g['unit']}",
             f"{'>=' if g['higher_is_better'] else '<'} {g['bound']:g}{g['unit']}",
             "yes" if g["met"] else "NO"] for g in report["goals"]]
    lines = [f"Goals on {m['cores']} cores ({m['cpu'] or 'unknown CPU'}), Python "
             f"{m['python']}, librdkafka {m['librdkafka']}", "",
             table(["part", "figure", "measured", "goal", "met"], rows)]
    if report["missing"]:
        lines.append("\nno results yet for: " + ", ".join(report["missing"]))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a smoke run of every part")
    parser.add_argument("--runs", type=int, help="runs per figure (default: each part's)")
    parser.add_argument("--only", default=",".join(PARTS),
                        help="parts to run, comma-separated (default: %(default)s)")
    parser.add_argument("--report", action="store_true",
                        help="report from the results already written, run nothing")
    args = parser.parse_args(argv)
    parts = [part.strip() for part in args.only.split(",") if part.strip()]
    unknown = [part for part in parts if part not in PARTS]
    if unknown or (args.runs is not None and args.runs < 1):
        parser.error(f"--only takes {', '.join(PARTS)}; --runs at least 1")
    # A smoke run must not overwrite the figures of a real one.
    results = RESULTS / "quick" if args.quick else RESULTS
    results.mkdir(parents=True, exist_ok=True)
    failed = []
    if not args.report:
        for part in parts:
            if run_part(part, results, args.quick, args.runs) != 0:
                failed.append(part)
    report = summary(results, PARTS)
    report["failed"] = failed
    print("\n" + render(report))
    (results / "summary.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwritten to {results / 'summary.json'}")
    if failed:
        print("failed: " + ", ".join(failed), file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
