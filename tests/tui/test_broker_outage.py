"""The console keeps running while the broker is away, says so, and recovers by itself."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading

from services.config import Topics
from tests.tui.watching import until
from tui.app import FraudConsole
from tui.feed import KafkaFeed


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Forwarder:
    """A TCP port that leads to the broker once opened: a broker that comes back."""

    def __init__(self, port: int, broker: str) -> None:
        host, broker_port = broker.rsplit(":", 1)
        self.target = (host, int(broker_port))
        self.server = socket.create_server(("127.0.0.1", port))
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while chunk := source.recv(65536):
                sink.sendall(chunk)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self.server.close()


def test_the_banner_comes_and_goes_with_the_broker(broker: str, topics: Topics) -> None:
    asyncio.run(outage_and_return(broker, topics))


async def outage_and_return(broker: str, topics: Topics) -> None:
    port = free_port()  # nothing listens here yet: the broker is "down"
    app = FraudConsole(KafkaFeed(f"127.0.0.1:{port}", topics))
    async with app.run_test(size=(80, 24)):
        await until(app, lambda s: not s.connected, timeout=20, because="the outage")
        banner = app.query_one("#banner")
        assert banner.display and "unreachable" in str(banner.render())

        forwarder = Forwarder(port, broker)  # the broker is back
        try:
            await until(app, lambda s: s.connected, timeout=30, because="the recovery")
            await asyncio.sleep(0.5)
            assert not app.query_one("#banner").display
        finally:
            forwarder.close()
