"""A deterministic feed for console tests: records and status made up on a fake clock."""

from __future__ import annotations

import threading
from typing import Any

import orjson

from services import control
from services.generator.synthetic import TutorialProfile
from tui.feed import AggregatingFeed, Sink

START = 1_767_225_600.0  # 2026-01-01 00:00:00 UTC


class FakeClock:
    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def output(tx: bytes, threshold: float) -> tuple[str, bytes]:
    """What the detector would make of a generated transaction."""
    body = orjson.loads(tx)
    fraud = body["amount"] >= threshold
    rules = [{"rule": "amount_threshold", "reason": f"amount >= {threshold:g}"}] if fraud else []
    body["detection"] = {"fraud": fraud, "rules": rules, "score": None,
                         "threshold": threshold, "instance": "detector-1"}
    return ("fraud" if fraud else "legit"), orjson.dumps(body)


class ScriptedFeed(AggregatingFeed):
    """Feeds the real aggregator with traffic of a given shape; commands are recorded."""

    def __init__(self, clock: FakeClock | None = None) -> None:
        self.fake_clock = clock or FakeClock()
        super().__init__("127.0.0.1:9092", self.fake_clock)
        self.sent: list[dict[str, Any]] = []
        self.profile = TutorialProfile(seed=42)
        self.in_total = 0
        self.settings: dict[str, dict[str, Any]] = {
            "generator": {"tps": 1000.0, "paused": False},
            "detector": {"threshold": 900.0},
        }

    def run(self, sink: Sink, stop: threading.Event) -> None:
        stop.wait()  # nothing live: the screen shows what the test scripted

    def publish(self, key: bytes, body: bytes) -> None:
        self.sent.append(orjson.loads(body))

    def traffic(self, seconds: int, tps: int, threshold: float = 900.0,
                latency_ms: float = 8.0, dead: int = 0) -> None:
        """``seconds`` of pipeline traffic, a batch a second, with heartbeats."""
        agg = self.aggregator
        for _ in range(seconds):
            self.fake_clock.now += 1
            ts = int(self.fake_clock.now * 1000)
            outs: dict[str, list[bytes | None]] = {"legit": [], "fraud": []}
            for _, tx in self.profile.batch(tps, ts):
                kind, value = output(tx, threshold)
                outs[kind].append(value)
            self.in_total += tps
            agg.add_input_watermark(self.in_total)
            for kind, values in outs.items():
                agg.add_output(kind, values)
            agg.add_latencies([latency_ms + (i % 10) for i in range(100)])
            if dead:
                agg.add_dead_letters(dead)
            self.heartbeats()
        agg.lag = 12

    def heartbeats(self, *, services: tuple[str, ...] = ("generator", "detector")) -> None:
        self.aggregator.add_status([
            control.heartbeat(service, f"{service}-1", self.settings[service], {})
            for service in services])

    def answer(self, service: str, applied: bool, reason: str = "") -> None:
        """The service's answer to the last command this console sent."""
        last = self.sent[-1]
        cmd = control.parse_command(orjson.dumps(last))
        if applied:
            self.settings[service][cmd.setting] = cmd.value
        self.aggregator.add_status([control.ack(service, f"{service}-1",
                                                {"partition": 0, "offset": 1, "id": cmd.id},
                                                applied, reason, cmd)])
        self.heartbeats()
