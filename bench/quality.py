"""Detection quality on a fixed seed: the threshold alone, the rules, the full detector.

Labelled traffic comes from the generator's scenario profile (``ScenarioProfile``, the
default fraud mix) stamped at ``--tps`` transactions per second of event time, as the
generator stamps it live: the rate matters, since at a higher rate every account pays
more often per minute of event time. The same records go, in batches of ``--batch`` (the
detector's default consume size), through three ``Router`` instances in this process:

- threshold: the amount threshold alone (the stateless fast path);
- rules: the threshold and the stateful rules, any hit is fraud;
- full: the rules and the online model, the verdict from ``routing.decide``. The model
  learns only as production lets it: a batch's labels reach the ``LabelJoin`` after the
  batch has been routed (``--label-lag`` batches later), so no transaction is ever
  scored by a model that has seen its label. Retrains run in line (not in a
  worker process) so that a run is reproducible, on the traffic's event time.

The first ``--warmup`` transactions build state and train the model and are not
counted; on the rest it reports precision, recall and F1, recall per scenario, and
false alarms per rule (legit transactions whose verdict names the rule; a verdict may
name several). It also reports µs per transaction of the full detector's path (routing
with rules and model, plus the label join and online learning), on one BLAS thread, and
the learning's parts: the join, the online steps, and the retrains, which run in line
here and in a worker process of their own in the detector, off the stream's path.
These are the CPU time of the thread that runs them: on a machine shared with other
work, wall time would count the others' turns too.

    python -m bench.quality [--tps 100 1000] [--transactions 300000] [--warmup 150000]
                            [--seed 7] [--json bench/results/quality.json]

About 40 s a rate on two cores. What limits the figures is how well the detector
knows the population, not the scoring: the generator's 50,000 accounts pay every
eight minutes on average at 100/s, so after the default 300,000 transactions many
have paid only a few times and their usual payees are not known yet (every payment
of a young account goes to a "new" payee). A longer run (``--transactions 600000
--warmup 450000``) shows what a detector that knows its customers better achieves.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any, NamedTuple

import orjson
from threadpoolctl import threadpool_limits

from services.detector.labels import LabelJoin
from services.detector.model import OnlineModel
from services.detector.routing import Router
from services.detector.rules import StatefulRules
from services.generator.profiles import ScenarioProfile

START_MS = 1_700_000_000_000
TOPIC = "queueing.transactions"


class BenchRecord:
    """A consumed record, as much of one as the router (or a detector's stage) reads."""

    __slots__ = ("_headers", "_key", "_offset", "_ts", "_value")

    def __init__(self, key: bytes, value: bytes, offset: int, ts: int,
                 headers: list[tuple[str, bytes]] | None = None) -> None:
        self._key, self._value, self._offset, self._ts = key, value, offset, ts
        self._headers = headers

    def key(self) -> bytes:
        return self._key

    def value(self) -> bytes:
        return self._value

    def topic(self) -> str:
        return TOPIC

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return self._offset

    def timestamp(self) -> tuple[int, int]:
        return (1, self._ts)

    def headers(self) -> list[tuple[str, bytes]] | None:
        return self._headers


class Traffic(NamedTuple):
    records: list[BenchRecord]
    labels: list[bytes]  # the labels topic's values, in the same order
    truth: dict[str, str | None]  # id -> scenario (None: everyday)


def traffic(transactions: int, tps: int, seed: int, fraud_rate: float | None) -> Traffic:
    """``transactions`` of the scenario profile, ``tps`` per second of event time."""
    profile = ScenarioProfile(seed=seed) if fraud_rate is None else \
        ScenarioProfile(seed=seed, fraud_rate=fraud_rate)
    records: list[BenchRecord] = []
    labels: list[bytes] = []
    truth: dict[str, str | None] = {}
    ts = START_MS
    profile.pace(tps, ts)  # as the generator tells it its rate
    while len(records) < transactions:
        batch = profile.batch(tps, ts)
        for (key, value), (_, label) in zip(batch.transactions, batch.labels, strict=True):
            records.append(BenchRecord(key, value, len(records), ts))
            labels.append(label)
            parsed = orjson.loads(label)
            truth[parsed["id"]] = parsed["scenario"]
        ts += 1000
    return Traffic(records, labels, truth)


class Tally:
    """Verdicts against the truth, after the warm-up."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.tp = self.fp = self.fn = self.tn = 0
        self.caught: Counter[str] = Counter()
        self.total: Counter[str] = Counter()
        self.false_alarms: Counter[str] = Counter()  # by rule named in the verdict

    def add(self, outputs: Iterable[bytes], truth: dict[str, str | None]) -> None:
        for value in outputs:
            tx = orjson.loads(value)
            detection = tx["detection"]
            scenario = truth[tx["id"]]
            fraud = detection["fraud"]
            if scenario is None:
                if fraud:
                    self.fp += 1
                    self.false_alarms.update(hit["rule"] for hit in detection["rules"])
                else:
                    self.tn += 1
            else:
                self.total[scenario] += 1
                if fraud:
                    self.tp += 1
                    self.caught[scenario] += 1
                else:
                    self.fn += 1

    def report(self) -> dict[str, Any]:
        precision = self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0
        recall = self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        return {
            "precision": round(precision, 4), "recall": round(recall, 4), "f1": round(f1, 4),
            "tp": self.tp, "fp": self.fp, "fn": self.fn, "tn": self.tn,
            "recall_by_scenario": {name: round(self.caught[name] / self.total[name], 4)
                                   for name in sorted(self.total)},
            "fraud_by_scenario": dict(sorted(self.total.items())),
            "false_alarms_by_rule": dict(self.false_alarms.most_common()),
        }


def run(data: Traffic, tps: int, batch: int, warmup: int, label_lag: int,
        keep: list[tuple[str | None, dict[str, Any]]] | None = None) -> dict[str, Any]:
    """The three detectors over the same records; their reports and the cost. With
    ``keep``, the full detector's counted ``(scenario, detection)`` pairs go there."""
    threshold = Router("bench-threshold")
    rules = Router("bench-rules", rules=StatefulRules())
    # The model's clock is the traffic's event time, so that it retrains as often as
    # it would live at ``tps`` (at most every ``min_interval`` seconds).
    event_time = [0.0]
    model = OnlineModel(background=False, clock=lambda: event_time[0])
    full = Router("bench-full", rules=StatefulRules(novelty=True), model=model)
    join = LabelJoin()
    tallies = {name: Tally(name) for name in ("threshold", "rules", "full")}
    route_s = learn_s = join_s = 0.0
    # Retrains run in line here (reproducible); in the detector a worker process of its
    # own runs them, off the stream's path: their time is reported apart.
    retrain_s = [0.0]
    retrain = model.retrain

    def timed_retrain() -> bool:
        began = time.thread_time()
        try:
            return retrain()
        finally:
            retrain_s[0] += time.thread_time() - began

    model.retrain = timed_retrain  # type: ignore[method-assign]
    counted = 0
    waiting: list[list[bytes]] = []  # labels of routed batches, not yet delivered
    for start in range(0, len(data.records), batch):
        records = data.records[start:start + batch]
        event_time[0] = start / tps
        outputs = {"threshold": threshold.route(records), "rules": rules.route(records)}
        began = time.thread_time()
        routed = full.route(records)
        routed_at = time.thread_time()
        retrained_before, joining = retrain_s[0], 0.0
        if routed.features is not None:
            joined = join.remember(routed.features)
            joining += time.thread_time() - routed_at
            model.learn(joined.matrix, joined.labels)
        waiting.append(data.labels[start:start + batch])
        if len(waiting) > label_lag:
            joining_at = time.thread_time()
            joined = join.labels(waiting.pop(0))
            joining += time.thread_time() - joining_at
            model.learn(joined.matrix, joined.labels)
        learnt_at = time.thread_time()
        outputs["full"] = routed
        if start >= warmup:
            route_s += routed_at - began
            learn_s += learnt_at - routed_at
            join_s += joining
            counted += len(records)
            for name, out in outputs.items():
                tallies[name].add((v for _, v in out.fraud), data.truth)
                tallies[name].add((v for _, v in out.legit), data.truth)
            if keep is not None:
                for _, value in routed.fraud + routed.legit:
                    tx = orjson.loads(value)
                    keep.append((data.truth[tx["id"]], tx["detection"]))
        else:
            retrain_s[0] = retrained_before  # only the counted part's retrains
    return {
        "tps": tps, "transactions": len(data.records), "warmup": warmup,
        "counted": counted, "fraud_counted": tallies["full"].tp + tallies["full"].fn,
        "full_route_us_per_tx": round(route_s / max(counted, 1) * 1e6, 1),
        "full_learn_us_per_tx": round(learn_s / max(counted, 1) * 1e6, 1),
        # Its parts: the label join, the online steps, the retrains (in line here).
        "full_join_us_per_tx": round(join_s / max(counted, 1) * 1e6, 1),
        "full_online_us_per_tx": round(
            (learn_s - join_s - retrain_s[0]) / max(counted, 1) * 1e6, 1),
        "full_retrain_us_per_tx": round(retrain_s[0] / max(counted, 1) * 1e6, 1),
        "model": model.status(),
        "detectors": {name: tally.report() for name, tally in tallies.items()},
    }


def print_report(result: dict[str, Any]) -> None:
    print(f"\n{result['tps']} tx/s of event time: {result['transactions']} transactions, "
          f"the first {result['warmup']} for warm-up; {result['counted']} counted, "
          f"{result['fraud_counted']} fraud. Full detector: routing "
          f"{result['full_route_us_per_tx']:.1f} µs/tx, label join and learning "
          f"{result['full_learn_us_per_tx']:.1f} µs/tx (join "
          f"{result['full_join_us_per_tx']:.1f}, online steps "
          f"{result['full_online_us_per_tx']:.1f}, retrains in line "
          f"{result['full_retrain_us_per_tx']:.1f}: in the detector a worker process "
          f"runs them), model version {result['model']['version']}")
    detectors = result["detectors"]
    scenarios = sorted(next(iter(detectors.values()))["recall_by_scenario"])
    head = f"{'detector':10} {'P':>6} {'R':>6} {'F1':>6}  " + " ".join(
        f"{name[:14]:>14}" for name in scenarios)
    print(head)
    for name, report in detectors.items():
        print(f"{name:10} {report['precision']:6.3f} {report['recall']:6.3f} "
              f"{report['f1']:6.3f}  " + " ".join(
                  f"{report['recall_by_scenario'][s]:14.3f}" for s in scenarios))
    counts = result["detectors"]["full"]["fraud_by_scenario"]
    print(f"{'(fraud tx)':31} " + " ".join(f"{counts[s]:14d}" for s in scenarios))
    for name, report in detectors.items():
        alarms = ", ".join(f"{rule} {n}" for rule, n in report["false_alarms_by_rule"].items())
        print(f"false alarms, {name}: {report['fp']} ({alarms or 'none'})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tps", type=int, nargs="+", default=[100, 1000],
                        help="event-time rates to run at, transactions per second")
    parser.add_argument("--transactions", type=int, default=300_000)
    parser.add_argument("--warmup", type=int, default=150_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--fraud-rate", type=float, default=None,
                        help="share of fraud (default: the generator's)")
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--label-lag", type=int, default=1,
                        help="batches between a batch's verdicts and its labels")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    args = parser.parse_args()

    results = []
    for tps in args.tps:
        began = time.perf_counter()
        data = traffic(args.transactions, tps, args.seed, args.fraud_rate)
        with threadpool_limits(1):
            result = run(data, tps, args.batch, args.warmup, args.label_lag)
        result["seconds"] = round(time.perf_counter() - began, 1)
        print_report(result)
        results.append(result)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_bytes(orjson.dumps({"seed": args.seed, "runs": results},
                                           option=orjson.OPT_INDENT_2))


if __name__ == "__main__":
    main()
