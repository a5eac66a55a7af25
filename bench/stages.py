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
import gc
import time
import zlib

from bench.topology import LocalRecord
from services.detector import kernels
from services.detector.rules import RuleSettings, SourceRules, TargetRules
from services.detector.stages import SourceStage, TargetStage
from services.generator.profiles import ScenarioProfile
from services.lifecycle import settle_heap

PARTITIONS = 4
START_MS = 1_700_000_000_000


def partition_of(key: bytes | None) -> int:
    return 0 if key is None else zlib.crc32(key) % PARTITIONS


def run(tps: int, seconds: int, batch: int, seed: int, novelty: bool = False
        ) -> dict[str, float]:
    profile = ScenarioProfile(seed=seed)
    records: list[LocalRecord] = []
    offsets = [0] * PARTITIONS
    for second in range(seconds):
        for key, value in profile.batch(tps, START_MS + second * 1000).transactions:
            partition = partition_of(key)
            records.append(LocalRecord("transactions", partition, offsets[partition], key,
                                       value))
            offsets[partition] += 1
    settings = RuleSettings()
    kernels.warm()  # compiled (or loaded from the cache) once, as a detector starts
    source = SourceStage(lambda: SourceRules(settings, novelty=novelty), "bench",
                         idle_after=float("inf"))
    target = TargetStage(lambda: TargetRules(settings, novelty=novelty), "bench",
                         upstream=PARTITIONS)
    written = [0] * PARTITIONS
    first = second_stage = 0.0
    judged = forward_bytes = verdict_bytes = 0
    gc.collect()
    for start in range(0, len(records), batch):
        began = time.process_time()
        forwards, _ = source.process(records[start:start + batch])
        onward = []
        for key, value, headers in forwards:
            forward_bytes += len(value)
            partition = partition_of(key)
            onward.append(LocalRecord("repartition", partition, written[partition], key,
                                      value, headers))
            written[partition] += 1
        marker = source.progress(0.0)
        if marker is not None:
            for partition in range(PARTITIONS):
                onward.append(LocalRecord("repartition", partition, written[partition],
                                          None, marker))
                written[partition] += 1
        middle = time.process_time()
        routed = target.process(onward)
        second_stage += time.process_time() - middle
        first += middle - began
        judged += len(routed.legit) + len(routed.fraud)
        verdict_bytes += sum(len(value) for _, value in routed.legit + routed.fraud)
    return {"records": len(records), "judged": judged,
            "first_stage_us": round(first / len(records) * 1e6, 2),
            "second_stage_us": round(second_stage / len(records) * 1e6, 2),
            "forward_bytes": round(forward_bytes / len(records)),
            "verdict_bytes": round(verdict_bytes / max(judged, 1))}


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
