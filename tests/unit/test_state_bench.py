"""bench.state's report, from a run small enough for a unit test (no broker)."""

from __future__ import annotations

import argparse
from pathlib import Path

from bench.state import benchmark, render


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
    assert [g["what"] for g in summary["goals"]] == ["state of 300 accounts",
                                                     "restore of 300 accounts"]
    text = render(summary)
    assert "300 accounts" in text and "every account kept" in text
    assert "restore in process, s" in text and "broker" not in text
