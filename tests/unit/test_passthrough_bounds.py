"""The benchmark's baselines copy every record unchanged: the pass-through, and the two
bounds it is measured with (the schema check, the hop through a topic)."""

from dataclasses import dataclass, field
from typing import Any

import pytest

from bench.passthrough import copy_through, validate_and_copy, work_of
from services.generator.synthetic import TutorialProfile


@dataclass
class FakeRecord:
    _value: bytes | None
    _key: bytes | None = b"acct"
    _topic: str = "in"

    def key(self) -> bytes | None:
        return self._key

    def value(self) -> bytes | None:
        return self._value

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return 1

    def offset(self) -> int:
        return 42


@dataclass
class FakeProducer:
    sent: list[tuple[str, bytes | None, bytes | None, dict[str, bytes]]] = field(
        default_factory=list)

    def produce(self, topic: str, value: bytes | None, key: bytes | None,
                headers: list[tuple[str, bytes]] | None = None, **_: Any) -> None:
        self.sent.append((topic, key, value, dict(headers or [])))


def transactions(count: int) -> list[bytes]:
    return [value for _, value in TutorialProfile(seed=3).batch(count, 1_700_000_000_000)]


def test_the_schema_bound_copies_what_the_detector_takes_and_dead_letters_the_rest() -> None:
    good = transactions(3)
    records = [FakeRecord(good[0]), FakeRecord(b"not json"), FakeRecord(good[1]),
               FakeRecord(b'{"source": "A", "target": "B", "currency": "EUR"}'),
               FakeRecord(None), FakeRecord(good[2])]
    producer = FakeProducer()
    validate_and_copy(producer, records, "out", "dlq", "bench-1")  # type: ignore[arg-type]

    assert [(topic, value) for topic, _, value, _ in producer.sent] == [
        ("out", good[0]), ("dlq", b"not json"), ("out", good[1]),
        ("dlq", records[3].value()), ("dlq", None), ("out", good[2])]
    reasons = [headers["dlq.reason"].decode() for topic, _, _, headers in producer.sent
               if topic == "dlq"]
    assert reasons[0].startswith("not JSON")
    assert reasons[1] == "missing field: amount"
    assert reasons[2] == "empty record (null value)"
    assert all(headers["dlq.offset"] == b"42" and headers["dlq.instance"] == b"bench-1"
               for topic, _, _, headers in producer.sent if topic == "dlq")


def test_the_hop_bound_sends_input_to_its_topic_and_that_topic_out_untouched() -> None:
    first, second = transactions(2)
    records = [FakeRecord(first, b"a", "in"), FakeRecord(second, b"b", "in-hop"),
               FakeRecord(None, None, "in")]
    producer = FakeProducer()
    copy_through(producer, records, "in", "in-hop", "out")  # type: ignore[arg-type]

    assert producer.sent == [("in-hop", b"a", first, {}), ("out", b"b", second, {}),
                             ("in-hop", None, None, {})]


def test_an_unknown_kind_of_work_is_refused_in_one_line() -> None:
    assert work_of({}) == "copy"
    assert work_of({"PASSTHROUGH_WORK": "two_hops"}) == "two_hops"
    with pytest.raises(SystemExit) as refused:
        work_of({"PASSTHROUGH_WORK": "route"})
    assert str(refused.value) == "PASSTHROUGH_WORK: 'route' is none of copy, validate, two_hops"
