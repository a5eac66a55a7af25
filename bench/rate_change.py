"""Precision after a tenfold change of rate, minute by minute: what the console's quality
panel shows once ``+`` has been pressed three times (100/s → 1,000/s).

The generator's scenario profile is stamped at ``--before`` transactions per second of
event time for ``--warmup-s`` seconds, then at ``--after`` for ``--minutes`` minutes,
and routed in this process, in batches of ``--batch``, by the rules alone and by the
full detector (rules and the online model, learning from each batch's labels a batch
later, as ``bench.quality`` runs it). Precision and recall are taken per 60 s window
of event time after the change, as the evaluator keeps them.

    python -m bench.rate_change [--seed 7] [--json bench/results/rate_change.json]

About two minutes on two cores.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import orjson
from threadpoolctl import threadpool_limits

from bench.quality import START_MS, BenchRecord
from services.detector.labels import LabelJoin
from services.detector.model import OnlineModel
from services.detector.routing import Router
from services.detector.rules import StatefulRules
from services.generator.profiles import ScenarioProfile


def stream(seed: int, before: int, after: int, warmup_s: int, minutes: int
           ) -> tuple[list[BenchRecord], list[bytes], dict[str, bool], int]:
    """Records, labels, the truth by id, and the event time of the change."""
    profile = ScenarioProfile(seed=seed)
    records: list[BenchRecord] = []
    labels: list[bytes] = []
    truth: dict[str, bool] = {}
    change = START_MS + warmup_s * 1000
    for second in range(warmup_s + minutes * 60):
        ts = START_MS + second * 1000
        batch = profile.batch(before if ts < change else after, ts)
        for (key, value), (_, label) in zip(batch.transactions, batch.labels, strict=True):
            records.append(BenchRecord(key, value, len(records), ts))
            labels.append(label)
            truth[orjson.loads(label)["id"]] = orjson.loads(label)["fraud"]
    return records, labels, truth, change


def run(seed: int, before: int, after: int, warmup_s: int, minutes: int,
        batch: int) -> dict[str, Any]:
    records, labels, truth, change = stream(seed, before, after, warmup_s, minutes)
    event_time = [0.0]
    model = OnlineModel(background=False, clock=lambda: event_time[0])
    routers = {"rules": Router("rules", rules=StatefulRules()),
               "full": Router("full", rules=StatefulRules(novelty=True), model=model)}
    join = LabelJoin()
    waiting: list[list[bytes]] = []
    # detector -> minute after the change -> [tp, fp, fn]
    counts: dict[str, dict[int, list[int]]] = {name: {} for name in routers}
    for start in range(0, len(records), batch):
        chunk = records[start:start + batch]
        event_time[0] = (chunk[-1].timestamp()[1] - START_MS) / 1000
        for name, router in routers.items():
            routed = router.route(chunk)
            if name == "full" and routed.features is not None:
                joined = join.remember(routed.features)
                model.learn(joined.matrix, joined.labels)
            for _, value in routed.legit + routed.fraud:
                tx = orjson.loads(value)
                if tx["ts"] < change:
                    continue
                minute = (tx["ts"] - change) // 60_000
                tally = counts[name].setdefault(minute, [0, 0, 0])
                fraud, flagged = truth[tx["id"]], tx["detection"]["fraud"]
                if flagged:
                    tally[0 if fraud else 1] += 1
                elif fraud:
                    tally[2] += 1
        waiting.append(labels[start:start + batch])
        if len(waiting) > 1:
            joined = join.labels(waiting.pop(0))
            model.learn(joined.matrix, joined.labels)
    series = {name: [{"minute": minute + 1,
                      "precision": round(tp / (tp + fp), 3) if tp + fp else None,
                      "recall": round(tp / (tp + fn), 3) if tp + fn else None,
                      "tp": tp, "fp": fp, "fn": fn}
                     for minute, (tp, fp, fn) in sorted(by_minute.items())]
              for name, by_minute in counts.items()}
    return {"seed": seed, "before_tps": before, "after_tps": after, "warmup_s": warmup_s,
            "series": series}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--before", type=int, default=100)
    parser.add_argument("--after", type=int, default=1000)
    parser.add_argument("--warmup-s", type=int, default=1500,
                        help="seconds of event time at the first rate")
    parser.add_argument("--minutes", type=int, default=5)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    args = parser.parse_args()
    with threadpool_limits(1):
        result = run(args.seed, args.before, args.after, args.warmup_s, args.minutes,
                     args.batch)
    print(f"\n{args.before}/s for {args.warmup_s} s, then {args.after}/s: per minute "
          "after the change, precision (recall)")
    for name, rows in result["series"].items():
        print(f"{name:6} " + "  ".join(
            f"{row['minute']}: {row['precision']} ({row['recall']})" for row in rows))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))


if __name__ == "__main__":
    main()
