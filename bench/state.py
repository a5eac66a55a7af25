"""The stateful core's state for many accounts: its memory, its changelog, and how
long a restart takes to read it back.

Every account pays a few payees of its own, again and again: shops mostly (a few of
them paid by thousands, the fan-in rule's busiest targets), other accounts now and
then; a tenth of the payments are tiny (the card-testing rule keeps those). The
records go through the detector's own rules in process (``SourceRules`` and
``TargetRules``, the model's figures too), each account's name decoded anew for
every record as the stages decode it. Then:

- memory: what the state adds to the process's resident set, MiB;
- changelog: every ``COMMIT_BATCHES`` batches, the changes since the last commit are
  taken as the detector's commits take them (``encoded_changes``), their records
  written to a file rather than kept; the CPU to encode them, µs a record over every
  commit's records. The changelog a restart reads is those records compacted by key
  (the newest wins, as Kafka's compaction keeps them, in the order of their newest
  write): its records and their mean size;
- restore: a fresh process reads the changelog back (``PartitionedState.assign``:
  decoding and applying every record), the time for each stage and what the
  restored state adds to its resident set; then, for ``--broker-accounts`` accounts
  (the embedded broker is slow for millions), the same through the embedded broker,
  reading included.

    python -m bench.state [--accounts 1000000] [--uncapped] [--broker-accounts 20000]

By default the stores keep the accounts their caps allow (``max_accounts``), as the
detector runs; with ``--uncapped`` every store keeps every account. Goals (with
``--uncapped``, for 1,000,000 accounts): the state under 1 GiB, a restart's restore
under 30 s.
"""

from __future__ import annotations

import argparse
import ast
import gc
import os
import pickle
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from bench.harness import ROOT, goal, goal_lines, processes, report, start_broker, table
from services import kafka
from services.detector import distinct_columns, kernels
from services.detector.event_time import SourceClock
from services.detector.rules import RuleSettings, SourceRules, TargetRules
from services.detector.stages import PartitionedState

BATCH = 1000  # records a batch, as the first stage takes them
COMMIT_BATCHES = 10  # batches between two commits, each writing the changes since the last
STAGES = ("source", "target")
START_MS = 1_700_000_000_000
PAYMENTS = 3  # each account's payments, on average
PAYEES = 3  # each account's own payees
SHOPS = 50  # accounts per shop
MEMORY_GOAL_MIB = 1024.0
RESTORE_GOAL_S = 30.0
Changelog = list[tuple[bytes, bytes | None]]
_restored: list[Any] = []


def rss_mib() -> float:
    """The process's resident set now, MiB."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def names(count: int, prefix: str) -> list[bytes]:
    return [f"{prefix}{i:011d}".encode() for i in range(count)]


def rules_for(accounts: int, uncapped: bool) -> tuple[SourceRules, TargetRules]:
    settings = RuleSettings()
    source, target = SourceRules(settings, novelty=True), TargetRules(settings, novelty=True)
    if uncapped:
        for store in [*source.stores.values(), *target.stores.values()]:
            if hasattr(store, "max_accounts"):
                store.max_accounts = 2 * accounts  # type: ignore[attr-defined]
    return source, target


@dataclass
class Built:
    """The rules after every account's payments, and what their commits wrote."""

    source: SourceRules
    target: TargetRules
    mib: float  # what the state adds to the resident set
    payments: int
    written: dict[str, int]  # records every commit of each stage wrote
    encode_s: dict[str, float]  # the CPU seconds encoding them took


