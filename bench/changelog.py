"""What the changelogs cost as a live stream's windows fill: the state changes a
commit writes, minute after minute of event time.

The generator's scenario traffic at ``--tps`` goes through both stages in process,
in batches of ``BATCH`` (the first stage's forwards framed onto the repartition
partitions, as ``bench.stages`` drives them). After every second of event time the
changes since the last one are taken as a commit takes them (``PartitionedState
.changes``): the detector commits once a second, so at a live rate a key is written
at most once a second. For each minute of event time:

- the changelog records a second, and their bytes a transaction;
- the CPU, µs a transaction, of the two stages and of the changes;
- the bytes a written key, by store (the largest).

A store whose records grow minute after minute rewrites its whole window at each
change: fan-in's hour, say, grows for an hour.

    python -m bench.changelog [--tps 2000] [--minutes 10] [--seed 7] [--json PATH]
"""

from __future__ import annotations

import argparse
import collections
import json
import time
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from bench.stages_replay import PARTITIONS, START_MS, Record
from services.detector import distinct_columns, kernels
from services.detector.rules import RuleSettings, SourceRules, TargetRules, _RuleSet
from services.detector.stages import SourceStage, TargetStage
from services.generator.profiles import ScenarioProfile
from services.lifecycle import settle_heap

BATCH = 1000


class StoreBytes:
    """The bytes each store writes and the keys it writes them for, counted around
    the stores' ``changelog_at`` (the column stores, every one that grows), a long
    window's settled records (``take_settled``) included."""

    def __init__(self) -> None:
        self.bytes: collections.Counter[str] = collections.Counter()
        self.keys: collections.Counter[str] = collections.Counter()

    def watch(self, rules: _RuleSet) -> None:
        store: Any
        for name, store in rules.stores.items():
            changelog_at = getattr(store, "changelog_at", None)
            if changelog_at is None or getattr(store, "_counted", False):
                continue

            def counted(slots: Any, changelog_at: Any = changelog_at, name: str = name
                        ) -> Any:
                buf, ends = changelog_at(slots)
                self.bytes[name] += len(buf)
                self.keys[name] += int((np.diff(ends, prepend=0) > 0).sum())
                return buf, ends

            store.changelog_at = counted
            take_settled = getattr(store, "take_settled", None)
            if take_settled is not None:
                def settled(take_settled: Any = take_settled, name: str = name) -> Any:
                    records = take_settled()
                    self.bytes[name] += sum(len(value or b"") for _, value in records)
                    return records

                store.take_settled = settled
            store._counted = True

    def per_key(self) -> dict[str, float]:
        return {name: round(self.bytes[name] / max(self.keys[name], 1))
                for name, _ in self.bytes.most_common()}


def run(tps: int, minutes: int, seed: int) -> list[dict[str, Any]]:
    kernels.warm()
    distinct_columns.warm()
    settle_heap()
    settings = RuleSettings()
    source = SourceStage(lambda: SourceRules(settings, novelty=True), "bench",
                         idle_after=float("inf"))
    target = TargetStage(lambda: TargetRules(settings, novelty=True), "bench",
                         upstream=PARTITIONS)
    for partition in range(PARTITIONS):
        source.state.assign(partition, [])
        target.state.assign(partition, [])
    profile = ScenarioProfile(seed=seed)
    offsets, written = [0] * PARTITIONS, [0] * PARTITIONS
    stores = StoreBytes()
    minutes_out: list[dict[str, Any]] = []
    stage_cpu = change_cpu = 0.0
    records = change_records = change_bytes = 0
    for second in range(minutes * 60):
        batch = profile.batch(tps, START_MS + second * 1000).transactions
        taken = []
        for key, value in batch:
            partition = 0 if key is None else zlib.crc32(key) % PARTITIONS
            taken.append(Record("transactions", partition, offsets[partition], key, value))
            offsets[partition] += 1
        began = time.process_time()
        for start in range(0, len(taken), BATCH):
            onward = []
            for partition, value in source.process_framed(taken[start:start + BATCH],
                                                          PARTITIONS)[0]:
                onward.append(Record("repartition", partition, written[partition],
                                     b"forwards", value))
                written[partition] += 1
            marker = source.progress(0.0)
            if marker is not None:
                for partition in range(PARTITIONS):
                    onward.append(Record("repartition", partition, written[partition],
                                         None, marker))
                    written[partition] += 1
            target.process(onward)
        middle = time.process_time()
        for stage in (source, target):
            for rules in stage.state.partitions.values():
                stores.watch(rules)
            for _, _, change in stage.state.changes():
                change_records += 1
                change_bytes += len(change or b"")
        change_cpu += time.process_time() - middle
        stage_cpu += middle - began
        records += len(taken)
        if second % 60 == 59:
            minutes_out.append({
                "minute": second // 60 + 1,
                "records_per_s": round(change_records / 60),
                "bytes_per_tx": round(change_bytes / records),
                "stages_us": round(stage_cpu / records * 1e6, 2),
                "changes_us": round(change_cpu / records * 1e6, 2),
                "bytes_per_key": stores.per_key()})
            print(render_minute(minutes_out[-1]), flush=True)
            stores.bytes.clear()
            stores.keys.clear()
            stage_cpu = change_cpu = 0.0
            records = change_records = change_bytes = 0
    return minutes_out


def render_minute(row: dict[str, Any]) -> str:
    largest = ", ".join(f"{name} {size:,.0f}" for name, size in
                        list(row["bytes_per_key"].items())[:3])
    return (f"minute {row['minute']:>3}: {row['records_per_s']:>7,} records/s, "
            f"{row['bytes_per_tx']:>6,} B a transaction; stages {row['stages_us']:>6.2f} µs, "
            f"changes {row['changes_us']:>6.2f} µs a transaction; B a key: {largest}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tps", type=int, default=2000)
    parser.add_argument("--minutes", type=int, default=10)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    print(f"scenario traffic at {args.tps:,}/s, the changes taken once a second of "
          "event time")
    rows = run(args.tps, args.minutes, args.seed)
    if args.json:
        args.json.write_text(json.dumps({"tps": args.tps, "minutes": rows}, indent=1))


if __name__ == "__main__":
    main()
