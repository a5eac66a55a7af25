"""A deterministic feed for console tests: records and status made up on a fake clock."""

from __future__ import annotations

import random
import threading
from typing import Any

import orjson

from services import control
from services.evaluator import report
from services.evaluator.quality import Evaluator
from services.generator.synthetic import TutorialProfile
from tui.feed import AggregatingFeed, Sink

START = 1_767_225_600.0  # 2026-01-01 00:00:00 UTC
# The amounts a scenario's payments take in scripted labelled traffic.
FRAUD_AMOUNTS = {"card_testing": (0.1, 2.0), "velocity_burst": (20.0, 400.0),
                 "account_takeover": (300.0, 3_000.0), "mule_fan_in": (850.0, 1_150.0),
                 "large_amount": (3_000.0, 20_000.0)}


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
        self.rng = random.Random(42)
        self.evaluator = Evaluator(window_seconds=60)  # what labelled traffic is graded by
        self.in_total = 0
        self.settings: dict[str, dict[str, Any]] = {
            "generator": {"tps": 1000.0, "paused": False},
            "detector": {"threshold": 900.0},
            "evaluator": {"window": 60},
        }
        self.counters: dict[str, dict[str, Any]] = {}
        self.offsets = {"legit": [0] * 4, "fraud": [0] * 4}  # the next offset per partition
        self.sequence = 0  # the last transaction id of scripted labelled traffic

    def output(self, kind: str, values: list[bytes | None]) -> None:
        """Records of one output topic, each at the next offset of a partition."""
        partitions, offsets = [], []
        for n in range(len(values)):
            partition = n % 4
            partitions.append(partition)
            offsets.append(self.offsets[kind][partition])
            self.offsets[kind][partition] += 1
        self.aggregator.add_output(kind, values, partitions, offsets)

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
                self.output(kind, values)
            agg.add_latencies([latency_ms + (i % 10) for i in range(100)])
            if dead:
                agg.add_dead_letters(dead)
            self.heartbeats()
        agg.lag = 12

    def scenario_traffic(self, seconds: int, tps: int, threshold: float = 900.0,
                         fraud_rate: float = 0.05) -> None:
        """``seconds`` of labelled traffic judged at ``threshold``, with what an evaluator
        would publish each second.

        The fraud is made here, not by the generator, so that these screens stay the
        same whatever the generator's scenarios become: a share ``fraud_rate`` of the
        transactions belongs to a scenario and takes an amount typical of it; everyday
        payments stay below 500.
        """
        agg = self.aggregator
        for _ in range(seconds):
            self.fake_clock.now += 1
            ts = int(self.fake_clock.now * 1000)
            outs: dict[str, list[bytes | None]] = {"legit": [], "fraud": []}
            labels: list[bytes | None] = []
            for _, raw in self.profile.batch(tps, ts):
                tx = orjson.loads(raw)
                # The generator's ids start with a random instance prefix: a screen that
                # shows one needs its own.
                self.sequence += 1
                tx["id"] = f"tx-{self.sequence:07d}"
                scenario = None
                if self.rng.random() < fraud_rate:
                    scenario = self.rng.choice(list(FRAUD_AMOUNTS))
                    tx["amount"] = round(self.rng.uniform(*FRAUD_AMOUNTS[scenario]), 2)
                else:  # everyday payments of up to 500
                    tx["amount"] = max(0.01, round(tx["amount"] / 2, 2))
                kind, value = output(orjson.dumps(tx), threshold)
                outs[kind].append(value)
                self.evaluator.verdict(value)
                labels.append(orjson.dumps({"id": tx["id"], "ts": ts,
                                            "fraud": scenario is not None,
                                            "scenario": scenario}))
                self.evaluator.label(labels[-1])
            self.in_total += tps
            agg.add_input_watermark(self.in_total)
            for kind, values in outs.items():
                self.output(kind, values)
            agg.add_labels(labels)
            agg.add_latencies([8.0 + (i % 10) for i in range(100)])
            self.evaluator_says()
            self.heartbeats(services=("generator", "detector", "evaluator"))
        agg.lag = 12

    def evaluator_says(self) -> None:
        """The quality message the evaluator publishes once a second."""
        evaluator = self.evaluator
        self.aggregator.add_status([report.encode(
            "evaluator", "evaluator-1", int(self.fake_clock.now * 1000),
            evaluator.window.seconds, evaluator.window.span_ms(), evaluator.window.tally(),
            evaluator.counters())])

    def heartbeats(self, *, services: tuple[str, ...] = ("generator", "detector")) -> None:
        self.aggregator.add_status([
            control.heartbeat(service, f"{service}-1", self.settings[service],
                              self.counters.get(service, {}))
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
