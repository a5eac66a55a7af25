"""Waiting for the console to show something, as a user watching the screen does."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

from tui.app import FraudConsole
from tui.model import Snapshot


async def until(app: FraudConsole, what: Callable[[Snapshot], bool], timeout: float = 30.0,
                because: str = "") -> Snapshot:
    """Wait, as a user watching the screen does, until the console shows ``what``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if app.last is not None and what(app.last):
            return app.last
        await asyncio.sleep(0.1)
    pytest.fail(f"the console never showed {because or what}: {app.last}")
