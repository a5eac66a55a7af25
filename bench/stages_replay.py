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
import gc
import inspect
import pickle
import time
import zlib
from pathlib import Path
from typing import Any

PARTITIONS = 4
START_MS = 1_700_000_000_000


class _Record:
    """What the stages read of a consumed record."""

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


def _partition_of(key: bytes | None) -> int:
    return 0 if key is None else zlib.crc32(key) % PARTITIONS


def write(path: Path, tps: int, seconds: int, seed: int) -> int:
    """The scenario records ``bench.stages`` makes, by partition and offset."""
    from services.generator.profiles import ScenarioProfile

    profile = ScenarioProfile(seed=seed)
    out: list[tuple[int, int, bytes | None, bytes]] = []
    offsets = [0] * PARTITIONS
    for second in range(seconds):
        for key, value in profile.batch(tps, START_MS + second * 1000).transactions:
            partition = _partition_of(key)
            out.append((partition, offsets[partition], key, value))
            offsets[partition] += 1
    path.write_bytes(pickle.dumps(out))
    return len(out)


def replay(path: Path, batch: int) -> tuple[float, float, int]:
    """CPU µs a record in each stage, and how many records were judged."""
    from services.detector import stages
    from services.detector.rules import RuleSettings, SourceRules, TargetRules
    from services.lifecycle import settle_heap

    try:  # kernels to compile before the clock starts, in a version that has them
        from services.detector import kernels
        kernels.warm()
    except ImportError:
        pass
    settle_heap()
    records = [_Record("transactions", *row) for row in pickle.loads(path.read_bytes())]
    settings = RuleSettings()
    first_takes = inspect.signature(stages.SourceStage).parameters
    second_takes = inspect.signature(stages.TargetStage).parameters
    source = stages.SourceStage(lambda: SourceRules(settings), "bench", **(
        {"idle_after": float("inf")} if "idle_after" in first_takes else {}))
    target = stages.TargetStage(lambda: TargetRules(settings), "bench", **(
        {"upstream": PARTITIONS} if "upstream" in second_takes else {}))
    progress = getattr(source, "progress", None)
    written = [0] * PARTITIONS
    first = second = 0.0
    judged = 0
    gc.collect()
    for start in range(0, len(records), batch):
        began = time.process_time()
        forwards, _ = source.process(records[start:start + batch])
        onward = []
        for key, value, headers in forwards:
            partition = _partition_of(key)
            onward.append(_Record("repartition", partition, written[partition], key, value,
                                  headers))
            written[partition] += 1
        marker = progress(0.0) if progress is not None else None
        if marker is not None:
            for partition in range(PARTITIONS):
                onward.append(_Record("repartition", partition, written[partition], None,
                                      marker))
                written[partition] += 1
        middle = time.process_time()
        routed = target.process(onward)
        second += time.process_time() - middle
        first += middle - began
        judged += len(routed.legit) + len(routed.fraud)
    n = len(records)
    return first / n * 1e6, second / n * 1e6, judged


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
        print(f"{write(args.write, args.tps, args.seconds, args.seed):,} records written")
    elif args.read:
        first, second, judged = replay(args.read, args.batch)
        print(f"first stage {first:.2f} µs, second stage {second:.2f} µs, both "
              f"{first + second:.2f} µs of CPU a record ({judged:,} judged)")
    else:
        parser.error("say --write PATH or --read PATH")


if __name__ == "__main__":
    main()
