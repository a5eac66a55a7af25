"""Console benchmark: is fraud-console responsive and light while the pipeline runs hot?

    python -m bench.console [--tps 10000 50000] [--seconds 10] [--runs 3] [--quick]
                            [--json PATH]

An embedded broker, a generator at ``--tps`` and a detector run as processes; the
console runs here, headless (Textual's test driver, 160x48), on its real Kafka feed.
While traffic flows, the threshold key (]) is pressed every 250 ms; between two
presses a row key (j, then k, in turn) moves the selection in the fraud feed.
Measured:

- key to screen: from the key press to the settings panel rendering the new
  requested threshold (each press asks for a new value, so it cannot be stale);
- row key to screen: from j or k to the fraud feed drawing the selection on its new
  row;
- snapshot cost: the time of each snapshot the feed worker hands the UI;
- CPU: this process's CPU time over the loaded window (feed thread and UI together)
  divided by wall time, in cores;
- the rate that actually flowed (legit + fraud records per second), since on a small
  machine the broker, generator and detector may not sustain the target.

Each figure is the median of ``--runs`` runs, each with a fresh broker.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from typing import Any

from bench.harness import (
    Offsets,
    fresh_topics,
    goal,
    goal_lines,
    median,
    percentile,
    processes,
    report,
    service_env,
    spawn,
    start_broker,
    table,
)
from tui.app import FraudConsole
from tui.feed import KafkaFeed
from tui.model import Snapshot, shown
from tui.widgets import FeedPane

RESULTS = Path(__file__).resolve().parent / "results" / "console.json"


class TimedFeed(KafkaFeed):
    """The real feed, timing every snapshot it makes."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.snapshot_ms: list[float] = []

    def snapshot(self) -> Snapshot:
        started = time.perf_counter()
        snapshot = super().snapshot()
        self.snapshot_ms.append((time.perf_counter() - started) * 1000)
        return snapshot


async def drive(bootstrap: str, topics: Any, group: str, seconds: float,
                offsets: Offsets) -> dict[str, Any]:
    feed = TimedFeed(bootstrap, topics, group)
    app = FraudConsole(feed, freeze_start_up=True)  # as the launcher runs it
    key_ms: list[float] = []
    row_ms: list[float] = []
    async with app.run_test(size=(160, 48)):
        settings = app.query_one("#settings")
        deadline = time.monotonic() + 60
        while not (app.last and app.last.applied("threshold") and app.last.rates.get("legit")):
            if time.monotonic() > deadline:
                raise TimeoutError("the console never saw the pipeline running")
            await asyncio.sleep(0.1)
        await asyncio.sleep(2.0)  # let the rates settle
        feed.snapshot_ms.clear()
        outputs = (topics.legit, topics.fraud)
        flowed_before, cpu_before, wall_before = offsets.total(*outputs), \
            time.process_time(), time.monotonic()
        threshold = float(app.last.applied("threshold"))
        fraud = app.query_one("#feed-fraud", FeedPane)
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            threshold += 50
            wanted = shown(threshold)
            started = time.perf_counter()
            # As a terminal delivers it: a key event into the app's queue, behind
            # whatever the feed worker posted.
            app.simulate_key("right_square_bracket")
            while wanted not in str(settings.render()):
                if time.perf_counter() - started > 5:
                    raise TimeoutError(f"threshold {wanted} never showed")
                await asyncio.sleep(0.001)
            key_ms.append((time.perf_counter() - started) * 1000)
            await asyncio.sleep(0.125)
            # The first j selects the newest row; then j and k step down and up.
            key, row = ("k", 0) if fraud.selected == 1 else ("j", 0 if fraud.selected is None
                                                                  else 1)
            if fraud.rows:
                started = time.perf_counter()
                app.simulate_key(key)
                while not (fraud.selected == row and "reverse" in
                           str(fraud.render().spans)):
                    if time.perf_counter() - started > 5:
                        raise TimeoutError(f"row {row} was never selected")
                    await asyncio.sleep(0.001)
                row_ms.append((time.perf_counter() - started) * 1000)
            await asyncio.sleep(0.125)
        wall = time.monotonic() - wall_before
        cpu = time.process_time() - cpu_before
        flowed = offsets.total(*outputs) - flowed_before
        latency = (app.last.latency_p50, app.last.latency_p99)
    return {
        "flowed_per_s": flowed / wall,
        "console_cores": cpu / wall,
        "key_to_screen_ms": {"median": median(key_ms), "p99": percentile(sorted(key_ms), 0.99),
                             "max": max(key_ms), "presses": len(key_ms)},
        "row_key_to_screen_ms": {"median": median(row_ms),
                                 "p99": percentile(sorted(row_ms), 0.99),
                                 "max": max(row_ms, default=float("nan")),
                                 "presses": len(row_ms)},
        "snapshot_ms": {"median": median(feed.snapshot_ms),
                        "p99": percentile(sorted(feed.snapshot_ms), 0.99),
                        "count": len(feed.snapshot_ms)},
        "latency_p50_p99_ms": latency,
    }