def build(accounts: int, tps: int, uncapped: bool, seed: int, log: IO[bytes]) -> Built:
    """Every account's payments through the rules, the changes taken every
    ``COMMIT_BATCHES`` batches and at the end, each commit's records pickled to ``log``
    (``(stage, records)``), as a detector's commits write them to the changelog."""
    rng = np.random.default_rng(seed)
    shops = max(accounts // SHOPS, 1)
    who = names(accounts, "A")
    shop_names = names(shops, "S")
    # Each account's payees: a shop two times in three, another account else. A shop's
    # popularity falls as its rank's square root, so the busiest are paid by
    # thousands an hour (for a million accounts) and most by a few dozen.
    weights = 1.0 / np.sqrt(np.arange(1, shops + 1))
    popular = rng.choice(shops, (accounts, PAYEES), p=weights / weights.sum())
    peers = rng.integers(0, accounts, (accounts, PAYEES))
    is_shop = rng.random((accounts, PAYEES)) < 2 / 3
    payees = np.where(is_shop, popular, shops + peers)
    habit = rng.lognormal(3.5, 1.0, accounts)  # each account's usual amount
    # Every account pays once at least, ``PAYMENTS`` times on average, in a random order.
    sources = rng.permutation(np.repeat(np.arange(accounts),
                                        rng.poisson(PAYMENTS - 1, accounts) + 1))
    picks = rng.integers(0, PAYEES, len(sources))
    tiny = rng.random(len(sources)) < 0.1
    amounts = np.where(tiny, rng.uniform(1.0, 10.0, len(sources)),
                       habit[sources] * rng.lognormal(0.0, 0.3, len(sources))).round(2)
    source_rules, target_rules = rules_for(accounts, uncapped)
    staged: dict[str, SourceRules | TargetRules] = {"source": source_rules,
                                                   "target": target_rules}
    written = dict.fromkeys(STAGES, 0)
    encode_s = dict.fromkeys(STAGES, 0.0)

    def commit() -> None:
        for stage, rules in staged.items():
            records, seconds = encode(rules)
            pickle.dump((stage, records), log, pickle.HIGHEST_PROTOCOL)
            written[stage] += len(records)
            encode_s[stage] += seconds

    gc.collect()
    before = rss_mib()
    for number, start in enumerate(range(0, len(sources), BATCH), 1):
        batch = range(start, min(start + BATCH, len(sources)))
        times = [START_MS + i * 1000 // tps for i in batch]
        # Fresh strings, as the stages decode each record's.
        payers = [who[int(sources[i])].decode() for i in batch]
        paid = [int(payees[int(sources[i]), picks[i]]) for i in batch]
        targets = [(shop_names[j] if j < shops else who[j - shops]).decode() for j in paid]
        judged = source_rules.evaluate_batch(payers, targets, amounts[start:batch.stop].tolist(),
                                             times)
        # A batch at once, as the second stage hands them over (each record's order its
        # time): the same state as one record at a time.
        target_rules.evaluate_batch(targets, payers, times, [hits for hits, _ in judged],
                                    [features for _, features in judged], times)
        if number % COMMIT_BATCHES == 0:
            commit()
    commit()  # what the last batches changed
    log.flush()
    gc.collect()
    return Built(source_rules, target_rules, rss_mib() - before, len(sources), written,
                 encode_s)


def commits(log: IO[bytes]) -> Iterator[tuple[str, Changelog]]:
    """The ``(stage, records)`` of every commit ``build`` wrote to ``log``, in order."""
    log.seek(0)
    while True:
        try:
            yield pickle.load(log)
        except EOFError:
            return


def compacted(log: IO[bytes]) -> dict[str, Changelog]:
    """Each stage's changelog as compaction leaves it: the newest record of each key
    (tombstones too, kept for a while after), in the order of those records."""
    newest: dict[str, dict[bytes, bytes | None]] = {stage: {} for stage in STAGES}
    for stage, records in commits(log):
        held = newest[stage]
        for key, value in records:
            held.pop(key, None)  # moved to where its newest record is
            held[key] = value
    return {stage: list(held.items()) for stage, held in newest.items()}


def encode(rules: SourceRules | TargetRules) -> tuple[Changelog, float]:
    """The rules' changes since the last commit as changelog records, and the CPU
    seconds it took."""
    began = time.process_time()
    records = rules.encoded_changes()
    return records, time.process_time() - began


def restore_here(stage: str, records: Changelog, accounts: int, uncapped: bool
                 ) -> tuple[float, int]:
    """Seconds to read ``records`` back into fresh rules of ``stage``, and the keys."""
    source, target = rules_for(accounts, uncapped)
    rules: Any = source if stage == "source" else target
    state: PartitionedState[Any, Any] = PartitionedState(lambda: rules,
                                                         lambda: SourceClock(0.0))
    began = time.perf_counter()
    applied = state.assign(0, records)
    _restored.append(state)  # held, so that the resident set counts it
    return time.perf_counter() - began, applied


def child(path: str, accounts: int, uncapped: bool) -> None:
    """A restarted process: both changelogs read back; its figures as one line."""
    with open(path, "rb") as file:
        logs = pickle.load(file)
    # The rules' modules imported (numba, LLVM, SciPy: some 110 MiB) before the state is
    # measured, as ``build`` has them, and the kernels compiled or loaded, as a detector
    # does before it takes partitions (``stateful``).
    rules_for(accounts, uncapped)
    kernels.warm()
    distinct_columns.warm()
    gc.collect()
    before = rss_mib()
    out: dict[str, float] = {}
    for stage in STAGES:
        seconds, _ = restore_here(stage, logs[stage], accounts, uncapped)
        out[f"{stage}_restore_s"] = round(seconds, 2)
    gc.collect()
    out["restored_mib"] = round(rss_mib() - before, 1)
    print(repr(out))


def changelogs(accounts: int, tps: int, uncapped: bool, seed: int
               ) -> tuple[Built, dict[str, Changelog]]:
    """``build``, and each stage's changelog compacted from its commits' records."""
    with tempfile.TemporaryFile(suffix=".commits") as log:
        built = build(accounts, tps, uncapped, seed, log)
        return built, compacted(log)


def through_broker(accounts: int, tps: int, uncapped: bool, seed: int) -> dict[str, float]:
    """Build the state of ``accounts``, write both changelogs to the embedded broker,
    and time reading each back and applying it, as an instance given the partition."""
    built, logs = changelogs(accounts, tps, uncapped, seed)
    del built
    out: dict[str, float] = {"accounts": accounts}
    with processes() as started:
        bootstrap = start_broker(started)
        topics = {stage: f"bench.state.{stage}.{os.getpid()}" for stage in STAGES}
        kafka.ensure_topics(bootstrap, dict.fromkeys(topics.values(), 1),
                            compacted=topics.values())
        producer = kafka.producer(bootstrap)
        for stage in STAGES:
            records = logs[stage]
            for key, value in records:
                kafka.produce_when_room(producer, topics[stage], key, value, partition=0)
            producer.flush(60)
            out[f"{stage}_records"] = len(records)
        del logs
        for stage in STAGES:
            began = time.perf_counter()
            records = kafka.read_partition(bootstrap, topics[stage], 0, timeout=600)
            read = time.perf_counter() - began
            seconds, _ = restore_here(stage, records, accounts, uncapped)
            out[f"{stage}_read_s"] = round(read, 2)
            out[f"{stage}_restore_s"] = round(read + seconds, 2)
    return out


def benchmark(args: argparse.Namespace) -> dict[str, Any]:
    built, logs = changelogs(args.accounts, args.tps, args.uncapped, args.seed)
    print(f"{args.accounts:,} accounts, {built.payments:,} payments: state "
          f"{built.mib:,.0f} MiB", flush=True)
    stores = {stage: {name: len(store) if hasattr(store, "__len__") else len(getattr(
        store, "_sources", getattr(store, "_accounts", getattr(store, "_targets", ()))))
        for name, store in rules.stores.items()}
        for stage, rules in (("source", built.source), ("target", built.target))}
    summary: dict[str, Any] = {"accounts": args.accounts, "payments": built.payments,
                               "uncapped": args.uncapped, "state_mib": round(built.mib, 1),
                               "keys": stores}
    for stage in STAGES:
        records, written = logs[stage], built.written[stage]
        size = sum(len(key) + len(value or b"") for key, value in records)
        summary[f"{stage}_records"] = len(records)
        summary[f"{stage}_records_written"] = written
        summary[f"{stage}_bytes_per_record"] = round(size / len(records), 1)
        summary[f"{stage}_encode_us"] = round(built.encode_s[stage] / written * 1e6, 2)
    del built
    with tempfile.NamedTemporaryFile(suffix=".changelog") as file:
        pickle.dump(logs, file)
        file.flush()
        del logs
        command = [sys.executable, "-m", "bench.state", "--restore-from", file.name,
                   "--accounts", str(args.accounts)] + (["--uncapped"] * args.uncapped)
        line = subprocess.run(command, cwd=ROOT, check=True, capture_output=True,
                              text=True).stdout.strip().splitlines()[-1]
    summary.update(ast.literal_eval(line))
    if args.broker_accounts:
        print(f"through the embedded broker: {args.broker_accounts:,} accounts", flush=True)
        summary["broker"] = through_broker(args.broker_accounts, args.tps, args.uncapped,
                                           args.seed)
    restore = summary["source_restore_s"] + summary["target_restore_s"]
    summary["goals"] = [
        goal(f"state of {args.accounts:,} accounts", summary["state_mib"], MEMORY_GOAL_MIB,
             False, " MiB"),
        goal(f"restore of {args.accounts:,} accounts", restore, RESTORE_GOAL_S, False,
             " s")]
    return summary


def render(summary: dict[str, Any]) -> str:
    rows: list[list[object]] = [
        ["state, MiB", f"{summary['state_mib']:,.0f}", ""],
        ["records written (every commit)", f"{summary['source_records_written']:,}",
         f"{summary['target_records_written']:,}"],
        ["changelog records (compacted)", f"{summary['source_records']:,}",
         f"{summary['target_records']:,}"],
        ["bytes a record", summary["source_bytes_per_record"],
         summary["target_bytes_per_record"]],
        ["encode, µs a record", summary["source_encode_us"], summary["target_encode_us"]],
        ["restore in process, s", summary["source_restore_s"], summary["target_restore_s"]],
        ["restored state, MiB", f"{summary['restored_mib']:,.0f}", ""],
    ]
    broker = summary.get("broker")
    if broker:
        rows.append([f"restore through the broker ({broker['accounts']:,} accounts), s",
                     broker["source_restore_s"], broker["target_restore_s"]])
    caps = "every account kept" if summary["uncapped"] else "the stores' own caps"
    lines = [f"{summary['accounts']:,} accounts, {summary['payments']:,} payments, "
             f"{caps}", "", table(["", "source", "target"], rows), "",
             *goal_lines(summary["goals"])]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.state",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=1_000_000)
    parser.add_argument("--uncapped", action="store_true",
                        help="every store keeps every account (default: their caps)")
    parser.add_argument("--tps", type=int, default=1000,
                        help="payments a second of event time (default: %(default)s)")
    parser.add_argument("--broker-accounts", type=int, default=20_000,
                        help="accounts restored through the embedded broker (0: none)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "state.json")
    parser.add_argument("--restore-from", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.restore_from:
        child(args.restore_from, args.accounts, args.uncapped)
        return 0
    run: Callable[[argparse.Namespace], dict[str, Any]] = benchmark
    return report("bench.state", args, run, render)


if __name__ == "__main__":
    raise SystemExit(main())
