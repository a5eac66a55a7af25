"""fraud-tail on the embedded broker: started before its topic exists, it waits for it,
then prints the records as JSON lines and stops where it is told to."""

from __future__ import annotations

import subprocess
import sys

import orjson

from services.config import Topics
from tests.kafka_helpers import MODULES, ROOT, produce


def tail(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", MODULES["tail"], *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_a_tail_started_before_its_topic_waits_then_prints_its_records(
    broker: str, topics: Topics, service_env: dict[str, str]
) -> None:
    reader = tail(service_env, topics.legit, "--from-beginning", "--max", "3", "--count")
    assert reader.stderr is not None
    assert reader.stderr.readline().strip() == \
        f"fraud-tail: waiting for topic {topics.legit} to be created"
    produce(broker, topics.legit, [(b"A", b'{"id": "tx-1", "amount": 12.5}'),
                                   (b"A", b"not json"), (b"A", b'{"id": "tx-2"}'),
                                   (b"A", b'{"id": "tx-3"}')])
    out, err = reader.communicate(timeout=30)
    assert reader.returncode == 0, err
    assert [orjson.loads(line) for line in out.splitlines()] == [
        {"id": "tx-1", "amount": 12.5}, {"raw": "not json"}, {"id": "tx-2"}]
    assert err.strip() == "3 records"

    meta = tail(service_env, topics.legit, "--from-beginning", "--max", "1", "--meta")
    out, err = meta.communicate(timeout=30)
    assert meta.returncode == 0, err
    [line] = [orjson.loads(line) for line in out.splitlines()]
    assert (line["topic"], line["key"], line["offset"], line["value"]) == \
        (topics.legit, "A", 0, {"id": "tx-1", "amount": 12.5})


def test_a_tail_of_a_topic_that_never_comes_stops_when_idle(
    topics: Topics, service_env: dict[str, str]
) -> None:
    reader = tail(service_env, topics.fraud, "--idle", "1", "--count")
    out, err = reader.communicate(timeout=30)
    assert reader.returncode == 0, err
    assert out == ""
    assert err.splitlines() == [f"fraud-tail: waiting for topic {topics.fraud} to be created",
                                "0 records"]
