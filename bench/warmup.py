"""A detector's first minutes: quality while its model is young, on a fixed seed.

``bench/quality.py`` measures a warmed-up detector; this measures the start, where
a model that has learnt from a few hundred labels scores badly. The same labelled
traffic (the generator's scenario profile at ``--tps`` of event time) goes through
the service's own two stages (``stages``, held by a ``StatefulDetector``, every rule
and the model) in this process, twice:

- ``always``: the model decides from its first version (``routing.decide``);
- ``trusted``: as the detector runs, the model decides only while the labels of what
  it scored show it beating the rules (``trust.ModelTrust``).

Labels reach the detector one batch after their transactions' verdicts, as they
would live. Retrains run in line, on the traffic's event time, so a run is
reproducible. It prints precision, recall and F1 for each block of ``--block``
transactions, and when the model first decided.

    python -m bench.warmup [--tps 100] [--transactions 60000] [--block 5000]
                           [--seed 7] [--json bench/results/warmup.json]
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import orjson
from threadpoolctl import threadpool_limits

from bench.quality import BenchRecord, Tally, Traffic, traffic
from bench.topology import stages_in_process
from services.detector.stateful import StatefulDetector
from services.detector.trust import ModelTrust


class _AlwaysTrusted(ModelTrust):
    """The model decides from its first version, whatever its verdicts were worth."""

    def grade(self, *_: Any, **__: Any) -> None:
        self.trusted = True


def detector(trust: ModelTrust) -> tuple[StatefulDetector, list[float]]:
    """Both stages with every rule and a model on event time, trusted by ``trust``;
    and that clock."""
    clock = [0.0]
    stateful = stages_in_process(True, clock)
    stateful.trust = trust
    return stateful, clock


def run(data: Traffic, tps: int, block: int, batch: int = 1_000) -> dict[str, Any]:
    """Each policy's precision, recall and F1 per block, and when its model decided."""
    policies = {"always": _AlwaysTrusted(), "trusted": ModelTrust()}
    out: dict[str, Any] = {"tps": tps, "transactions": len(data.records), "block": block}
    for name, trust in policies.items():
        stateful, clock = detector(trust)
        tallies: list[Tally] = []
        waiting: list[list[bytes]] = []
        decided_at: int | None = None
        for start in range(0, len(data.records), batch):
            clock[0] = start / tps
            forwards, _ = stateful.source.process(data.records[start:start + batch])
            routed = stateful.target.process(  # the repartition topic's records
                [BenchRecord(key, value, offset, 0, headers)
                 for offset, (key, value, headers) in enumerate(forwards)])
            stateful.remember(routed)
            waiting.append(data.labels[start:start + batch])
            if len(waiting) > 1:
                stateful.take_labels(waiting.pop(0))  # type: ignore[arg-type]
            if decided_at is None and stateful.target.model_decides:
                decided_at = start + batch
            if start // block >= len(tallies):
                tallies.append(Tally(name))
            for _, value in routed.legit + routed.fraud:
                tallies[-1].add([value], data.truth)
        out[name] = {"decided_after": decided_at,
                     "blocks": [{key: tally.report()[key]
                                 for key in ("precision", "recall", "f1")}
                                for tally in tallies]}
    return out


def print_report(result: dict[str, Any]) -> None:
    print(f"\n{result['tps']} tx/s of event time, {result['transactions']:,} transactions: "
          f"precision / recall / F1 per {result['block']:,}")
    print(f"{'up to':>8}  {'model always decides':>22}  {'once it beats the rules':>24}")
    for n, (always, trusted) in enumerate(zip(result["always"]["blocks"],
                                              result["trusted"]["blocks"], strict=True)):
        print(f"{(n + 1) * result['block']:>8,}  " + "  ".join(
            f"{b['precision']:.2f} / {b['recall']:.2f} / {b['f1']:.2f}".rjust(width)
            for b, width in ((always, 22), (trusted, 24))))
    for name in ("always", "trusted"):
        print(f"{name}: the model decided from transaction {result[name]['decided_after']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tps", type=int, default=100)
    parser.add_argument("--transactions", type=int, default=60_000)
    parser.add_argument("--block", type=int, default=5_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    args = parser.parse_args()
    data = traffic(args.transactions, args.tps, args.seed, None)
    with threadpool_limits(1):
        result = run(data, args.tps, args.block)
    print_report(result)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_bytes(orjson.dumps({"seed": args.seed, **result},
                                           option=orjson.OPT_INDENT_2))


if __name__ == "__main__":
    main()
