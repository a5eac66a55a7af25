"""Quality through a tenfold change of rate, as the console's quality panel shows it.

The console starts the generator at 100 transactions a second, and the first thing
most people try is to raise it to 1,000. Every account then pays ten times as often
per minute of event time, which is exactly what a naive velocity rule calls a burst.
This runs the generator's scenario profile at ``--before`` per second for
``--warmup`` seconds of event time, then at ``--after`` per second for
``--minutes`` minutes, through the service's own two stages (every rule, and the
model learning from labels that arrive a second after their verdicts, trusted as the
detector trusts it) in this process, and through the rules alone. Every ``--step``
seconds it reports precision and recall over the last ``--window`` seconds of event
time, the evaluator's window, so each row is what the panel would read then.

    python -m bench.rate_change [--before 100] [--after 1000] [--warmup 60]
                                [--minutes 5] [--seed 7] [--json PATH]
"""

from __future__ import annotations

import argparse
from collections import deque
from pathlib import Path
from typing import Any

import orjson
from threadpoolctl import threadpool_limits

from bench.quality import START_MS, BenchRecord
from bench.topology import stages_in_process
from services.generator.profiles import ScenarioProfile


class Outcomes:
    """Each second's verdicts against the truth, kept for the evaluator's window."""

    def __init__(self, window: int) -> None:
        self.seconds: deque[tuple[int, int, int, int]] = deque(maxlen=window)

    def add(self, outputs: list[tuple[bytes | None, bytes]], truth: dict[str, bool]) -> None:
        tp = fp = fn = 0
        for _, value in outputs:
            tx = orjson.loads(value)
            fraud, said = truth[tx["id"]], tx["detection"]["fraud"]
            tp += fraud and said
            fp += said and not fraud
            fn += fraud and not said
        self.seconds.append((tp, fp, fn, len(outputs)))

    def figures(self) -> dict[str, float]:
        tp = sum(s[0] for s in self.seconds)
        fp = sum(s[1] for s in self.seconds)
        fn = sum(s[2] for s in self.seconds)
        return {"precision": round(tp / (tp + fp), 3) if tp + fp else 1.0,
                "recall": round(tp / (tp + fn), 3) if tp + fn else 1.0,
                "fraud": tp + fn}


def run(before: int, after: int, warmup: int, minutes: int, seed: int, window: int,
        step: int) -> dict[str, Any]:
    profile = ScenarioProfile(seed=seed)
    clock = [0.0]
    detectors = {"full": stages_in_process(True, clock),
                 "rules": stages_in_process(False, clock)}
    outcomes = {name: Outcomes(window) for name in detectors}
    rows: list[dict[str, Any]] = []
    waiting: list[bytes] = []  # labels, one second behind their verdicts
    offset = 0
    for second in range(warmup + minutes * 60):
        clock[0] = float(second)
        rate = before if second < warmup else after
        if second in (0, warmup):  # as the generator tells its profile
            profile.pace(rate, START_MS + second * 1000)
        batch = profile.batch(rate, START_MS + second * 1000)
        records = []
        for key, value in batch.transactions:
            records.append(BenchRecord(key, value, offset, START_MS + second * 1000))
            offset += 1
        truth = {label["id"]: bool(label["fraud"])
                 for label in (orjson.loads(value) for _, value in batch.labels)}
        for name, stateful in detectors.items():
            forwards, _ = stateful.source.process(records)
            routed = stateful.target.process(
                [BenchRecord(key, value, n, 0, headers)
                 for n, (key, value, headers) in enumerate(forwards)])
            stateful.remember(routed)
            if name == "full" and waiting:
                stateful.take_labels(waiting)  # type: ignore[arg-type]
            outcomes[name].add(routed.legit + routed.fraud, truth)
        waiting = [value for _, value in batch.labels]
        since = second + 1 - warmup
        if since % step == 0 and since >= -window:
            rows.append({"since_change_s": since, "rate": rate,
                         **{name: outcomes[name].figures() for name in detectors},
                         "model_decides": detectors["full"].target.model_decides})
    after_change = [row for row in rows if row["since_change_s"] > 0]
    return {"before": before, "after": after, "warmup_s": warmup, "window_s": window,
            "seed": seed, "rows": rows,
            "lowest_precision_after": {
                name: min(row[name]["precision"] for row in after_change)
                for name in detectors}}


def print_report(result: dict[str, Any]) -> None:
    print(f"\n{result['before']}/s for {result['warmup_s']} s, then {result['after']}/s: "
          f"precision / recall over the last {result['window_s']} s of event time")
    print(f"{'s after':>8}  {'full detector':>15}  {'rules alone':>13}  model decides")
    for row in result["rows"]:
        print(f"{row['since_change_s']:>8}  "
              f"{row['full']['precision']:.2f} / {row['full']['recall']:.2f}".ljust(27)
              + f"{row['rules']['precision']:.2f} / {row['rules']['recall']:.2f}".rjust(13)
              + f"  {'yes' if row['model_decides'] else 'no'}")
    lowest = result["lowest_precision_after"]
    print(f"lowest precision after the change: full {lowest['full']:.2f}, "
          f"rules alone {lowest['rules']:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=int, default=100)
    parser.add_argument("--after", type=int, default=1000)
    parser.add_argument("--warmup", type=int, default=60, help="seconds at --before")
    parser.add_argument("--minutes", type=int, default=5, help="minutes at --after")
    parser.add_argument("--window", type=int, default=60, help="the evaluator's window, s")
    parser.add_argument("--step", type=int, default=10, help="seconds between rows")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    args = parser.parse_args()
    with threadpool_limits(1):
        result = run(args.before, args.after, args.warmup, args.minutes, args.seed,
                     args.window, args.step)
    print_report(result)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))


if __name__ == "__main__":
    main()
