"""Console benchmark: is fraud-console responsive and light while the pipeline runs hot?

    python -m bench.console [--tps 50000] [--seconds 10] [--quick] [--json PATH]

An embedded broker, a generator at ``--tps`` and a detector run as processes; the
console runs here, headless (Textual's test driver, 160x48), on its real Kafka feed.
While traffic flows, the threshold key (]) is pressed every 250 ms. Measured:

- key to screen: from the key press to the settings panel rendering the new
  requested threshold (each press asks for a new value, so it cannot be stale);
- snapshot cost: the time of each snapshot the feed worker hands the UI;
- CPU: this process's CPU time over the loaded window (feed thread and UI together)
  divided by wall time, in cores;
- the rate that actually flowed (legit + fraud records per second), since on a small
  machine the broker, generator and detector may not sustain the target.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path
from typing import Any

from bench.harness import (
    Offsets,
    fresh_topics,
    median,
    processes,
    service_env,
    spawn,
    start_broker,
    table,
)
from tui.app import FraudConsole
from tui.feed import KafkaFeed
from tui.model import Snapshot, shown

RESULTS = Path(__file__).resolve().parent / "results" / "console.json"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


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
    app = FraudConsole(feed)
    key_ms: list[float] = []
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
            await asyncio.sleep(0.25)
        wall = time.monotonic() - wall_before
        cpu = time.process_time() - cpu_before
        flowed = offsets.total(*outputs) - flowed_before
        latency = (app.last.latency_p50, app.last.latency_p99)
    return {
        "flowed_per_s": flowed / wall,
        "console_cores": cpu / wall,
        "key_to_screen_ms": {"median": median(key_ms), "p99": percentile(key_ms, 0.99),
                             "max": max(key_ms), "presses": len(key_ms)},
        "snapshot_ms": {"median": median(feed.snapshot_ms),
                        "p99": percentile(feed.snapshot_ms, 0.99),
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


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.console", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tps", type=float, nargs="+", default=[10_000.0, 50_000.0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.quick:
        args.tps, args.seconds = [5_000.0], 3.0
    results = [measure(tps, args.seconds) for tps in args.tps]
    print("\nfraud-console under load (headless, 160x48; threshold key every 250 ms)\n")
    print(table(
        ["target/s", "flowed/s", "console cores", "key→screen p50 / p99 / max ms",
         "snapshot p50 / p99 ms", "e2e latency p50 / p99 ms"],
        [[f"{r['target_tps']:,.0f}", f"{r['flowed_per_s']:,.0f}", f"{r['console_cores']:.2f}",
          "{median:.1f} / {p99:.1f} / {max:.1f}".format(**r["key_to_screen_ms"]),
          "{median:.2f} / {p99:.2f}".format(**r["snapshot_ms"]),
          " / ".join("–" if v is None else f"{v:.0f}" for v in r["latency_p50_p99_ms"])]
         for r in results]))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2))
    print(f"\nwritten to {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
