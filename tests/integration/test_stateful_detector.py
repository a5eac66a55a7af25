"""The detector with its stateful rules on the embedded broker: a mule's payers are seen
together although two instances share the sources, and the state survives a kill.

Money mules collect from many accounts; the transactions topic is keyed by the payer,
so the payments to one mule are spread over every partition and every instance. The
detector re-keys them by target through its repartition topic, so the instance that
owns the mule sees all of them.
"""

from __future__ import annotations

import time

import orjson

from services import control
from services.config import Topics
from services.detector.stateful import InternalTopics
from tests.kafka_helpers import (
    RESTART_DELAY,
    ServiceProcess,
    heartbeats_until,
    produce,
    read_topic,
    read_topics,
    start,
    values,
    wait_committed,
    wait_committed_past,
)

MULE = "MULE00000001"
START_TS = 1_767_225_600_000


def payment(i: int, payer: str, target: str = MULE, amount: float = 990.0,
            second: int | None = None) -> tuple[bytes, bytes]:
    """Payment ``i``, at tick ``i`` of the test's event time unless told otherwise.

    Ticks are 50 ms apart, as in a live stream: two instances' records then meet on the
    repartition topic well within the windows' grace period."""
    ts = START_TS + (i if second is None else second) * 50
    return payer.encode(), orjson.dumps({
        "id": f"pay-{i}", "ts": ts, "source": payer, "target": target, "amount": amount,
        "currency": "EUR"})


def detector_env(service_env: dict[str, str], instance: str) -> dict[str, str]:
    return {**service_env, "DETECTOR_RULES": "all", "DETECTOR_MODEL": "off",
            "DETECTOR_INSTANCE": instance, "FRAUD_THRESHOLD": "5000"}


def verdicts(broker: str, topics: Topics, expect: int) -> dict[str, dict]:
    found = read_topics(broker, [topics.legit, topics.fraud], expect, timeout=90)
    out: dict[str, dict] = {}
    for tx in values(found[topics.legit] + found[topics.fraud]):
        assert tx["id"] not in out, f"{tx['id']} routed twice"
        out[tx["id"]] = tx
    return out


def fan_in_fired(tx: dict) -> bool:
    return any(hit["rule"] == "fan_in" for hit in tx["detection"]["rules"])


def wait_until_running(broker: str, topics: Topics, instances: int) -> None:
    """Until ``instances`` detectors have said they are up (their first heartbeat)."""
    def running(status: list[dict]) -> set[str]:
        return {body["instance"] for body in status if body.get("kind") == "heartbeat"}

    seen = running(heartbeats_until(broker, topics, lambda s: len(running(s)) >= instances,
                                    timeout=60))
    assert len(seen) >= instances, f"only {sorted(seen)} running"


def test_two_instances_see_a_mule_whole(broker: str, topics: Topics,
                                        service_env: dict[str, str],
                                        services: list[ServiceProcess]) -> None:
    for name in ("d1", "d2"):
        start(services, "detector", detector_env(service_env, name))
    wait_until_running(broker, topics, 2)
    everyday = [payment(100 + i, f"SHOPPER{i:05d}", f"SHOP{i:08d}", 25.0, second=i % 25)
                for i in range(40)]  # at the same time as the mule's
    produce(broker, topics.transactions,
            [payment(i, f"PAYER{i:07d}") for i in range(25)] + everyday)
    first = verdicts(broker, topics, 65)
    assert len(first) == 65
    # The two instances' records meet at the mule's owner in event-time order
    # (``event_time``): each payment counts exactly the payers before it.
    assert [first[f"pay-{i}"]["detection"]["features"]["fan_in"] for i in range(25)] == \
        list(range(1, 26))
    produce(broker, topics.transactions, [payment(25, "PAYER0000025")])
    out = verdicts(broker, topics, 66)
    assert len(out) == 66
    last = out["pay-25"]
    assert last["detection"]["features"]["fan_in"] == 26
    assert fan_in_fired(last)
    assert not any(out[f"pay-{100 + i}"]["detection"]["fraud"] for i in range(40))


def test_a_rule_setting_sent_on_the_control_topic_changes_the_verdicts(
        broker: str, topics: Topics, service_env: dict[str, str],
        services: list[ServiceProcess]) -> None:
    start(services, "detector", detector_env(service_env, "d1"))
    wait_until_running(broker, topics, 1)
    produce(broker, topics.control, [control.command("fan_in_sources", 3, origin="test")])
    def in_force(status: list[dict]) -> object:
        beats = [body for body in status if body.get("kind") == "heartbeat"]
        return beats[-1]["settings"].get("fan_in_sources") if beats else None

    status = heartbeats_until(broker, topics, lambda s: in_force(s) == 3)
    assert in_force(status) == 3, "the detector never reported the new setting"
    # Payers of one target: a mule from 3 on (the default wants 20). The first three
    # reach the target's partition in any order, and each verdict counts the payers
    # known when it was made: one made after them all sees each.
    produce(broker, topics.transactions, [payment(i, f"PAYER{i:07d}") for i in range(3)])
    assert len(verdicts(broker, topics, 3)) == 3
    produce(broker, topics.transactions, [payment(3, "PAYER0000003")])
    last = verdicts(broker, topics, 4)["pay-3"]
    assert last["detection"]["features"]["fan_in"] == 4
    assert fan_in_fired(last) and last["detection"]["fraud"]


