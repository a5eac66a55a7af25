"""Detection on held-out fraud: families and background the rules were not tuned on.

The traffic (``bench.heldout_traffic``) has its own families, ranges and seed, never
the scenario generator's. Its records go through the detector's real stages in this
process (``SourceStage`` → the repartition topic, played by lists → ``TargetStage``),
spread over ``PARTITIONS`` partitions keyed by source as the transactions topic is,
delivered two ways:

- paced: small batches in timestamp order across partitions, as a live stream;
- at once: the warm-up paced, then the rest as a catch-up after downtime or a replay:
  each partition's records whole, the partitions one after the other, in big batches;
  the second stage reads its partitions likewise.

Event time is merged across partitions as the service does it (``event_time``): the
first stage sends its progress markers to every repartition partition, and the rules
alone give every transaction the same figures and verdict either way.

Two detectors each time: the rules alone (every rule, no model, no labels) and the
full detector (rules and the online model), which learns from every transaction's
label a batch after its verdict, the warm-up's families included. Only transactions
after the warm-up are counted. For each: recall and precision overall and per family
(a family's precision: its caught transactions against every false alarm), and false
alarms by background kind and by rule.

    python -m bench.heldout [--quick] [--seed 11] [--json bench/results/heldout.json]

Its goals, for the rules alone delivered paced: recall and precision at least 0.90
overall, recall at least 0.80 for every family.

About half a minute on two cores; ``--quick`` a few seconds.
"""

from __future__ import annotations

import argparse
import sys
import time
import zlib
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import orjson
from threadpoolctl import threadpool_limits

from bench.harness import goal, goal_lines, report
from bench.heldout_traffic import FAMILIES, Scale, Tx, generate
from bench.topology import LocalRecord
from services.detector.model import OnlineModel
from services.detector.repartition import FRAME_KEY, by_rows
from services.detector.routing import Routed
from services.detector.rules import RuleSettings, SourceRules, TargetRules
from services.detector.stages import SourceStage, TargetStage
from services.detector.stateful import InternalTopics, StatefulDetector

RESULTS = Path(__file__).resolve().parent / "results" / "heldout.json"
PARTITIONS = 4
TOPIC = "queueing.transactions"
REPARTITION = "heldout-by-target-repartition"
PACED_BATCH = 50
AT_ONCE_BATCH = 5000
DELIVERIES = ("paced", "at_once")
DETECTORS = ("rules", "full")


def partition_of(key: bytes) -> int:
    return zlib.crc32(key) % PARTITIONS


def records(txs: list[Tx]) -> list[LocalRecord]:
    """The transactions topic: each record in its source's partition, offsets per
    partition, in event-time order."""
    offsets = [0] * PARTITIONS
    out = []
    for i, tx in enumerate(txs):
        key = tx.source.encode()
        partition = partition_of(key)
        out.append(LocalRecord(TOPIC, partition, offsets[partition], key, orjson.dumps({
            "id": f"h{i}", "ts": tx.ts, "source": tx.source, "target": tx.target,
            "amount": tx.amount, "currency": "EUR"}), None, tx.ts))
        offsets[partition] += 1
    return out


class Tally:
    """Verdicts against the truth, for transactions after the warm-up."""

    def __init__(self) -> None:
        self.caught: Counter[str] = Counter()
        self.total: Counter[str] = Counter()
        self.legit = self.false_alarms = 0
        self.alarms_by_kind: Counter[str] = Counter()
        self.alarms_by_rule: Counter[str] = Counter()

    def add(self, tx: Tx, detection: dict[str, Any]) -> None:
        fraud = detection["fraud"]
        if tx.family is None:
            self.legit += 1
            if fraud:
                self.false_alarms += 1
                self.alarms_by_kind[tx.case] += 1
                self.alarms_by_rule.update(hit["rule"] for hit in detection["rules"])
        else:
            self.total[tx.family] += 1
            self.caught[tx.family] += fraud

    def report(self) -> dict[str, Any]:
        tp, fp = sum(self.caught.values()), self.false_alarms
        fraud = sum(self.total.values())

        def ratio(a: int, b: int) -> float:
            return round(a / b, 4) if b else 0.0

        return {
            "recall": ratio(tp, fraud), "precision": ratio(tp, tp + fp),
            "tp": tp, "fp": fp, "fn": fraud - tp, "legit": self.legit,
            "families": {family: {
                "transactions": self.total[family], "caught": self.caught[family],
                "recall": ratio(self.caught[family], self.total[family]),
                "precision": ratio(self.caught[family], self.caught[family] + fp)}
                for family in FAMILIES},
            "false_alarms_by_kind": dict(self.alarms_by_kind.most_common()),
            "false_alarms_by_rule": dict(self.alarms_by_rule.most_common()),
        }


