"""Settings live on the control topic: a service started later obeys the latest ones,
and what it cannot obey it refuses, says why, and keeps running."""

from __future__ import annotations

import time
from collections.abc import Callable

import orjson

from services import control
from services.config import Topics
from tests.kafka_helpers import (
    ServiceProcess,
    heartbeats_until,
    produce,
    read_topics,
    start,
    values,
)


def test_a_late_service_takes_the_newest_settings_and_refuses_bad_ones(
    broker: str, topics: Topics, service_env: dict[str, str], services: list[ServiceProcess]
) -> None:
    # Written before any service runs: the newest command of each setting wins.
    produce(broker, topics.control, [
        control.command("threshold", 500.0, origin="test"),
        control.command("tps", 40.0, origin="test"),
        control.command("threshold", 700.0, origin="test"),
        (b"threshold", orjson.dumps({"v": 2, "setting": "threshold", "value": 1.0,
                                     "id": "future", "ts": 1})),
        (b"threshold", b"{not json"),
        (b"tps", orjson.dumps({"v": 1, "setting": "tps", "value": 1e12, "id": "big", "ts": 1})),
    ])
    start(services, "detector", service_env)
    start(services, "generator", service_env, "--tps", "5", "--seed", "3")

    def settled(status: list[dict]) -> bool:
        beats = {s["service"]: s for s in status if s["kind"] == "heartbeat"}
        return (beats.get("detector", {}).get("settings", {}).get("threshold") == 700.0
                and beats.get("generator", {}).get("settings", {}).get("tps") == 40.0)

    status = heartbeats_until(broker, topics, settled)
    assert settled(status), status

    refusals = [s["reason"] for s in status if s["kind"] == "ack" and not s["applied"]]
    assert any("newer than this service knows" in r for r in refusals), refusals
    assert any("not JSON" in r for r in refusals), refusals
    assert any("tps 1000000000000.0 is out of range" in r for r in refusals), refusals

    # And the detector routes at 700: the generator's amounts in [700, 900) are fraud.
    found = read_topics(broker, [topics.fraud], 1, timeout=30, settle=3)
    fraud = values(found[topics.fraud])
    assert fraud and all(tx["amount"] >= 700 for tx in fraud)
    assert all(tx["detection"]["threshold"] == 700.0 for tx in fraud)
    assert all(s.process.poll() is None for s in services), "a service stopped on bad input"


def test_replayed_and_stale_commands_never_roll_a_setting_back(
    broker: str, topics: Topics, service_env: dict[str, str], services: list[ServiceProcess]
) -> None:
    """Someone re-publishes old commands, before and while the generator runs; a
    restart reads them all again and still ends with the newest setting."""
    first = control.command("tps", 40.0, origin="test")
    time.sleep(0.01)
    newest = control.command("tps", 60.0, origin="test")
    in_force_ts = orjson.loads(newest[1])["ts"]
    produce(broker, topics.control, [
        first, newest,
        first,  # the very same record again: a replay
        (b"tps", orjson.dumps({"v": 1, "setting": "tps", "value": 10.0, "id": "old-news",
                               "ts": in_force_ts - 1000, "origin": "test"})),
        (b"tps", orjson.dumps({"v": 1, "setting": "tps", "value": 70.0, "id": "from-the-future",
                               "ts": in_force_ts + 3_600_000, "origin": "test"})),
    ])
    generator = start(services, "generator", service_env, "--tps", "5", "--seed", "3")

    def tps_of(pid: int) -> Callable[[list[dict]], bool]:
        def settled(status: list[dict]) -> bool:
            beats = [s for s in status if s["kind"] == "heartbeat"
                     and s["instance"].endswith(f"-{pid}")]
            return bool(beats) and beats[-1]["settings"]["tps"] == 60.0
        return settled

    status = heartbeats_until(broker, topics, tps_of(generator.process.pid))
    assert tps_of(generator.process.pid)(status), status
    refusals = [s["reason"] for s in status if s["kind"] == "ack" and not s["applied"]]
    assert any(r.startswith("replayed: command ") for r in refusals), refusals
    assert f"stale: ts {in_force_ts - 1000} is older than the tps command in force " \
           f"(ts {in_force_ts})" in refusals
    assert any("3600 s ahead of when it was written" in r for r in refusals), refusals

    produce(broker, topics.control, [first])  # and once more while it runs
    def replays(status: list[dict]) -> int:
        return sum(1 for s in status if s["kind"] == "ack"
                   and s.get("reason", "").startswith("replayed"))

    assert replays(heartbeats_until(broker, topics, lambda s: replays(s) >= 2)) >= 2
    generator.terminate()
    generator.wait(10)

    restarted = start(services, "generator", service_env, "--tps", "5", "--seed", "3")
    status = heartbeats_until(broker, topics, tps_of(restarted.process.pid))
    assert tps_of(restarted.process.pid)(status), status
    beats = [s for s in status if s["kind"] == "heartbeat"]
    # Every heartbeat of both runs, from the first one on, says 60: never rolled back.
    assert {b["settings"]["tps"] for b in beats} == {60.0}