def test_state_is_restored_after_a_kill(broker: str, topics: Topics,
                                        service_env: dict[str, str],
                                        services: list[ServiceProcess]) -> None:
    env = detector_env(service_env, "d1")
    first = start(services, "detector", env)
    wait_until_running(broker, topics, 1)
    produce(broker, topics.transactions,
            [payment(i, f"PAYER{i:07d}") for i in range(15)])
    assert len(verdicts(broker, topics, 15)) == 15
    # Killed once both stages have committed, with their state changes: a verdict
    # seen before its commit (the embedded broker shows open transactions) would be
    # made again by the restarted instance.
    internal = InternalTopics.of(env["DETECTOR_GROUP"])
    wait_committed(broker, env["DETECTOR_GROUP"], {topics.transactions: 15})
    # The second stage: past the last record of forwards on each partition (a batch's
    # forwards to a partition travel as one record, among progress markers).
    forwards = [m for m in read_topics(broker, [internal.repartition], 1, timeout=10)[
        internal.repartition] if m.key() is not None]
    assert forwards
    last: dict[tuple[str, int], int] = {}
    for m in forwards:
        at = (internal.repartition, m.partition())
        last[at] = max(last.get(at, -1), m.offset())
    wait_committed_past(broker, env["DETECTOR_GROUP"], last)
    first.process.kill()
    first.process.wait(10)

    time.sleep(RESTART_DELAY)  # as a supervisor: one rebalance, not two
    start(services, "detector", env)
    produce(broker, topics.transactions,
            [payment(i, f"PAYER{i:07d}") for i in range(15, 19)])
    after = verdicts(broker, topics, 19)
    # Without the fifteen payers before the kill, no count here would pass four.
    assert all(after[f"pay-{i}"]["detection"]["features"]["fan_in"] >= 16
               for i in range(15, 19))
    produce(broker, topics.transactions, [payment(19, "PAYER0000019")])
    out = verdicts(broker, topics, 20)
    assert len(out) == 20
    assert out["pay-19"]["detection"]["features"]["fan_in"] == 20
    assert fan_in_fired(out["pay-19"])
    changelog = read_topics(broker, [internal.target_changelog], 1, timeout=10)
    assert changelog[internal.target_changelog], "fan-in state went to its changelog"


def test_the_model_learns_from_the_labels_topic_and_outlives_a_restart(
        broker: str, topics: Topics, service_env: dict[str, str],
        services: list[ServiceProcess]) -> None:
    """Labelled scenarios in, a trained model out: its version in the heartbeat and its
    score in the verdicts that follow. Its retrains resume from the model in service,
    and it goes on learning from batches of labels without a fraud among them. The
    detector restarted scores with that model from its first transaction."""
    env = {**detector_env(service_env, "d1"), "DETECTOR_MODEL": "on",
           "FRAUD_THRESHOLD": "900"}
    first = start(services, "detector", env)
    wait_until_running(broker, topics, 1)
    start(services, "generator", service_env, "--profile", "scenarios", "--tps", "2000",
          "--count", "30000", "--seed", "3", "--fraud-rate", "0.05")
    deadline = time.monotonic() + 90
    model: dict = {}
    while time.monotonic() < deadline and model.get("version", 0) < 3:
        status = read_topics(broker, [topics.status], 1, timeout=2, settle=0.2)[topics.status]
        beats = [body for body in values(status) if body.get("kind") == "heartbeat"
                 and body.get("service") == "detector"]
        if beats:
            model = beats[-1]["counters"].get("model") or {}
    assert model.get("version", 0) >= 3, f"no model retrained from the labels: {model}"
    assert model["examples"] >= 800 and model["failures"] == 0
    out = verdicts(broker, topics, 30_000)  # every one: the detector kept routing
    scored = [tx for tx in out.values() if tx["detection"]["score"] is not None]
    assert scored, "no verdict carries the model's score"

    # Stopped, it writes the model it serves to the group's snapshot topic.
    first.terminate()
    assert first.wait(10) == 0
    internal = InternalTopics.of(env["DETECTOR_GROUP"])
    saved = values(read_topic(broker, internal.model_snapshots, 1, timeout=10))[-1]
    assert saved["version"] >= model["version"]
    # No label comes any more: what scores these is the model it had.
    start(services, "detector", env)
    produce(broker, topics.transactions,
            [payment(i, f"PAYER{i:07d}", f"SHOP{i:08d}", 25.0) for i in range(3)])
    after = verdicts(broker, topics, 30_003)
    assert all(after[f"pay-{i}"]["detection"]["score"] is not None for i in range(3))

    def restored(status: list[dict]) -> list[dict]:
        return [beat["counters"]["model"] for beat in status
                if beat.get("kind") == "heartbeat"
                and (beat["counters"].get("model") or {}).get("restored")]

    beats = restored(heartbeats_until(broker, topics, lambda s: bool(restored(s))))
    assert beats and beats[-1]["version"] == saved["version"]
