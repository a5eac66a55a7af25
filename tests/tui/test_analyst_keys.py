"""An analyst works the console with the keys: selects rows while the stream runs,
opens one, filters the feeds, and tunes the threshold on the curve.

Headless, on a scripted feed: new traffic is scripted between key presses and shown
as the feed worker would hand it over.
"""

from __future__ import annotations

import asyncio
import io
import os
import time
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
from rich.console import Console
from textual.widgets import Static

from tests.tui.scripted import ScriptedFeed
from tests.tui.test_screens import quality
from tui.app import FraudConsole
from tui.curve import CurveScreen
from tui.detail import DetailScreen
from tui.widgets import FeedPane


@pytest.fixture(autouse=True)
def utc() -> None:
    os.environ["TZ"] = "UTC"
    time.tzset()


def headless(story: Callable[[], Coroutine[Any, Any, None]]) -> Callable[[], None]:
    """The test runs the story on its own event loop, as the other console tests do."""

    def test() -> None:
        asyncio.run(story())

    test.__name__, test.__doc__ = story.__name__, story.__doc__
    return test


def text_of(*widgets: Static) -> str:
    """What a person reads in these widgets."""
    console = Console(width=200, record=True, file=io.StringIO())
    for widget in widgets:
        console.print(widget.content)
    return console.export_text()


def more_traffic(app: FraudConsole, feed: ScriptedFeed, seconds: int = 2) -> None:
    feed.scenario_traffic(seconds=seconds, tps=200)
    app.show(feed.snapshot())


@headless
async def test_a_selected_row_holds_the_pane_still_and_counts_what_arrives() -> None:
    feed = quality()
    app = FraudConsole(feed)
    async with app.run_test(size=(160, 48)) as pilot:
        fraud = app.query_one("#feed-fraud", FeedPane)
        legit = app.query_one("#feed-legit", FeedPane)
        await pilot.press("j", "j")  # the fraud feed is first; the second row
        held, total = fraud.rows, app.last.totals["fraud"]
        assert fraud.selected == 1 and fraud.selected_row == held[1]

        more_traffic(app, feed)
        await pilot.pause()
        assert fraud.rows == held  # still: the row stays under the cursor
        arrived = app.last.totals["fraud"] - total
        assert arrived > 0 and fraud.border_title == f"Fraud · +{arrived:,} new"

        await pilot.press("end")  # back to following the stream
        more_traffic(app, feed, seconds=1)
        await pilot.pause()
        assert fraud.selected is None and fraud.rows == app.last.fraud_rows
        assert fraud.border_title == "Fraud"

        await pilot.press("k", "home")
        assert fraud.selected == 0
        await pilot.press("tab")  # leaving the pane lets go of its row
        assert fraud.selected is None and app.active == "legit"
        await pilot.press("down", "down", "down", "up")  # the first selects the newest
        assert legit.selected == 1
        await pilot.press("shift+tab")
        assert legit.selected is None and app.active == "fraud"


@headless
async def test_enter_opens_a_transaction_and_its_accounts_recent_ones() -> None:
    feed = quality()
    app = FraudConsole(feed)
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.press("j", "enter")
        detail = app.screen
        assert isinstance(detail, DetailScreen)
        row = detail.row
        assert row == app.query_one("#feed-fraud", FeedPane).rows[0]
        shown = text_of(detail.query_one("#detail-table", Static))
        for expected in (row.id, row.source, row.target, "amount_threshold",
                         "amount >= 900", "streaming.transactions.fraud",
                         f"partition {row.partition}", "label"):
            assert expected in shown
        assert detail.label is not None  # the scripted labels came with the traffic

        # Its accounts' transactions, as the console saw them: this one among them.
        assert row in detail.history
        assert all({row.source, row.target} & {r.source, r.target} for r in detail.history)
        if len(detail.history) > 1:
            await pilot.press("down", "enter")
            assert isinstance(app.screen, DetailScreen)
            assert app.screen.row == detail.history[1]
            await pilot.press("escape")
        assert app.screen is detail
        await pilot.press("escape")
        assert not isinstance(app.screen, DetailScreen)


@headless
async def test_enter_without_a_selected_row_opens_nothing() -> None:
    app = FraudConsole(quality())
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("enter")
        assert not isinstance(app.screen, DetailScreen)


@headless
async def test_a_filter_applies_to_both_feeds_their_counts_and_what_comes_next() -> None:
    feed = quality()
    app = FraudConsole(feed)
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.press("slash", *"amount", "greater_than_sign", *"1000", "enter")
        snapshot = app.last
        assert snapshot.filter is not None and snapshot.filter.text == "amount>1000"
        assert snapshot.fraud_rows and all(r.amount > 1000 for r in snapshot.fraud_rows)
        assert snapshot.legit_rows == ()  # everyday payments stay under 500
        before = dict(snapshot.matched)

        more_traffic(app, feed)
        await pilot.pause()
        snapshot = app.last
        assert all(r.amount > 1000 for r in snapshot.fraud_rows + snapshot.legit_rows)
        assert snapshot.matched["fraud"] > before["fraud"]
        assert snapshot.arrived["legit"] > snapshot.matched["legit"]
        title = app.query_one("#feed-fraud", FeedPane).border_title
        assert title == (f"Fraud · amount>1000 · {snapshot.matched['fraud']:,} of "
                         f"{snapshot.arrived['fraud']:,}")

        await pilot.press("escape")  # clears it
        assert app.last.filter is None and app.last.legit_rows

        account = app.last.fraud_rows[0].source[:4].lower()
        await pilot.press("slash", *account, "enter")
        assert app.last.fraud_rows and all(
            account.upper() in r.source + r.target
            for r in app.last.fraud_rows + app.last.legit_rows)


@headless
async def test_a_filter_that_makes_no_sense_says_why_and_changes_nothing() -> None:
    app = FraudConsole(quality())
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("slash", *"amount", "greater_than_sign", *"lots", "enter")
        assert "amount>N" in str(app.screen.query_one("#filter-error").render())
        await pilot.press("escape")
        assert app.last.filter is None


@headless
async def test_the_curve_sends_the_threshold_under_its_cursor() -> None:
    feed = quality()
    app = FraudConsole(feed)
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.press("c")
        curve = app.screen
        assert isinstance(curve, CurveScreen)
        shown = str(curve.query_one("#curve-figures").render())
        assert "cursor threshold 900" in shown and "in force threshold 900" in shown

        await pilot.press("left", "left", "enter")  # two steps of 50 down
        assert feed.sent[-1]["setting"] == "threshold" and feed.sent[-1]["value"] == 800.0
        feed.answer("detector", applied=True)
        app.show(feed.snapshot())
        await pilot.pause()
        shown = str(curve.query_one("#curve-figures").render())
        assert "in force threshold 800" in shown and "sent threshold = 800 ✓ applied" in shown

        await pilot.press("tab", "right", "enter")  # the model cutoff's curve
        assert feed.sent[-1]["setting"] == "model_cutoff"
        await pilot.press("escape")
        assert not isinstance(app.screen, CurveScreen)


@headless
async def test_help_lists_the_new_keys() -> None:
    app = FraudConsole(quality())
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.press("question_mark")
        text = text_of(*app.screen.query(Static))
        for key in ("tab", "shift+tab", "↑ k", "↓ j", "home", "end", "⏎", "/", "escape", "c"):
            assert key in text
