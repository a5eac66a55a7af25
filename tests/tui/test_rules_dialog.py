"""Changing a detector rule from the console: pick it, type a value, and the command goes
out; a value the detector would refuse is explained at once and nothing is sent."""

from __future__ import annotations

import asyncio

from textual.widgets import Static

from tests.tui.scripted import ScriptedFeed
from tui.app import FraudConsole
from tui.screens import RULE_SETTINGS


def test_a_rule_setting_is_sent_as_a_command() -> None:
    asyncio.run(_sent())


async def _sent() -> None:
    feed = ScriptedFeed()
    feed.traffic(seconds=5, tps=100)
    app = FraudConsole(feed)
    async with app.run_test(size=(100, 30)) as pilot:
        steps = RULE_SETTINGS.index("fan_in_sources")
        await pilot.press("e", *["down"] * steps, "enter")
        await pilot.press(*"25", "enter")
        await pilot.pause()
    [command] = feed.sent
    assert (command["setting"], command["value"]) == ("fan_in_sources", 25)


def test_a_value_out_of_range_is_explained_and_not_sent() -> None:
    asyncio.run(_refused_here())


async def _refused_here() -> None:
    feed = ScriptedFeed()
    feed.traffic(seconds=5, tps=100)
    app = FraudConsole(feed)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("e", "enter", *"1", "enter")  # velocity_count must be >= 2
        await pilot.pause()
        error = str(app.screen.query_one("#rules-error", Static).render())
        assert "out of range" in error
        await pilot.press(*"2.5", "enter")  # the 1 is still there: 12.5, not whole
        await pilot.pause()
        assert "whole number" in str(app.screen.query_one("#rules-error", Static).render())
    assert feed.sent == []
