"""The stateful core's cost in process, comparable across versions of the code: the
same records through the stages of whichever code is on the path.

``bench.stages`` measures the code it belongs to. To hold it against an older
version, write its records once, then replay them through each version's stages with
this script, which uses only what every version of the stages has had
(``SourceStage(rules, instance)``, ``TargetStage(rules, instance)``, ``process``) and
passes what a newer one takes besides (the upstream partitions to merge in event
time, kernels to compile first):

    .venv/bin/python bench/stages_replay.py --write /tmp/records.bin
    git worktree add /tmp/before ac41980
    (cd /tmp/before && PYTHONPATH=. /path/to/.venv/bin/python /path/to/bench/stages_replay.py \\
        --read /tmp/records.bin)
    .venv/bin/python bench/stages_replay.py --read /tmp/records.bin

Run the versions in turn, a few times each: on a shared machine single runs move by
a few µs a record.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib
import inspect
import pickle
import time
import zlib
from pathlib import Path
from typing import Any

PARTITIONS = 4
START_MS = 1_700_000_000_000


class Record:
    """What the stages read of a consumed record. (Its own, not ``bench.topology``'s:
    this runs in versions of the code that have no such module.)"""

    __slots__ = ("_headers", "_key", "_offset", "_partition", "_topic", "_value")

    def __init__(self, topic: str, partition: int, offset: int, key: bytes | None,
                 value: bytes, headers: Any = None) -> None:
        self._topic, self._partition, self._offset = topic, partition, offset
        self._key, self._value, self._headers = key, value, headers

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def key(self) -> bytes | None:
        return self._key

    def value(self) -> bytes:
        return self._value

    def headers(self) -> Any:
        return self._headers

    def timestamp(self) -> tuple[int, int]:
        return 1, 0


def partition_of(key: bytes | None) -> int:
    return 0 if key is None else zlib.crc32(key) % PARTITIONS


def scenario(tps: int, seconds: int, seed: int) -> list[tuple[int, int, bytes | None, bytes]]:
    """The generator's scenario traffic as ``(partition, offset, key, value)``, spread
    over ``PARTITIONS`` by key as the transactions topic has it."""
    from services.generator.profiles import ScenarioProfile

    profile = ScenarioProfile(seed=seed)
    out: list[tuple[int, int, bytes | None, bytes]] = []
    offsets = [0] * PARTITIONS
    for second in range(seconds):
        for key, value in profile.batch(tps, START_MS + second * 1000).transactions:
            partition = partition_of(key)
            out.append((partition, offsets[partition], key, value))
            offsets[partition] += 1
    return out


def drive(rows: list[tuple[int, int, bytes | None, bytes]], source: Any, target: Any,
          batch: int) -> dict[str, float]:
    """``rows`` through the first stage in batches, its forwards (framed a record a
    partition, where the code frames them) and progress markers (where it makes them)
    onto the repartition partitions, then through the second:
    CPU µs a record in each, records judged, and the mean size of a forward and of a
    verdict."""
    records = [Record("transactions", *row) for row in rows]
    progress = getattr(source, "progress", None)
    # The service frames a batch's forwards a record a partition, where the code has it.
    framed = getattr(source, "process_framed", None)
    written = [0] * PARTITIONS
    first = second = 0.0
    judged = forward_bytes = verdict_bytes = 0
    gc.collect()
    for start in range(0, len(records), batch):
        began = time.process_time()
        onward = []
        if framed is not None:
            for partition, value in framed(records[start:start + batch], PARTITIONS)[0]:
                forward_bytes += len(value)
                onward.append(Record("repartition", partition, written[partition],
                                     b"forwards", value))
                written[partition] += 1
        else:
            for key, value, headers in source.process(records[start:start + batch])[0]:
                forward_bytes += len(value)
                partition = partition_of(key)
                onward.append(Record("repartition", partition, written[partition], key,
                                     value, headers))
                written[partition] += 1
        marker = progress(0.0) if progress is not None else None
        if marker is not None:
            for partition in range(PARTITIONS):
                onward.append(Record("repartition", partition, written[partition], None,
                                     marker))
                written[partition] += 1
        middle = time.process_time()
        routed = target.process(onward)
        second += time.process_time() - middle
        first += middle - began
        judged += len(routed.legit) + len(routed.fraud)
        verdict_bytes += sum(len(value) for _, value in routed.legit + routed.fraud)
    n = len(records)
    return {"records": n, "judged": judged,
            "first_stage_us": round(first / n * 1e6, 2),
            "second_stage_us": round(second / n * 1e6, 2),
            "forward_bytes": round(forward_bytes / n),
            "verdict_bytes": round(verdict_bytes / max(judged, 1))}


def replay(path: Path, batch: int) -> dict[str, float]:
    """The records written at ``path`` through the stages of the code on the path,
    given what they take."""
    from services.detector import stages
    from services.detector.rules import RuleSettings, SourceRules, TargetRules
    from services.lifecycle import settle_heap

    for module in ("kernels", "distinct_columns"):  # compiled before the clock starts,
        with contextlib.suppress(ImportError):  # in a version that has them
            importlib.import_module(f"services.detector.{module}").warm()
    settle_heap()
    settings = RuleSettings()
    first_takes = inspect.signature(stages.SourceStage).parameters
    second_takes = inspect.signature(stages.TargetStage).parameters
    source = stages.SourceStage(lambda: SourceRules(settings), "bench", **(
        {"idle_after": float("inf")} if "idle_after" in first_takes else {}))
    target = stages.TargetStage(lambda: TargetRules(settings), "bench", **(
        {"upstream": PARTITIONS} if "upstream" in second_takes else {}))
    return drive(pickle.loads(path.read_bytes()), source, target, batch)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", type=Path, help="write the records here, then stop")
    parser.add_argument("--read", type=Path, help="replay the records written here")
    parser.add_argument("--tps", type=int, default=1000)
    parser.add_argument("--seconds", type=int, default=300)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--batch", type=int, default=1000)
    args = parser.parse_args()
    if args.write:
        rows = scenario(args.tps, args.seconds, args.seed)
        args.write.write_bytes(pickle.dumps(rows))
        print(f"{len(rows):,} records written")
    elif args.read:
        result = replay(args.read, args.batch)
        first, second = result["first_stage_us"], result["second_stage_us"]
        print(f"first stage {first:.2f} µs, second stage {second:.2f} µs, both "
              f"{first + second:.2f} µs of CPU a record ({result['judged']:,} judged)")
    else:
        parser.error("say --write PATH or --read PATH")


if __name__ == "__main__":
    main()
