"""What the first stage forwards to the second: MessagePack without members' names, the
record's own key inside; and the JSON forwards of the detector before it, still judged the same."""

from __future__ import annotations

import zlib
from collections.abc import Callable

import msgspec
import orjson
import pytest

from services.detector.rules import Hit, RuleSettings, SourceRules, TargetRules
from services.detector.stages import (
    KEY_HEADER,
    Forwarded,
    SourceStage,
    TargetStage,
    _JsonForwarded,
)
from services.generator.profiles import ScenarioProfile
from tests.unit.test_routing import FakeRecord

PARTITIONS = 4


def partition_of(key: bytes | None) -> int:
    return 0 if key is None else zlib.crc32(key) % PARTITIONS


def scenario(seconds: int, tps: int = 200, seed: int = 3) -> list[FakeRecord]:
    """The generator's scenario traffic, keyed by source over ``PARTITIONS``; every
    tenth record without a key, as a tutorial producer may send it."""
    profile = ScenarioProfile(seed=seed)
    records = []
    for second in range(seconds):
        for key, value in profile.batch(tps, 1_700_000_000_000 + second * 1000).transactions:
            n = len(records)
            records.append(FakeRecord(value, None if n % 10 == 9 else key, n,
                                      _partition=partition_of(key)))
    return records


def decoded(value: bytes) -> Forwarded:
    return msgspec.msgpack.decode(value, type=Forwarded)


def as_json(value: bytes) -> tuple[bytes, list[tuple[str, bytes]]]:
    """A forward as the detector before wrote it: JSON, its key in a header."""
    new = decoded(value)
    old = msgspec.json.encode(_JsonForwarded(
        msgspec.Raw(new.tx), new.id, new.source, new.target, new.amount, new.ts, new.hits,
        new.figures, new.partition, new.order))
    return old, [] if new.key is None else [(KEY_HEADER, new.key)]


def run(records: list[FakeRecord], source_rules: Callable[[], SourceRules],
        target_rules: Callable[[], TargetRules],
        old: Callable[[int], bool] = lambda n: False) -> list[tuple[str, bytes | None, bytes]]:
    """Both stages over ``records`` in batches, the n-th forward written as the old
    detector did when ``old(n)``: every output, in order."""
    source = SourceStage(source_rules, "a", idle_after=float("inf"))
    target = TargetStage(target_rules, "a", threshold=600.0, upstream=PARTITIONS)
    out: list[tuple[str, bytes | None, bytes]] = []
    written = 0
    for start in range(0, len(records), 500):
        forwards, dead = source.process(records[start:start + 500])
        assert not dead
        onward = []
        for key, value, headers in forwards:
            assert headers is None
            if old(written):
                value, headers = as_json(value)  # type: ignore[assignment]
            onward.append(FakeRecord(value, key, written, _headers=headers,
                                     _partition=partition_of(key)))
            written += 1
        marker = source.progress(0.0)
        assert marker is not None
        onward.extend(FakeRecord(marker, None, written, _partition=p) for p in range(PARTITIONS))
        routed = target.process(onward)
        assert not routed.dlq
        out.extend([("legit", k, v) for k, v in routed.legit]
                   + [("fraud", k, v) for k, v in routed.fraud])
    return out


def every_rule() -> SourceRules:
    return SourceRules(RuleSettings(), novelty=True)


def every_target_rule() -> TargetRules:
    return TargetRules(RuleSettings(), novelty=True)


def test_a_forward_round_trips_with_its_key_and_no_header() -> None:
    source = SourceStage(every_rule, "a")
    tx = orjson.dumps({"id": "t1", "ts": 5_000, "source": "A", "target": "B",
                       "amount": 950.0, "currency": "EUR"})
    [(key, value, headers)] = source.process([FakeRecord(tx, b"A", 3, _partition=1)])[0]
    assert (key, headers) == (b"B", None)
    assert value[0] == 0x9B  # an array of 11: no member's name on the wire
    forward = decoded(value)
    assert (forward.tx, forward.id, forward.source, forward.target, forward.amount,
            forward.ts, forward.partition, forward.order, forward.key) == (
        tx, "t1", "A", "B", 950.0, 5_000, 1, 5_000, b"A")
    features: dict[str, float] = {}
    every_rule().evaluate("A", "B", 950.0, 5_000, [], features)
    assert forward.figures == features
    assert len(value) < len(as_json(value)[0]) * 0.8


def test_old_json_forwards_are_judged_exactly_as_new_ones() -> None:
    records = scenario(30)
    new = run(records, every_rule, every_target_rule)
    assert len(new) == len(records) and any(d == "fraud" for d, _, _ in new)
    assert any(k is None for _, k, _ in new) and any(k is not None for _, k, _ in new)
    assert run(records, every_rule, every_target_rule, old=lambda n: True) == new
    # Mid-upgrade both kinds share the topic, even a partition.
    assert run(records, every_rule, every_target_rule, old=lambda n: n % 3 == 0) == new


@pytest.mark.parametrize("names", [("velocity",), ("amount_anomaly", "card_testing"), ()])
def test_with_some_rules_off_the_figures_that_are_there_travel(names: tuple[str, ...]) -> None:
    records = scenario(5)

    def some() -> SourceRules:
        return SourceRules(RuleSettings(), names)

    new = run(records, some, every_target_rule)
    assert run(records, some, every_target_rule, old=lambda n: n % 2 == 0) == new


class NewFigure(SourceRules):
    """A rule set with a figure no rule writes yet."""

    def evaluate_batch(self, sources: list[str], targets: list[str], amounts: list[float],
                       times: list[int]) -> list[tuple[list[Hit], dict[str, float]]]:
        return [(hits, {"brand_new": 2, **features}) for hits, features in
                super().evaluate_batch(sources, targets, amounts, times)]


def test_a_figure_of_a_newer_rule_travels_with_the_rest() -> None:
    source = SourceStage(NewFigure, "a")
    tx = orjson.dumps({"id": "t1", "ts": 5_000, "source": "A", "target": "B",
                       "amount": 5.0, "currency": "EUR"})
    [(_, value, _)] = source.process([FakeRecord(tx, b"A", 3)])[0]
    assert decoded(value).figures["brand_new"] == 2.0
    routed = TargetStage(TargetRules, "a").process([FakeRecord(value, b"B", 0)])
    [(key, verdict)] = routed.legit
    assert key == b"A"
    features = orjson.loads(verdict)["detection"]["features"]
    assert list(features)[:2] == ["brand_new", "velocity"] and features["brand_new"] == 2.0


@pytest.mark.parametrize("value", [
    msgspec.msgpack.encode([1, 2, 3]),  # an array, not a forward
    # figures by position, not named
    msgspec.msgpack.encode([b"{}", "t", "A", "B", 1.0, 1, [], [1.0], 0, 0, None]),
    msgspec.msgpack.encode([b"{}", "t", "A", "B", 1.0, 1, [], {}, 0, 0]),  # a member short
    msgspec.msgpack.encode({"tx": "x"}),  # a map
    b"",
])
def test_what_is_not_a_forward_is_a_dead_letter(value: bytes) -> None:
    routed = TargetStage(TargetRules, "a").process([FakeRecord(value, b"x")])
    assert [(k, v) for k, v, _ in routed.dlq] == [(b"x", value)]
    assert dict(routed.dlq[0][2])["dlq.reason"].startswith(b"not a forwarded transaction")