class Detector:
    """Both stages, and for the full detector the model with its label join, trusted
    as the service trusts it (``StatefulDetector``: the model decides only while the
    labels of what it scored show it beating the rules)."""

    def __init__(self, full: bool, ts_of: dict[str, int]) -> None:
        settings = RuleSettings()
        # Event time as the service merges it (``event_time``): the second stage waits
        # for every source partition, told by the first stage's progress markers; no
        # partition goes idle before ``finish``.
        self.source = SourceStage(lambda: SourceRules(settings, novelty=full), "heldout",
                                  idle_after=float("inf"))
        self.event_time = [0.0]
        self.model: OnlineModel | None = None
        if full:
            self.model = OnlineModel(background=False, clock=lambda: self.event_time[0])
        self.target = TargetStage(lambda: TargetRules(settings, novelty=full), "heldout",
                                  model=self.model, upstream=PARTITIONS)
        self.stateful = StatefulDetector("unused:9092", TOPIC, InternalTopics.of("heldout"),
                                         self.source, self.target, settings)
        self.ts_of = ts_of
        self.waiting: list[list[bytes]] = []  # labels of judged batches, not yet given
        self.offsets = [0] * PARTITIONS

    def first(self, batch: list[LocalRecord]) -> dict[int, list[LocalRecord]]:
        """The first stage, and what it writes to each partition of the repartition
        topic."""
        framed, dead = self.source.process_framed(batch, PARTITIONS)  # as the service
        assert not dead, dead
        topic: dict[int, list[LocalRecord]] = {}
        for partition, value in framed:
            topic.setdefault(partition, []).append(LocalRecord(
                REPARTITION, partition, self.offsets[partition], FRAME_KEY, value))
            self.offsets[partition] += 1
        self._tell(topic, 0.0)
        return topic

    def finish(self) -> dict[int, list[LocalRecord]]:
        """The stream is over: every partition goes idle, and the markers that say so
        let the last records through."""
        topic: dict[int, list[LocalRecord]] = {}
        self._tell(topic, float("inf"))
        return topic

    def _tell(self, topic: dict[int, list[LocalRecord]], now: float) -> None:
        """The first stage's progress marker, to every repartition partition."""
        marker = self.source.progress(now)
        if marker is None:
            return
        for partition in range(PARTITIONS):
            topic.setdefault(partition, []).append(LocalRecord(
                REPARTITION, partition, self.offsets[partition], None, marker))
            self.offsets[partition] += 1

    def second(self, batch: list[LocalRecord], labels: dict[str, bytes]) -> Routed:
        """The second stage's verdicts; the model learns from the batch's labels one
        batch later, as production lets it."""
        routed = self.target.process(batch)
        if self.model is not None:
            ids = [orjson.loads(v)["id"] for _, v in routed.legit + routed.fraud]
            self.event_time[0] = max((self.ts_of[i] for i in ids), default=0) / 1000
            self.stateful.remember(routed)
            self.waiting.append([labels[i] for i in ids])
            if len(self.waiting) > 1:
                self.stateful.take_labels(self.waiting.pop(0))  # type: ignore[arg-type]
        return routed


def run(txs: list[Tx], scale: Scale, delivery: str, full: bool) -> dict[str, Any]:
    """One detector over the traffic, delivered one way: its report."""
    topic = records(txs)
    by_id = {f"h{i}": tx for i, tx in enumerate(txs)}
    labels = {ident: orjson.dumps({"id": ident, "ts": tx.ts, "fraud": tx.family is not None})
              for ident, tx in by_id.items()}
    detector = Detector(full, {ident: tx.ts for ident, tx in by_id.items()})
    tally = Tally()
    warmup_end = scale.warmup_end
    began = time.perf_counter()
    said: dict[str, Any] = {}  # every counted verdict's figures and rules

    def judge(routed: Routed) -> None:
        for _, value in routed.legit + routed.fraud:
            out = orjson.loads(value)
            tx = by_id[out["id"]]
            if tx.ts >= warmup_end:
                detection = out["detection"]
                tally.add(tx, detection)
                said[out["id"]] = (detection["fraud"], detection["features"],
                                   [hit["rule"] for hit in detection["rules"]])

    # The warm-up goes by live either way; at once, what follows it is a catch-up
    # (a detector back after downtime, or a replay): each partition whole in turn.
    live = topic if delivery == "paced" else \
        [r for r in topic if r.timestamp()[1] < warmup_end]
    for start in range(0, len(live), PACED_BATCH):
        arriving = detector.first(live[start:start + PACED_BATCH])
        judge(detector.second([r for p in sorted(arriving) for r in arriving[p]], labels))
    if delivery != "paced":
        behind = [r for r in topic if r.timestamp()[1] >= warmup_end]
        repartitioned: dict[int, list[LocalRecord]] = {}
        for partition in range(PARTITIONS):
            mine = [r for r in behind if r.partition() == partition]
            for start in range(0, len(mine), AT_ONCE_BATCH):
                for p, written in detector.first(mine[start:start + AT_ONCE_BATCH]).items():
                    repartitioned.setdefault(p, []).extend(written)
        for p, written in detector.finish().items():
            repartitioned.setdefault(p, []).extend(written)
        for partition in range(PARTITIONS):
            # As the service takes framed records: as many forwards at once as a batch.
            for run in by_rows(repartitioned.get(partition, []), AT_ONCE_BATCH):
                judge(detector.second(run, labels))
    else:
        last = detector.finish()
        judge(detector.second([r for p in sorted(last) for r in last[p]], labels))
    result = tally.report()
    result["seconds"] = round(time.perf_counter() - began, 1)
    result["verdicts"] = said
    if detector.model is not None:
        result["model_version"] = detector.model.status()["version"]
    return result


