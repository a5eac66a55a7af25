"""The pipeline as a user runs it: generator → embedded broker → detector → topics."""

from __future__ import annotations

import signal
import time
from collections import Counter

import orjson

from services.config import Topics
from tests.kafka_helpers import (
    ServiceProcess,
    produce,
    produced,
    read_topic,
    read_topics,
    start,
    values,
)


def outputs(broker: str, topics: Topics, expect: int) -> tuple[list[dict], list[dict]]:
    """Everything on the legit and fraud topics once ``expect`` records are there."""
    found = read_topics(broker, [topics.legit, topics.fraud], expect)
    return values(found[topics.legit]), values(found[topics.fraud])


def stop(service: ServiceProcess) -> int:
    service.process.send_signal(signal.SIGTERM)
    started = time.monotonic()
    code = service.wait(10)
    assert time.monotonic() - started < 5, f"{service.name} took too long to stop"
    return code


def test_every_transaction_lands_once_on_the_right_side(
    broker: str, topics: Topics, service_env: dict[str, str], services: list[ServiceProcess]
) -> None:
    generator = start(services, "generator", service_env, "--tps", "2000", "--count", "4000",
                      "--seed", "7")
    detector = start(services, "detector", service_env)
    assert generator.wait(60) == 0, generator.output()
    sent = values(read_topic(broker, topics.transactions, 4000, settle=0.5))
    assert len(sent) == 4000

    legit, fraud = outputs(broker, topics, 4000)

    seen = Counter(tx["id"] for tx in legit + fraud)
    assert seen == Counter(tx["id"] for tx in sent)  # every id, exactly once
    assert all(tx["amount"] < 900 and not tx["detection"]["fraud"] for tx in legit)
    assert all(tx["amount"] >= 900 and tx["detection"]["fraud"] for tx in fraud)
    assert all(tx["detection"]["rules"][0]["reason"] == "amount >= 900" for tx in fraud)
    assert 0.07 < len(fraud) / 4000 < 0.13
    assert stop(detector) == 0, detector.output()


def test_tutorial_records_are_classified_and_garbage_goes_to_the_dead_letters(
    broker: str, topics: Topics, service_env: dict[str, str], services: list[ServiceProcess]
) -> None:
    bare = {"source": "ACC1", "target": "ACC2", "amount": 950.5, "currency": "EUR"}
    produce(broker, topics.transactions, [
        (b"ACC1", orjson.dumps(bare)),
        (b"BAD1", b"\x89PNG not a transaction"),
        (b"BAD2", b'{"source": "A", "target": "B", "amount": -3, "currency": "EUR"}'),
        (b"ACC3", orjson.dumps({**bare, "source": "ACC3", "amount": 12.0})),
    ])
    detector = start(services, "detector", service_env)

    dead = read_topic(broker, topics.dlq, 2)
    legit, fraud = outputs(broker, topics, 2)

    assert [tx["source"] for tx in fraud] == ["ACC1"]
    assert fraud[0]["id"].startswith(topics.transactions)
    assert isinstance(fraud[0]["ts"], int)
    assert [tx["source"] for tx in legit] == ["ACC3"]  # the detector kept going
    by_key = {m.key(): m for m in dead}
    assert by_key[b"BAD1"].value() == b"\x89PNG not a transaction"  # original bytes
    headers = dict(by_key[b"BAD1"].headers())
    assert headers["dlq.reason"].startswith(b"not JSON")
    assert headers["dlq.topic"] == topics.transactions.encode()
    assert dict(by_key[b"BAD2"].headers())["dlq.reason"].startswith(b"amount out of range")
    assert stop(detector) == 0


def test_sigterm_under_load_stops_cleanly_and_loses_nothing(
    broker: str, topics: Topics, service_env: dict[str, str], services: list[ServiceProcess]
) -> None:
    generator = start(services, "generator", service_env, "--tps", "3000")
    first = start(services, "detector", service_env)
    read_topic(broker, topics.legit, 1000, timeout=60, settle=0)  # traffic is flowing

    assert stop(first) == 0, first.output()
    assert stop(generator) == 0, generator.output()
    sent = values(read_topic(broker, topics.transactions, produced(generator.output()),
                             settle=0.5))

    second = start(services, "detector", service_env)
    legit, fraud = outputs(broker, topics, len(sent))

    seen = Counter(tx["id"] for tx in legit + fraud)
    assert seen == Counter(tx["id"] for tx in sent)  # nothing lost, nothing doubled
    assert stop(second) == 0