def measure(tps: float, seconds: float) -> dict[str, Any]:
    topics = fresh_topics("console")
    group = "bench-console-detectors"
    with processes() as started:
        bootstrap = start_broker(started)
        # The classic detector: the console is measured at rates the stateful one (a
        # few tens of thousands a second) does not reach.
        env = {**service_env(bootstrap, topics, group), "DETECTOR_RULES": "threshold"}
        spawn(started, "services.detector.service", [], env)
        spawn(started, "services.generator.service", ["--tps", str(tps), "--seed", "1"], env)
        offsets = Offsets(bootstrap)
        try:
            result = asyncio.run(drive(bootstrap, topics, group, seconds, offsets))
        finally:
            offsets.close()
    return {"target_tps": tps, **result}


def summarize(tps: float, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Each figure as the median of its runs; the runs themselves alongside."""

    def mid(path: tuple[str, ...]) -> float:
        values = []
        for run in runs:
            value: Any = run
            for key in path:
                value = value[key]
            values.append(value)
        return median(values)

    latencies = [r["latency_p50_p99_ms"] for r in runs if None not in r["latency_p50_p99_ms"]]
    return {
        "target_tps": tps,
        "runs": len(runs),
        "flowed_per_s": mid(("flowed_per_s",)),
        "console_cores": mid(("console_cores",)),
        "key_to_screen_ms": {key: mid(("key_to_screen_ms", key))
                             for key in ("median", "p99", "max", "presses")},
        "row_key_to_screen_ms": {key: mid(("row_key_to_screen_ms", key))
                                 for key in ("median", "p99", "max", "presses")},
        "snapshot_ms": {key: mid(("snapshot_ms", key)) for key in ("median", "p99", "count")},
        "latency_p50_p99_ms": [median([lat[i] for lat in latencies]) if latencies else None
                               for i in (0, 1)],
        "each_run": runs,
    }


def goals(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The console's goals, at 50,000 a second and above: under 100 ms from a key to
    the screen, under one core."""
    found = []
    for row in results:
        if row["target_tps"] >= 50_000:
            rate = f"{row['target_tps']:,.0f}/s"
            found += [goal(f"console key to screen p99 at {rate}",
                           row["key_to_screen_ms"]["p99"], 100.0, False, " ms"),
                      goal(f"console row key to screen p99 at {rate}",
                           row["row_key_to_screen_ms"]["p99"], 100.0, False, " ms"),
                      goal(f"console CPU at {rate}", row["console_cores"], 1.0, False,
                           " core")]
    return found


def render(results: list[dict[str, Any]]) -> str:
    runs = results[0]["runs"] if results else 0
    return (f"fraud-console under load (headless, 160x48; threshold key every 250 ms, "
            f"a row key between; "
            f"median of {runs} runs)\n\n" + table(
                ["target/s", "flowed/s", "console cores", "key→screen p50 / p99 / max ms",
                 "row key→screen p50 / p99 ms", "snapshot p50 / p99 ms",
                 "e2e latency p50 / p99 ms"],
                [[f"{r['target_tps']:,.0f}", f"{r['flowed_per_s']:,.0f}",
                  f"{r['console_cores']:.2f}",
                  "{median:.1f} / {p99:.1f} / {max:.1f}".format(**r["key_to_screen_ms"]),
                  "{median:.1f} / {p99:.1f}".format(**r["row_key_to_screen_ms"]),
                  "{median:.2f} / {p99:.2f}".format(**r["snapshot_ms"]),
                  " / ".join("–" if v is None else f"{v:.0f}"
                             for v in r["latency_p50_p99_ms"])]
                 for r in results]))


def benchmark(args: argparse.Namespace) -> dict[str, Any]:
    results = []
    for tps in args.tps:
        runs = []
        for n in range(1, args.runs + 1):
            runs.append(measure(tps, args.seconds))
            print(f"  {tps:,.0f}/s run {n}/{args.runs}: key→screen p99 "
                  f"{runs[-1]['key_to_screen_ms']['p99']:.1f} ms, row key "
                  f"{runs[-1]['row_key_to_screen_ms']['p99']:.1f} ms, "
                  f"{runs[-1]['console_cores']:.2f} cores", file=sys.stderr, flush=True)
        results.append(summarize(tps, runs))
    return {"rates": results, "goals": goals(results)}


def render_report(summary: dict[str, Any]) -> str:
    return "\n".join([render(summary["rates"]), "", *goal_lines(summary["goals"])])


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.console", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tps", type=float, nargs="+", default=[10_000.0, 50_000.0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--runs", type=int, default=3, help="runs per rate (default: 3)")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.quick:
        args.tps, args.seconds, args.runs = [5_000.0], 3.0, 1
    if args.runs < 1 or args.seconds <= 0:
        parser.error("--runs must be at least 1 and --seconds above 0")
    return args


def main(argv: list[str] | None = None) -> int:
    return report("bench.console", parse_args(argv), benchmark, render_report)


if __name__ == "__main__":
    raise SystemExit(main())