def bench(seed: int, scale: Scale) -> dict[str, Any]:
    txs = generate(seed, scale)
    counted = [tx for tx in txs if tx.ts >= scale.warmup_end]
    runs: dict[str, dict[str, Any]] = {}
    with threadpool_limits(1):
        for delivery in DELIVERIES:
            runs[delivery] = {name: run(txs, scale, delivery, name == "full")
                              for name in DETECTORS}
    # Event time: the rules alone give every transaction the same figures and verdict
    # paced and at once (with the model, the verdicts also follow what it learnt when).
    paced, at_once = (runs[delivery]["rules"].pop("verdicts") for delivery in DELIVERIES)
    differ = sum(paced[tx] != at_once.get(tx) for tx in paced)
    for detectors in runs.values():
        detectors["full"].pop("verdicts", None)
    paced = runs["paced"]["rules"]
    goals = [goal("rules alone: transactions judged otherwise at once than paced", differ,
                  1, False),goal("rules alone, paced: recall", paced["recall"], 0.90, True),
             goal("rules alone, paced: precision", paced["precision"], 0.90, True)]
    goals += [goal(f"rules alone, paced: {family} recall",
                   paced["families"][family]["recall"], 0.80, True) for family in FAMILIES]
    return {
        "seed": seed, "transactions": len(txs), "counted": len(counted),
        "warmup_h": scale.warmup_h, "measured_h": scale.measured_h,
        "partitions": PARTITIONS,
        "fraud_counted": dict(Counter(tx.family for tx in counted if tx.family)),
        "legit_counted": dict(Counter(tx.case for tx in counted if tx.family is None)),
        "runs": runs, "goals": goals,
    }


def render(result: dict[str, Any]) -> str:
    lines = [
        f"held-out traffic, seed {result['seed']}: {result['transactions']} transactions "
        f"over {result['warmup_h'] + result['measured_h']:g} h of event time, the first "
        f"{result['warmup_h']:g} h for warm-up; {result['counted']} counted over "
        f"{result['partitions']} partitions",
        "fraud counted: " + _listed(sorted(result["fraud_counted"].items())),
        "legit counted: " + _listed(sorted(result["legit_counted"].items())),
        f"{'delivery':8} {'detector':8} {'P':>6} {'R':>6}  " + "  ".join(
            f"{family[:16]:>16}" for family in FAMILIES) + "   (family: recall / precision)"]
    for delivery, detectors in result["runs"].items():
        for name, figures in detectors.items():
            families = figures["families"]
            lines.append(
                f"{delivery:8} {name:8} {figures['precision']:6.3f} {figures['recall']:6.3f}  "
                + "  ".join(f"{families[f]['recall']:7.3f}/{families[f]['precision']:<8.3f}"
                            for f in FAMILIES))
    for delivery, detectors in result["runs"].items():
        for name, figures in detectors.items():
            kinds = _listed(figures["false_alarms_by_kind"].items())
            rules = _listed(figures["false_alarms_by_rule"].items())
            lines.append(f"false alarms, {delivery} {name}: {figures['fp']} of "
                         f"{figures['legit']} (by kind: {kinds}; by rule: {rules})")
    return "\n".join(lines + goal_lines(result["goals"]))


def _listed(pairs: Iterable[tuple[str, int]]) -> str:
    return ", ".join(f"{k} {v}" for k, v in pairs) or "none"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--quick", action="store_true",
                        help="a small run (a few seconds), for a test")
    parser.add_argument("--json", type=Path, default=None,
                        help=f"where to write the results (default {RESULTS}, or "
                             "heldout-quick.json beside it with --quick)")
    args = parser.parse_args(argv)
    if args.json is None:
        args.json = RESULTS.with_name("heldout-quick.json") if args.quick else RESULTS
    return args


def benchmark(args: argparse.Namespace) -> dict[str, Any]:
    return bench(args.seed, Scale.quick() if args.quick else Scale())


def main(argv: Sequence[str] | None = None) -> int:
    return report("bench.heldout", parse_args(argv), benchmark, render)


if __name__ == "__main__":
    sys.exit(main())
