"""A console stopped by SIGTERM or SIGHUP (its window closed) stops like a quit, and
ends its process anyway should that shutdown hang."""

from __future__ import annotations

import asyncio
import os
import time

import pytest

import tui.app
from tests.tui.scripted import ScriptedFeed
from tui.app import FraudConsole


def test_a_stop_by_signal_quits_and_arms_a_watchdog(monkeypatch: pytest.MonkeyPatch) -> None:
    ended: list[int] = []
    monkeypatch.setattr(tui.app, "STOP_GRACE", 0.2)
    monkeypatch.setattr(os, "_exit", ended.append)  # what the watchdog would end it with

    async def stopped() -> bool:
        app = FraudConsole(ScriptedFeed())
        async with app.run_test(size=(160, 48)):
            app._stop_on_signal()  # what the loop's SIGTERM and SIGHUP handlers call
            await asyncio.sleep(0.05)
            return app.is_running

    assert not asyncio.run(stopped()), "it quits as the q key does"
    deadline = time.monotonic() + 5
    while not ended and time.monotonic() < deadline:
        time.sleep(0.05)
    assert ended == [1], "a process still there after the grace ends"
