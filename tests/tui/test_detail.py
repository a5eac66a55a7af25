"""An analyst opens a transaction: why it went where it did, and what both of its
accounts did lately.

Scripted rows: a mule account receives from several others; the detector's verdicts
come with and without the model's own account of who decided.
"""

from __future__ import annotations

import asyncio
import io
from typing import Any

import orjson
from rich.console import Console
from textual.widgets import OptionList

from tests.tui.scripted import ScriptedFeed
from tui.app import FraudConsole
from tui.detail import DetailScreen, transaction_table
from tui.model import Row, TxLabel, row_of

MULE = "MULE00000009"


def verdict(tx_id: str, source: str, target: str, amount: float, ts_s: int,
            **detection: Any) -> bytes:
    fraud = amount >= 900
    rules = [{"rule": "amount_threshold", "reason": "amount >= 900"}] if fraud else []
    return orjson.dumps({
        "id": tx_id, "ts": ts_s * 1000, "source": source, "target": target,
        "amount": amount, "currency": "EUR",
        "detection": {"fraud": fraud, "rules": rules, "score": None, "threshold": 900.0,
                      "instance": "detector-1", **detection}})


def text(table: Any) -> str:
    console = Console(width=160, record=True, file=io.StringIO())
    console.print(table)
    return console.export_text()


def test_opening_a_transaction_lists_its_source_and_its_target_each_with_their_own() -> None:
    async def story() -> None:
        feed = ScriptedFeed()
        now = int(feed.fake_clock.now)
        feed.output("legit", [verdict("1", "ALICE0000001", "SHOP00000002", 12.0, now - 9),
                              verdict("2", "BOB000000003", MULE, 300.0, now - 8),
                              verdict("3", "CAROL0000004", MULE, 250.0, now - 7)])
        feed.output("fraud", [verdict("4", "ALICE0000001", MULE, 950.0, now - 5)])
        app = FraudConsole(feed)
        async with app.run_test(size=(160, 48)) as pilot:
            await pilot.press("j", "enter")  # the fraud feed's newest: ALICE → MULE
            detail = app.screen
            assert isinstance(detail, DetailScreen) and detail.row.id == "4"
            lines = [str(option.prompt) for option in
                     detail.query_one("#detail-history", OptionList).options]
            source_at = next(i for i, line in enumerate(lines) if "source ALICE0000001" in line)
            target_at = next(i for i, line in enumerate(lines) if f"target {MULE}" in line)
            assert source_at < target_at
            # Alice paid the shop and the mule; the mule was paid by Bob, Carol and Alice.
            assert "→ to   SHOP00000002" in "".join(lines[source_at:target_at])
            received = "".join(lines[target_at:])
            for payer in ("BOB000000003", "CAROL0000004", "ALICE0000001"):
                assert f"← from {payer}" in received
            assert sorted(row.id for row in detail.history) == ["1", "2", "3", "4", "4"]

            # Down past the source's rows and the target's heading: Bob's payment opens.
            await pilot.press("j", "j", "j", "enter")
            assert isinstance(app.screen, DetailScreen) and app.screen.row.id in ("2", "3")
            await pilot.press("escape", "escape")
            assert not isinstance(app.screen, DetailScreen)

    asyncio.run(story())


def figure(shown: str, name: str) -> str:
    """What the detail says beside ``name``."""
    line = next(line for line in shown.splitlines() if line.strip().startswith(name))
    return line.strip()[len(name):].strip()


def row(raw: bytes) -> Row:
    found = row_of(raw, "streaming.transactions.fraud", 2, 41, 0)
    assert found is not None
    return found


def test_the_verdict_says_its_cutoff_veto_and_decider_when_the_detector_gives_them() -> None:
    told = row(verdict("7", "ALICE0000001", MULE, 950.0, 1_000, score=0.31, cutoff=0.9,
                       veto=0.05, decided_by="rules", model_trusted=False,
                       features={"gap_s": 86_400.0, "amount_z": 2.5}))
    shown = text(transaction_table(told, None, TxLabel(True, "mule_fan_in")))
    assert "0.9 · 0.05  (for this verdict)" in shown
    assert figure(shown, "decided by") == "the rules"
    assert "(inferred)" not in shown
    assert "no: the rules decide until it beats them on the labels" in shown
    assert figure(shown, "figures") == "gap_s 86,400  amount_z 2.5"
    assert "1970-01-01 00:16:40 UTC" in shown  # the event time, in UTC whatever the zone

    vetoed = row(verdict("8", "ALICE0000001", MULE, 950.0, 1_000, score=0.01, cutoff=0.8,
                         veto=0.02, decided_by="model_veto", model_trusted=True))
    shown = text(transaction_table(vetoed, None, None))
    assert "the model, over the rules (score under the veto)" in shown
    assert "yes: it has beaten the rules on the labels" in shown


def test_without_the_detectors_word_the_verdict_is_inferred_from_what_is_in_force() -> None:
    feed = ScriptedFeed()
    feed.settings["detector"].update(model_cutoff=0.85, model_veto=0.1)
    feed.heartbeats()
    older = row(verdict("9", "ALICE0000001", MULE, 950.0, 1_000, score=0.4))
    shown = text(transaction_table(older, feed.snapshot(), None))
    assert "0.85 · 0.1  (in force now)" in shown
    assert "the rules (the model's score did not veto them)  (inferred)" in shown
    assert "model trusted" not in shown
