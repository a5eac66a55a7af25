"""The broker goes away under a running pipeline: each test has a broker of its own.

What the embedded broker can promise across an outage depends on the kind:

- stopped and continued (SIGSTOP, SIGCONT): it keeps its memory, so nothing may be
  lost; the services say that the cluster stopped answering, and resume by
  themselves when it answers again;
- killed and started again: it kept everything in memory, so everything it held is
  gone (transactions not yet routed, outputs, committed offsets, settings) and no
  client can bring it back. What remains promised is about the new broker: the
  services find it at the same address by themselves (the generator carries on; a
  detector whose transaction vanished exits with code 1 for its supervisor to start
  it again), and every transaction the new broker receives is routed exactly once.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from services.config import Topics
from tests.integration.test_exactly_once import (
    assert_open_transactions_only,
    committed_view,
    every_id,
    process_name,
    wrote,
)
from tests.kafka_helpers import (
    BrokerProcess,
    Kill,
    Outputs,
    Relay,
    ServiceProcess,
    positions,
    produced,
    read_topic,
    start,
    wait_committed,
)

OUTAGE = 10.0
RESUME_BOUND = 30.0


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[BrokerProcess]:
    broker = BrokerProcess(tmp_path / "broker.log")
    with broker:
        yield broker


def stop(service: ServiceProcess) -> tuple[int, str]:
    service.process.send_signal(signal.SIGTERM)
    started = time.monotonic()
    try:
        code = service.wait(10)
    except subprocess.TimeoutExpired:
        service.kill()
        raise AssertionError(f"{service.name} ignored SIGTERM:\n{service.output()}") from None
    assert time.monotonic() - started < 5, f"{service.name} took too long to stop"
    return code, service.output()


def test_a_broker_stopped_ten_seconds_loses_nothing(
    own_broker: BrokerProcess, topics: Topics, service_env: dict[str, str],
    services: list[ServiceProcess],
) -> None:
    env = {**service_env, "KAFKA_BROKER_URL": own_broker.bootstrap,
           "DETECTOR_INSTANCE": "solo"}
    generator = start(services, "generator", env, "--tps", "1000")
    detector = start(services, "detector", env)
    outputs = Outputs(own_broker.bootstrap, topics)
    try:
        assert outputs.wait(wrote(detector), 60, settle=0)
        # Past the first transaction, which takes the backlog: once it has committed.
        wait_committed(own_broker.bootstrap, env["DETECTOR_GROUP"], {topics.transactions: 1})
        own_broker.pause()
        paused = time.time()
        time.sleep(OUTAGE)
        own_broker.resume()
        back = time.time()
        assert outputs.wait(wrote(detector, back), RESUME_BOUND, settle=0), "no resume"
        code, generator_log = stop(generator)
        assert code == 0, generator_log
        where = positions(own_broker.bootstrap, topics.transactions, produced(generator_log))
        outputs.wait(every_id(where), 60, settle=2)
        code, detector_log = stop(detector)
        # A session that expired during the stop makes the detector abort and redo its
        # open transaction: set aside like a killed one's (see test_exactly_once).
        seen, aborted = committed_view(outputs, where, [], [detector])
    finally:
        outputs.close()
    lost = set(where) - set(seen)
    assert set(seen) == set(where), (  # nothing lost
        f"{len(lost)} of {len(where)} transactions lost; the detector exited with {code}:\n"
        f"{detector_log[-6000:]}")
    # Doubled here, not on Apache Kafka: the transaction in flight across the stop,
    # committed with its offsets, which the embedded broker does not keep.
    first_written: dict[str | None, float] = {}
    for record in outputs.records:
        first_written[record.id] = min(record.at, first_written.get(record.id, record.at))
    doubled = [i for i, n in seen.items() if n > 1]
    assert all(paused - 5 <= first_written[i] <= back + 5 for i in doubled)
    assert_open_transactions_only(aborted, span=OUTAGE + 5)
    assert code == 0, detector_log
    # The outage, reported: by the heartbeats' watch, or by a commit kept waiting.
    assert "no answer from the cluster" in generator_log
    assert "the cluster answers again" in generator_log
    assert "is the broker reachable?" in detector_log
    print(f"broker stopped {OUTAGE:.0f} s: {len(where)} transactions, none lost, "
          f"{len(doubled)} of the transaction in flight doubled by the embedded broker, "
          f"{len(aborted)} outputs of aborted transactions shown by it")


def test_a_broker_killed_and_restarted_empty_is_found_again(
    tmp_path: Path, topics: Topics, service_env: dict[str, str],
    services: list[ServiceProcess],
) -> None:
    first = BrokerProcess(tmp_path / "first.log")
    relay = Relay(first.bootstrap)  # the address the services know, whichever broker
    env = {**service_env, "KAFKA_BROKER_URL": relay.address, "DETECTOR_INSTANCE": "solo"}
    generator = start(services, "generator", env, "--tps", "500")
    detector = start(services, "detector", env)
    started = [detector]
    before = Outputs(first.bootstrap, topics)
    assert before.wait(wrote(detector), 60, settle=0)
    before.close()
    first.kill()  # and everything it held with it
    time.sleep(OUTAGE / 2)  # before it is started again
    with BrokerProcess(tmp_path / "second.log") as second:
        relay.move_to(second)
        back = time.time()
        restarts: list[Kill] = []

        def supervise() -> None:
            """The supervisor's part: a detector that exits is started again."""
            nonlocal detector
            if detector.process.poll() is not None:
                assert detector.process.returncode == 1, detector.output()
                restarts.append(Kill(process_name(detector), time.time()))
                detector = start(services, "detector", env)
                started.append(detector)

        # The output topics are the detector's to create on the new broker: supervised
        # meanwhile, or the wait for them outlasts a detector that exited.
        outputs = Outputs(second, topics, tick=supervise)
        try:
            deadline = time.monotonic() + 60
            while not wrote(detector, back)(outputs.records):
                assert time.monotonic() < deadline, "no detector resumed on the new broker"
                supervise()
                outputs.read(0.5)
            code, generator_log = stop(generator)
            assert code == 0, generator_log
            arrived = read_topic(second, topics.transactions, 10**9, timeout=0, settle=2)
            where = {orjson.loads(m.value())["id"]: (m.partition(), m.offset())
                     for m in arrived}
            outputs.wait(every_id(where), 60, settle=2)
            code, detector_log = stop(detector)
            seen, _ = committed_view(outputs, where, restarts, started)
        finally:
            outputs.close()
            relay.close()

    assert len(where) > 500  # the generator carried on with the new broker
    assert seen == Counter(list(where))
    assert code == 0, detector_log
    assert "no answer from the cluster" in generator_log
