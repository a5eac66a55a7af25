"""A console that is closing drops what its feed still sends, rather than crashing on
a screen that is already gone."""

from __future__ import annotations

import asyncio

from tests.tui.scripted import ScriptedFeed
from tui.app import FraudConsole, SnapshotReady


def test_a_snapshot_that_comes_after_the_screen_has_gone_is_dropped() -> None:
    feed = ScriptedFeed()

    async def close_then_deliver() -> None:
        app = FraudConsole(feed)
        async with app.run_test(size=(160, 48)):
            feed.traffic(seconds=2, tps=100)
        # The feed's thread posted this while the console was closing; the message
        # loop takes it up once the widgets are removed.
        app.on_snapshot_ready(SnapshotReady(feed.snapshot()))

    asyncio.run(close_then_deliver())
