"""The stateful core's cost in process: both stages of the detector, every rule, no
model and no client, over the generator's scenario profile.

Records go over ``PARTITIONS`` partitions keyed by source, as the transactions topic
has them, through ``SourceStage``; its forwards and progress markers onto the
repartition partitions by target, played by lists; then through ``TargetStage``,
merged in event time as the service runs it. CPU time per record for each stage, in
batches of ``--batch``, as the detector consumes them (its kernels compiled, its
garbage collector tuned as it has them once started); and the mean size of what
each stage writes (a forward, a verdict), which the client then copies and sends.

    python -m bench.stages [--tps 1000] [--seconds 300] [--batch 1000] [--seed 7]
                           [--novelty]

``--novelty``: the rules with the model's figures too (counterparty novelty in the
first stage, the payee history in the second), as the detector runs them with a model.
"""

from __future__ import annotations

import argparse

from bench.stages_replay import PARTITIONS, drive, scenario
from services.detector import distinct_columns, kernels
from services.detector.rules import RuleSettings, SourceRules, TargetRules
from services.detector.stages import SourceStage, TargetStage
from services.lifecycle import settle_heap


def run(tps: int, seconds: int, batch: int, seed: int, novelty: bool = False
        ) -> dict[str, float]:
    rows = scenario(tps, seconds, seed)
    settings = RuleSettings()
    kernels.warm()  # compiled (or loaded from the cache) once, as a detector starts
    distinct_columns.warm()
    source = SourceStage(lambda: SourceRules(settings, novelty=novelty), "bench",
                         idle_after=float("inf"))
    target = TargetStage(lambda: TargetRules(settings, novelty=novelty), "bench",
                         upstream=PARTITIONS)
    return drive(rows, source, target, batch)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tps", type=int, default=1000)
    parser.add_argument("--seconds", type=int, default=300)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--novelty", action="store_true",
                        help="the model's figures too (counterparty novelty, payee history)")
    args = parser.parse_args()
    settle_heap()  # the collector tuned as the detector tunes it once it is set up
    result = run(args.tps, args.seconds, args.batch, args.seed, args.novelty)
    print(f"{result['records']:,} records ({result['judged']:,} judged before the last "
          f"wait for the watermark): first stage {result['first_stage_us']} µs, second "
          f"stage {result['second_stage_us']} µs of CPU a record; a forward "
          f"{result['forward_bytes']} B, a verdict {result['verdict_bytes']} B")


if __name__ == "__main__":
    main()
