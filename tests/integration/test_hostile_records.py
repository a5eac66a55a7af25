"""Hostile records among good ones on the input topic: each bad one becomes a dead letter
with its reason and its bytes untouched, each good one comes out once, and the detector,
1 MB records included, keeps going."""

from __future__ import annotations

import itertools
import signal
from collections import Counter

import orjson

from services.config import Topics
from tests.kafka_helpers import ServiceProcess, produce, read_topics, start

GOOD = {"ts": 1_700_000_000_000, "source": "ACC1", "target": "ACC2", "amount": 12.5,
        "currency": "EUR"}


def good(n: int, **fields: object) -> bytes:
    return orjson.dumps({**GOOD, "id": f"good-{n}", "amount": 10.0 + n % 1000, **fields})


def bad(**fields: object) -> bytes:
    """A transaction with ``fields`` changed; ``...`` removes a field."""
    tx = {**GOOD, "id": "bad"}
    tx.update(fields)
    return orjson.dumps({k: v for k, v in tx.items() if v is not ...})


HOSTILE: dict[str, bytes | None] = {
    "invalid JSON": b'{"id": "x", "amount": ',
    "invalid UTF-8": b'{"source": "\xff\xfe", "target": "B", "amount": 1, "currency": "EUR"}',
    "byte order mark": b"\xef\xbb\xbf" + bad(id="bom"),
    "NaN token": b'{"source": "A", "target": "B", "amount": NaN, "currency": "EUR"}',
    "Infinity token": b'{"source": "A", "target": "B", "amount": Infinity, "currency": "EUR"}',
    "overflowing number": b'{"source": "A", "target": "B", "amount": 1e999, "currency": "EUR"}',
    "NaN as text": bad(amount="NaN"),
    "missing amount": bad(amount=...),
    "missing source": bad(source=...),
    "missing currency": bad(currency=...),
    "amount as text": bad(amount="12.5"),
    "amount as boolean": bad(amount=True),
    "amount as object": bad(amount={"value": 1}),
    "source as number": bad(source=42),
    "empty source": bad(source=""),
    "id as number": bad(id=7),
    "ts negative": bad(ts=-1),
    "ts fractional": bad(ts=1.5),
    "ts as text": bad(ts="now"),
    "zero amount": bad(amount=0),
    "negative amount": bad(amount=-5),
    "absurd amount": bad(amount=1e12),
    "unknown currency": bad(currency="XYZ"),
    "lower-case currency": bad(currency="eur"),
    "JSON array": b"[1, 2]",
    "JSON string": b'"a transaction"',
    "empty value": b"",
    "blank value": b"   ",
    "null value": None,
    "1 MB value": b'{"source": "' + b"A" * 1_000_000 + b'", "target": "B", "amount": 1, '
                  b'"currency": "EUR"}',
}


def test_bad_records_become_dead_letters_and_good_ones_pass_once(
    broker: str, topics: Topics, service_env: dict[str, str], services: list[ServiceProcess]
) -> None:
    keys = itertools.cycle([b"ACC1", b"", None, b"ACC9"])
    bad_records = [(next(keys), value) for value in HOSTILE.values()]
    good_records = [(next(keys), good(n)) for n in range(400)]
    # Valid despite the look: extra fields are carried along untouched.
    good_records.append((b"ACC1", good(400, note="an extra field", tags=[1, 2])))
    records = []
    for n, record in enumerate(good_records):
        records.append(record)
        if n % 13 == 0 and bad_records:
            records.append(bad_records.pop())
    records += bad_records
    produce(broker, topics.transactions, records, {"message.max.bytes": 2_000_000})
    detector = start(services, "detector", service_env)

    found = read_topics(broker, [topics.legit, topics.fraud, topics.dlq],
                        len(good_records) + len(HOSTILE), timeout=60)

    passed = Counter(orjson.loads(m.value())["id"]
                     for m in found[topics.legit] + found[topics.fraud])
    assert passed == Counter(orjson.loads(v)["id"] for _, v in good_records)
    dead = found[topics.dlq]
    by_value = {m.value(): m for m in dead}
    assert Counter((m.key(), m.value()) for m in dead) == Counter(
        (k, v) for k, v in records if v not in {r for _, r in good_records})
    for name, value in HOSTILE.items():
        headers = dict(by_value[value].headers())
        assert headers["dlq.reason"], name
        assert headers["dlq.topic"] == topics.transactions.encode(), name
        assert {"dlq.partition", "dlq.offset"} <= set(headers), name
    detector.process.send_signal(signal.SIGTERM)
    assert detector.wait(10) == 0, detector.output()  # kept going, stopped cleanly
