"""The repartition topic carries a record per destination partition and batch: a
target's forwards still reach its partition whole and in order, the second stage
judges them exactly as forwards one a record, and a restart inside a framed record
neither judges a forward twice nor loses one."""

from __future__ import annotations

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from services.detector.repartition import (
    FORWARDS_PER_RECORD,
    FRAME_BYTES,
    FRAME_KEY,
    frame,
    framed_by_partition,
    is_framed,
    offset_of,
)
from services.detector.rules import RuleSettings, SourceRules, TargetRules
from services.detector.stages import SourceStage, TargetStage
from tests.unit.test_forwarded import PARTITIONS, partition_of, scenario
from tests.unit.test_routing import FakeRecord

Output = tuple[str, bytes | None, bytes]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(st.binary(max_size=20), st.integers(-2**63, 2**63 - 1),
                          st.text(max_size=5), st.lists(st.integers(0, 9), max_size=3)),
                max_size=40))
def test_a_frame_is_its_forwards_as_one_messagepack_array(values: list[object]) -> None:
    forwards = [msgspec.msgpack.encode(value) for value in values]
    framed = frame(forwards)
    assert is_framed(framed)
    assert msgspec.msgpack.decode(framed) == [2, values]


def test_a_lone_forward_is_not_taken_for_a_frame() -> None:
    [(_, value, _)] = SourceStage(SourceRules, "a").process(scenario(1, tps=1))[0]
    assert not is_framed(value)


@given(st.lists(st.tuples(st.sampled_from([b"A", b"B", b"shop", b"x" * 30, b""]),
                          st.sampled_from([0, 10, 100_000])), max_size=3000))
@settings(max_examples=30, deadline=None)
def test_each_target_lands_whole_and_in_order_in_one_partition(
        drawn: list[tuple[bytes, int]]) -> None:
    targets = [target for target, _ in drawn]
    forwards = [(target, msgspec.msgpack.encode([target, n, b"." * padding]))
                for n, (target, padding) in enumerate(drawn)]
    records = framed_by_partition(forwards, PARTITIONS)
    seen: list[tuple[int, list[object]]] = []
    for partition, value in records:
        tag, inside = msgspec.msgpack.decode(value)
        assert tag == 2 and 0 < len(inside) <= FORWARDS_PER_RECORD
        # Within a topic's size limit, unless a forward alone is larger.
        assert len(value) < FRAME_BYTES + 16 or len(inside) == 1
        seen.extend((partition, item[:2]) for item in inside)
    assert sorted(n for _, (_, n) in seen) == list(range(len(targets)))
    for partition, (target, _) in seen:
        assert partition == partition_of(target)  # as the client's partitioner puts it
    for target in set(targets):  # in the order the first stage made them
        mine = [n for _, (t, n) in seen if t == target]
        assert mine == sorted(mine)


class Pipe:
    """Both stages, the repartition topic as a list of records per partition, and
    where the second stage has read each partition up to."""

    def __init__(self, framed: bool) -> None:
        self.framed = framed
        self.source = SourceStage(lambda: SourceRules(RuleSettings(), novelty=True), "a",
                                  idle_after=float("inf"))
        self.target = self.fresh_target()
        self.topic: dict[int, list[FakeRecord]] = {p: [] for p in range(PARTITIONS)}
        self.read = dict.fromkeys(range(PARTITIONS), 0)

    @staticmethod
    def fresh_target() -> TargetStage:
        return TargetStage(lambda: TargetRules(RuleSettings(), novelty=True), "a",
                           threshold=600.0, upstream=PARTITIONS)

    def write(self, records: list[FakeRecord]) -> None:
        """The first stage's forwards of ``records``, then its progress markers."""
        forwards, dead = self.source.process(records)
        assert not dead
        if self.framed:
            out = [(p, FRAME_KEY, value) for p, value in framed_by_partition(
                [(key, value) for key, value, _ in forwards], PARTITIONS)]
        else:
            out = [(partition_of(key), key, value) for key, value, _ in forwards]
        marker = self.source.progress(0.0)
        if marker is not None:
            out.extend((p, None, marker) for p in range(PARTITIONS))
        for partition, key, value in out:
            log = self.topic[partition]
            log.append(FakeRecord(value, key, len(log), _partition=partition))

    def judge(self) -> list[Output]:
        """The second stage reads what is new on every partition."""
        records = []
        for partition, log in self.topic.items():
            records.extend(log[self.read[partition]:])
            self.read[partition] = len(log)
        routed = self.target.process(records)
        assert not routed.dlq
        return [("legit", k, v) for k, v in routed.legit] + \
            [("fraud", k, v) for k, v in routed.fraud]

    def restart(self) -> None:
        """The second stage dies after a commit: its state is its changelog, and it
        reads each partition again from the committed offset, which a record still
        waiting for the watermark held back."""
        changelog: dict[int, list[tuple[bytes, bytes | None]]] = {}
        for partition, key, value in self.target.state.changes():
            changelog.setdefault(partition, []).append((key, value))
        for partition, merge in self.target.state.clocks.items():
            oldest = merge.oldest_position()
            if oldest is not None:
                self.read[partition] = offset_of(oldest)
        self.target = self.fresh_target()
        for partition in range(PARTITIONS):
            self.target.state.assign(partition, changelog.get(partition, []))


def test_framed_forwards_are_judged_as_forwards_one_a_record_across_a_restart() -> None:
    records = scenario(30, tps=100)
    quarter, half = len(records) // 4, len(records) // 2
    # Upstream partitions 2 and 3 fall behind (their first quarter only, at first): the
    # second stage releases part of each framed record and holds the rest back.
    ahead = [r for r in records[:half] if r.partition() < 2 or records.index(r) < quarter]
    steps = [ahead, [r for r in records[quarter:half] if r.partition() >= 2],
             records[half:]]
    outputs: dict[str, list[Output]] = {}
    for name, framed, restart in (("one a record", False, False), ("framed", True, False),
                                  ("framed, restarted", True, True)):
        pipe = Pipe(framed)
        out: list[Output] = []
        for step, batch in enumerate(steps):
            for start in range(0, len(batch), 400):
                pipe.write(batch[start:start + 400])
                out.extend(pipe.judge())
            if step == 0:
                held = sum(len(merge) for merge in pipe.target.state.clocks.values())
                assert 0 < held < len(ahead)
                if restart:
                    pipe.restart()
        outputs[name] = out
    assert len(outputs["one a record"]) == len(records)  # each judged once
    reference = sorted(outputs["one a record"], key=str)
    assert sorted(outputs["framed"], key=str) == reference
    assert sorted(outputs["framed, restarted"], key=str) == reference
