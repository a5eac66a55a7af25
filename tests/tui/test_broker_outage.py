"""The console keeps running while the broker is away, says so, and recovers by itself."""

from __future__ import annotations

import asyncio
import socket

from services.config import Topics
from tests.kafka_helpers import Relay
from tests.tui.watching import until
from tui.app import FraudConsole
from tui.feed import KafkaFeed


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_the_banner_comes_and_goes_with_the_broker(broker: str, topics: Topics) -> None:
    asyncio.run(outage_and_return(broker, topics))


async def outage_and_return(broker: str, topics: Topics) -> None:
    relay = Relay(f"127.0.0.1:{free_port()}")  # it leads nowhere yet: the broker is "down"
    app = FraudConsole(KafkaFeed(relay.address, topics))
    async with app.run_test(size=(80, 24)):
        await until(app, lambda s: not s.connected, timeout=20, because="the outage")
        banner = app.query_one("#banner")
        assert banner.display and "unreachable" in str(banner.render())

        relay.move_to(broker)  # the broker is back
        try:
            await until(app, lambda s: s.connected, timeout=30, because="the recovery")
            await asyncio.sleep(0.5)
            assert not app.query_one("#banner").display
        finally:
            relay.close()
