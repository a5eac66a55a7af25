"""bench.state's report, from a run small enough for a unit test (no broker)."""

from __future__ import annotations

import argparse
import io
import pickle
import tempfile
from pathlib import Path

from bench.state import benchmark, build, compacted, render


def test_a_small_run_reports_memory_changelog_and_restore(tmp_path: Path) -> None:
    args = argparse.Namespace(accounts=300, uncapped=True, tps=1000, broker_accounts=0,
                              seed=3, json=tmp_path / "state.json")
    summary = benchmark(args)
    assert summary["payments"] >= 300
    assert summary["source_records"] > 300  # a record per account, and the stream's
    assert summary["keys"]["source"]["pace"] == 300
    for stage in ("source", "target"):
        assert summary[f"{stage}_bytes_per_record"] > 0
        assert summary[f"{stage}_restore_s"] >= 0
        # Every commit wrote what changed since the last: compaction keeps as many at most.
        assert summary[f"{stage}_records_written"] >= summary[f"{stage}_records"]
    assert [g["what"] for g in summary["goals"]] == ["state of 300 accounts",
                                                     "restore of 300 accounts"]
    text = render(summary)
    assert "300 accounts" in text and "every account kept" in text
    assert "restore in process, s" in text and "broker" not in text
    assert "records written (every commit)" in text


def test_the_build_takes_every_change_as_commits_do() -> None:
    with tempfile.TemporaryFile() as log:
        built = build(300, 1000, True, 3, log)
        # Nothing left to write: the last commit took it.
        for rules in (built.source, built.target):
            assert all(not store.take_changed() for store in rules.stores.values())
        logs = compacted(log)
    assert built.written["source"] >= len(logs["source"]) > 300
    assert all(len({key for key, _ in logs[stage]}) == len(logs[stage])
               for stage in ("source", "target"))


def test_compaction_keeps_each_keys_newest_record_where_it_was_written() -> None:
    log = io.BytesIO()
    for commit in ([(b"/a", b"1"), (b"/b", b"2")], [(b"/c", b"3"), (b"/a", None)],
                   [(b"/b", b"4")]):
        pickle.dump(("source", commit), log)
    assert compacted(log) == {"source": [(b"/c", b"3"), (b"/a", None), (b"/b", b"4")],
                              "target": []}
